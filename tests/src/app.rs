//! The local stack for tests: each test gets its own, on a free port, in its own temporary
//! data directory, with an HTTP client and helpers to read its outbox, plus the loopback
//! OpenID Connect provider's helpers.

use std::path::PathBuf;

use serde_json::Value;

/// A running local stack.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client for it.
    pub client: reqwest::Client,
    /// The stack (its services: store, queues...).
    pub stack: local::RunningStack,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts a stack with `extra` settings on top of the defaults.
    ///
    /// # Panics
    /// If it does not start.
    pub async fn spawn(extra: &[(&str, &str)]) -> Self {
        Self::spawn_with_clock(extra, std::sync::Arc::new(shared::clock::SystemClock)).await
    }

    /// As [`TestApp::spawn`], on the given clock.
    ///
    /// # Panics
    /// If it does not start.
    pub async fn spawn_with_clock(extra: &[(&str, &str)], clock: std::sync::Arc<dyn shared::clock::Clock>) -> Self {
        Self::spawn_wrapped(extra, clock, |services, _| services).await
    }

    /// As [`TestApp::spawn_with_clock`], with the services of the routes and of the
    /// background work passed through `wrap` (fault injection: [`crate::faults`]). The
    /// stack's own `services` stay unwrapped, for the test to inspect.
    ///
    /// # Panics
    /// If it does not start.
    pub async fn spawn_wrapped(
        extra: &[(&str, &str)],
        clock: std::sync::Arc<dyn shared::clock::Clock>,
        wrap: impl Fn(shared::services::Services, local::Role) -> shared::services::Services,
    ) -> Self {
        crate::logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = vec![("GROUNDWORK_PORT", "0"), ("GROUNDWORK_APP_URL", "https://app.acme.test")];
        vars.extend_from_slice(extra);
        let stack =
            local::start_wrapped(crate::services::config(dir.path(), &vars), clock, wrap).await.expect("stack starts");
        let base = format!("http://{}", stack.addr);
        Self { base, client: reqwest::Client::new(), stack, dir }
    }

    /// Waits until every queue of the stack is empty and no job is staged in the outbox:
    /// each job queued so far has run (or been dead-lettered), and whatever it queued in
    /// turn too.
    ///
    /// # Panics
    /// If the queues are not empty within [`crate::EVENTUALLY`].
    pub async fn drain(&self) {
        let config = self.stack.services.config.as_ref();
        let db = shared::queue::embedded::QueueDb::open(
            &config.data_dir.join(shared::services::EMBEDDED_DB_FILE),
            std::sync::Arc::clone(&self.stack.services.clock),
        )
        .expect("the embedded queues open");
        let store = &self.stack.services.store;
        crate::eventually("every queue to drain and the job outbox to empty", || async {
            for name in shared::config::QueueName::ALL {
                let queue = db.queue(name.as_str(), shared::services::embedded_queue_settings(name, config));
                if queue.depth().await.expect("queue depth") > 0 {
                    return None;
                }
            }
            for shard in 0..shared::jobs::outbox::SHARDS {
                let staged =
                    store.query(shared::store::Query::partition(shared::keys::job_outbox_partition(shard))).await;
                if !staged.expect("the outbox reads").items.is_empty() {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// The outbox directory.
    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// Sends a JSON request; returns the status and the JSON body (Null if none).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.call_full(method, path, token, body).await;
        (status, body)
    }

    /// As [`TestApp::call`], with the response headers.
    pub async fn call_full(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        send_json(&self.client, method, &format!("{}{path}", self.base), token, body).await
    }

    /// Sends `n` copies of one request at once, each from its own task, and returns their
    /// statuses in the order sent (for limits that must hold under parallel requests).
    ///
    /// # Panics
    /// If a request cannot be sent.
    pub async fn statuses_in_parallel(
        &self,
        n: usize,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Vec<u16> {
        let method: reqwest::Method = method.parse().expect("method");
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let mut req = self.client.request(method.clone(), format!("{}{path}", self.base));
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                if let Some(b) = &body {
                    req = req.json(b);
                }
                tokio::spawn(async move { req.send().await.expect("request sent").status().as_u16() })
            })
            .collect();
        let mut statuses = Vec::with_capacity(n);
        for call in calls {
            statuses.push(call.await.expect("request task"));
        }
        statuses
    }

    /// Waits for an email to `to` whose text contains `needle`, and returns the value of the
    /// first `token=` parameter in it.
    ///
    /// # Panics
    /// If none arrives.
    pub async fn token_from_email(&self, to: &str, needle: &str) -> String {
        token_in(&self.wait_email(to, needle).await)
    }

    /// The texts of the emails to `to` containing `needle`, newest first.
    pub fn emails(&self, to: &str, needle: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.outbox()) else { return Vec::new() };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        // Outbox files are named by time: the newest sorts last.
        paths.sort();
        paths
            .iter()
            .rev()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|text| text.contains(&format!("To: {to}")) && text.contains(needle))
            .collect()
    }

    /// Waits for an email to `to` containing `needle`; returns its text (the newest).
    ///
    /// # Panics
    /// If none arrives.
    pub async fn wait_email(&self, to: &str, needle: &str) -> String {
        crate::eventually(&format!("an email to {to} containing {needle:?}"), || async {
            self.emails(to, needle).into_iter().next()
        })
        .await
    }

    /// How many emails went to `to`.
    pub fn emails_to(&self, to: &str) -> usize {
        std::fs::read_dir(self.outbox())
            .map(|d| {
                d.flatten()
                    .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&format!("To: {to}"))))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Sends a JSON request to `url`, with `token` as its bearer; returns the status, the
/// headers and the JSON body (Null if none).
///
/// # Panics
/// When the request cannot be sent.
pub async fn send_json(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client.request(method.parse().expect("method"), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request sent");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// The value of the first `token=` parameter in an email's text.
///
/// # Panics
/// If there is none.
pub fn token_in(text: &str) -> String {
    let at = text.find("token=").expect("a token link") + "token=".len();
    text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// The password test users sign up with.
pub const PASSWORD: &str = "violet-anchor-trombone-47";

impl TestApp {
    /// Signs `email` up, verifies it through the emailed link, logs in; returns the access
    /// token and the user id.
    ///
    /// # Panics
    /// If a step fails.
    pub async fn user(&self, email: &str) -> (String, String) {
        let body = serde_json::json!({"email": email, "password": PASSWORD});
        let (status, answer) = self.call("POST", "/auth/signup", None, Some(body.clone())).await;
        assert_eq!(status, 202, "{answer}");
        let token = self.token_from_email(email, "Confirm your email address").await;
        let (status, me) =
            self.call("POST", "/auth/verify-email", None, Some(serde_json::json!({"token": token}))).await;
        assert_eq!(status, 200, "{me}");
        let (status, tokens) = self.call("POST", "/auth/login", None, Some(body)).await;
        assert_eq!(status, 200, "{tokens}");
        (tokens["access_token"].as_str().expect("token").to_owned(), me["id"].as_str().expect("id").to_owned())
    }
}

/// The loopback OpenID Connect provider the test command starts.
///
/// # Panics
/// When it was not started.
pub fn idp() -> String {
    std::env::var("GROUNDWORK_OIDC_PROVIDER_URL").unwrap_or_else(|_| {
        panic!("GROUNDWORK_OIDC_PROVIDER_URL is not set: run the suite with ./infra/test.sh, which starts the provider")
    })
}

/// Registers a client at the provider (dynamic registration) for `redirect_uri`; returns
/// its id and secret.
///
/// # Panics
/// When the provider refuses.
pub async fn register(redirect_uri: &str) -> (String, String) {
    let body = serde_json::json!({"redirect_uris": [redirect_uri], "grant_types": ["authorization_code"],
                      "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic"});
    let res = reqwest::Client::new().post(format!("{}/reg", idp())).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let client: Value = res.json().await.unwrap();
    (client["client_id"].as_str().unwrap().to_owned(), client["client_secret"].as_str().unwrap().to_owned())
}

/// A client that keeps cookies and does not follow redirects: a browser, step by step.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Follows redirects from `url` through the provider's login page (logging in as `login`)
/// until one leads to a URL starting with `back_to`, which it returns.
///
/// # Panics
/// If the provider shows something else or never sends the browser back.
pub async fn follow_login(browser: &reqwest::Client, mut url: String, login: &str, back_to: &str) -> String {
    for _ in 0..10 {
        if url.starts_with(back_to) {
            return url;
        }
        let res = browser.get(&url).send().await.unwrap();
        if res.status().is_redirection() {
            let next = res.headers()["location"].to_str().unwrap().to_owned();
            url = if next.starts_with('/') { format!("{}{next}", idp()) } else { next };
            continue;
        }
        let page = res.text().await.unwrap();
        assert!(page.contains(r#"name="prompt" value="login""#), "an unexpected page: {page}");
        let form = [("prompt", "login"), ("login", login), ("password", "anything")];
        let res = browser.post(&url).form(&form).send().await.unwrap();
        assert!(res.status().is_redirection(), "login not accepted: {}", res.status());
        url = res.headers()["location"].to_str().unwrap().to_owned();
    }
    panic!("the provider never sent the browser back");
}
