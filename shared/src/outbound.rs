//! Outbound HTTP: the one builder every client that calls out of Groundwork is made with
//! (OpenID Connect providers, JWKS, Stripe). Its clients never follow a redirect (a URL an
//! administrator configures must not be bounced to an internal address, and a redirected
//! request would carry credentials to a host nobody chose), give up after a bounded time, and
//! are built with rustls. Building one fails loudly: there is no silent fallback to a default
//! client without these settings.

use std::time::Duration;

use anyhow::Context as _;

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A client whose requests take at most `timeout` each, following no redirect.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .user_agent(concat!("groundwork/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building an outbound HTTP client")
}

/// Documents fetched from third parties an administrator configures (OpenID Connect
/// discovery), kept per process for a while so a login does not fetch them every time;
/// timed on the injected clock. One per process, in `Services::documents`.
#[derive(Debug, Default)]
pub struct DocumentCache(std::sync::Mutex<std::collections::HashMap<String, (i64, serde_json::Value)>>);

impl DocumentCache {
    /// The document stored under `key` less than `ttl` before `now_ms`, if any.
    pub fn get(&self, key: &str, now_ms: i64, ttl: Duration) -> Option<serde_json::Value> {
        let fresh_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let documents = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        documents.get(key).filter(|(at, _)| (0..fresh_ms).contains(&(now_ms - at))).map(|(_, doc)| doc.clone())
    }

    /// Stores `document` under `key`, fetched at `now_ms`.
    pub fn put(&self, key: impl Into<String>, now_ms: i64, document: serde_json::Value) {
        let mut documents = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        documents.insert(key.into(), (now_ms, document));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_documents_expire_on_the_clock() {
        let cache = DocumentCache::default();
        cache.put("https://idp.example", 1_000, serde_json::json!({"issuer": "https://idp.example"}));
        let ttl = Duration::from_secs(600);
        assert!(cache.get("https://idp.example", 1_000 + 599_999, ttl).is_some());
        assert!(cache.get("https://idp.example", 1_000 + 600_000, ttl).is_none());
        assert!(cache.get("https://other.example", 1_000, ttl).is_none());
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            let answer = "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n";
            tokio::io::AsyncWriteExt::write_all(&mut socket, answer.as_bytes()).await.unwrap();
        });
        let res = client(Duration::from_secs(2)).unwrap().get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(res.status(), 302, "the redirect is answered, not followed");
    }
}
