//! Outbound HTTP: the one builder every client that calls out of Groundwork is made with
//! (OpenID Connect providers, JWKS, Stripe). Its clients never follow a redirect (a URL an
//! administrator configures must not be bounced to an internal address, and a redirected
//! request would carry credentials to a host nobody chose), give up after a bounded time, and
//! are built with rustls. Building one fails loudly: there is no silent fallback to a default
//! client without these settings.
//!
//! URLs a tenant or an administrator types in (webhook endpoints, an organization's OpenID
//! Connect provider) go through the
//! [`guarded`] client on top of that: it refuses every address that is not public (private,
//! loopback, link-local, the cloud metadata service, carrier-grade NAT, multicast, reserved:
//! the IANA special-purpose registries, RFC 6890), checked on the addresses DNS returns, so a
//! name that resolves to `127.0.0.1` is refused like the literal. It also ignores proxy
//! variables, which would otherwise reach a host the check never saw. One switch,
//! `GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK`, lets tests reach loopback receivers; it is refused in
//! production.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
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

/// The outbound settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub struct OutboundConfig {
    /// `GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK`: let the [`guarded`] client reach loopback
    /// addresses, over plain `http` too (tests' receivers; default `false`, refused when
    /// `GROUNDWORK_ENV` is `production`). Private and metadata addresses stay refused.
    #[serde(rename = "outbound_allow_loopback", default)]
    pub allow_loopback: bool,
}

impl OutboundConfig {
    /// From `GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK`.
    ///
    /// # Errors
    /// A malformed value, or the switch on in production.
    pub fn from_env(env: &crate::settings::Env, environment: &str) -> Result<Self, crate::settings::ConfigError> {
        let config: Self = env.area("GROUNDWORK_")?;
        if config.allow_loopback && environment == "production" {
            return Err(crate::settings::ConfigError::Invalid {
                var: "GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK".into(),
                value: "true".into(),
                reason: "loopback targets are for tests; production never allows them".into(),
            });
        }
        Ok(config)
    }
}

/// Why the [`guarded`] client refuses a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not an absolute `https` URL (or `http` to loopback with the switch on), or it
    /// carries credentials.
    #[error("{0}")]
    Url(String),
    /// The host is, or resolves to, an address that is not public.
    #[error("{host} resolves to {address}, which is not a public address")]
    Address {
        /// The host as written.
        host: String,
        /// The first address refused.
        address: IpAddr,
    },
}

/// Whether `ip` is a public unicast address (IANA IPv4 and IPv6 special-purpose address
/// registries, RFC 6890 and its updates); `allow_loopback` lets loopback through too.
/// IPv4-mapped and NAT64 (`64:ff9b::/96`) IPv6 addresses are judged by the IPv4 address
/// inside them, so `::ffff:169.254.169.254` is refused like the plain one.
pub fn is_public(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4, allow_loopback),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4, allow_loopback);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d), allow_loopback);
            }
            is_public_v6(v6, allow_loopback)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0 // "this network", RFC 791
        || ip.is_private() // RFC 1918
        || ip.is_link_local() // 169.254/16, the metadata service included
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT), RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, RFC 6890
        || ip.is_documentation() // RFC 5737
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, RFC 2544
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast, deprecated by RFC 7526
        || ip.is_multicast()
        || a >= 240) // reserved and broadcast, RFC 1112
}

fn is_public_v6(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, RFC 4193 (AWS's fd00:ec2::254 metadata too)
        || (s[0] & 0xffc0) == 0xfe80 // link-local, RFC 4291
        || (s[0] & 0xffc0) == 0xfec0 // site-local, deprecated by RFC 3879
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation, RFC 3849
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only, RFC 6666
        || s[0] == 0x2002 // 6to4: carries any IPv4 address, private ones included
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments (Teredo...), RFC 2928
        || s[0] < 0x2000 // outside global unicast 2000::/3 (IPv4-compatible ::a.b.c.d included)
        || s[0] >= 0x4000)
}

/// Checks that `url` may be called by the [`guarded`] client before any DNS lookup: an
/// absolute `https` URL without credentials (`http` only to loopback with the switch on),
/// whose host, when it is an IP literal, is public.
///
/// # Errors
/// [`Refused`] saying why.
pub fn check_url(url: &reqwest::Url, config: OutboundConfig) -> Result<(), Refused> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Url("the URL must not carry a user name or password".into()));
    }
    let host = match url.host() {
        Some(h) => h,
        None => return Err(Refused::Url("the URL has no host".into())),
    };
    let literal = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    };
    // Names under `localhost` are loopback (RFC 6761, section 6.3) whatever a resolver says
    // (one without them in its hosts file does not resolve them at all); `localhost` itself
    // goes through the resolver, whose answer the guard refuses.
    let (name, rooted) = match host {
        url::Host::Domain(d) => (d.trim_end_matches('.').to_ascii_lowercase(), d.ends_with('.')),
        _ => (String::new(), false),
    };
    let loopback_name = name == "localhost" || name.ends_with(".localhost");
    if loopback_name && (rooted || name != "localhost") && !config.allow_loopback {
        return Err(Refused::Url("the host is a loopback name (under localhost)".into()));
    }
    let to_loopback = literal.is_some_and(|ip| ip.is_loopback()) || loopback_name;
    match url.scheme() {
        "https" => {}
        "http" if config.allow_loopback && to_loopback => {}
        _ => return Err(Refused::Url("the URL must be https".into())),
    }
    if let Some(ip) = literal
        && !is_public(ip, config.allow_loopback)
    {
        return Err(Refused::Address { host: host.to_string(), address: ip });
    }
    Ok(())
}

/// Checks a URL a tenant or an administrator configures, as it is saved: [`check_url`], and
/// its name resolves to public addresses only. A name that does not resolve (yet) is
/// accepted: every call checks again, after DNS. The lookup gives up after two seconds.
///
/// # Errors
/// [`Refused`] saying why; [`Refused::Url`] for a string that is no absolute URL.
pub async fn check_configured(url: &str, config: OutboundConfig) -> Result<reqwest::Url, Refused> {
    // The URL parser drops tabs and line breaks silently: refuse them instead.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Refused::Url("the URL holds spaces or control characters".into()));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| Refused::Url(format!("not an absolute URL: {e}")))?;
    check_url(&parsed, config)?;
    if parsed.fragment().is_some() {
        return Err(Refused::Url("the URL has a fragment (#...), which is never sent".into()));
    }
    if parsed.port() == Some(0) {
        return Err(Refused::Url("port 0 is not a port one can connect to".into()));
    }
    if parsed.host_str().is_some_and(|h| h.trim_end_matches('.').len() > 253) {
        return Err(Refused::Url("the host name is longer than DNS allows (253)".into()));
    }
    if let Some(url::Host::Domain(name)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        let lookup = tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((name, port)));
        if let Ok(Ok(addrs)) = lookup.await {
            public_only(name, &addrs.collect::<Vec<_>>(), config.allow_loopback)?;
        }
    }
    Ok(parsed)
}

/// Refuses `host` if any address it resolved to is not public: refusing the whole name
/// (rather than dropping its private addresses) leaves a name that mixes both nothing to
/// rebind to.
fn public_only(host: &str, addrs: &[SocketAddr], allow_loopback: bool) -> Result<(), Refused> {
    match addrs.iter().find(|a| !is_public(a.ip(), allow_loopback)) {
        Some(bad) => Err(Refused::Address { host: host.to_owned(), address: bad.ip() }),
        None => Ok(()),
    }
}

/// Resolves names with the system resolver, through [`public_only`].
#[derive(Debug, Clone, Copy)]
struct PublicOnlyResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            public_only(&host, &addrs, allow_loopback)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client for URLs a tenant or an administrator configures: as [`client`] (no redirects,
/// bounded time), and it connects only to public addresses (see [`is_public`]), checked on
/// what DNS answers for every connection. Check each URL with [`check_url`] first: IP
/// literals never reach the resolver. Read bodies with [`read_capped`].
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn guarded(timeout: Duration, config: OutboundConfig) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .no_proxy()
        .dns_resolver(Arc::new(PublicOnlyResolver { allow_loopback: config.allow_loopback }))
        .user_agent(concat!("groundwork/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the guarded outbound HTTP client")
}

/// A [`guarded`] client built on first use: most functions never call a URL a tenant
/// configured, and need not build a second TLS client at init. Clones share one client.
#[derive(Debug, Clone)]
pub struct LazyGuarded {
    client: Arc<std::sync::OnceLock<reqwest::Client>>,
    timeout: Duration,
    config: OutboundConfig,
}

impl LazyGuarded {
    /// A client of [`guarded`]`(timeout, config)`, not built yet.
    pub fn new(timeout: Duration, config: OutboundConfig) -> Self {
        Self { client: Arc::default(), timeout, config }
    }

    /// The client, built now if it was not.
    ///
    /// # Errors
    /// As [`guarded`], when the TLS backend cannot be initialised.
    pub fn get(&self) -> anyhow::Result<&reqwest::Client> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let built = guarded(self.timeout, self.config)?;
        // Two first calls at once build two; one is kept, both work.
        Ok(self.client.get_or_init(|| built))
    }
}

/// Whether a request error came from the address guard (a refused name), as opposed to the
/// network or the peer.
pub fn refused_by_guard(e: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        source = err.source();
    }
    None
}

/// Reads at most `max` bytes of a response body, dropping the rest: a peer cannot make
/// Groundwork hold an unbounded answer.
///
/// # Errors
/// When the body cannot be read.
pub async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == max {
            break;
        }
    }
    Ok(body)
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

    #[test]
    fn only_public_unicast_addresses_are_public() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::0a00:0001",
            "2001:db8::1",
            "2002:7f00:1::",
            "2001::1",
            "::7f00:1",
            "100::1",
        ];
        for ip in refused {
            assert!(!is_public(ip.parse().unwrap(), false), "{ip} must be refused");
        }
        let public = [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::0808:0808",
            "::ffff:8.8.8.8",
        ];
        for ip in public {
            assert!(is_public(ip.parse().unwrap(), false), "{ip} is public");
        }
        // The test switch lets loopback through, and nothing else.
        assert!(is_public("127.0.0.1".parse().unwrap(), true));
        assert!(is_public("::1".parse().unwrap(), true));
        assert!(!is_public("10.0.0.1".parse().unwrap(), true));
        assert!(!is_public("169.254.169.254".parse().unwrap(), true));
    }

    #[test]
    fn urls_must_be_https_without_credentials_and_public_literals() {
        let off = OutboundConfig::default();
        let on = OutboundConfig { allow_loopback: true };
        let check = |u: &str, c| check_url(&reqwest::Url::parse(u).unwrap(), c);
        assert!(check("https://hooks.example.com/x", off).is_ok());
        assert!(check("https://93.184.215.14/x", off).is_ok());
        assert!(matches!(check("http://hooks.example.com/x", off), Err(Refused::Url(_))));
        assert!(matches!(check("http://127.0.0.1:8080/x", off), Err(Refused::Url(_))));
        assert!(matches!(check("https://127.0.0.1/x", off), Err(Refused::Address { .. })));
        assert!(matches!(check("https://[::ffff:a9fe:a9fe]/x", off), Err(Refused::Address { .. })));
        assert!(matches!(check("https://169.254.169.254/latest/meta-data", on), Err(Refused::Address { .. })));
        assert!(matches!(check("https://user:pw@hooks.example.com/", off), Err(Refused::Url(_))));
        assert!(matches!(check("https://api.localhost/", off), Err(Refused::Url(_))));
        assert!(matches!(check("https://LOCALHOST./", off), Err(Refused::Url(_))));
        assert!(matches!(check("https://2130706433/", off), Err(Refused::Address { .. })));
        assert!(matches!(check("ftp://hooks.example.com/", off), Err(Refused::Url(_))));
        assert!(check("http://127.0.0.1:8080/x", on).is_ok());
        assert!(check("http://localhost:8080/x", on).is_ok());
        assert!(matches!(check("http://10.0.0.1/x", on), Err(Refused::Url(_))));
        assert!(
            OutboundConfig::from_env(
                &crate::settings::Env::new([("GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK".to_owned(), "true".to_owned())]),
                "production"
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn configured_urls_are_refused_rather_than_rewritten() {
        let off = OutboundConfig::default();
        for bad in [
            "https://hooks.example.com/x\r\nX-Injected: 1",
            "https://hooks.example.com/x y",
            "https://hooks.example.com/x#fragment",
            "https://hooks.example.com:0/x",
            &format!(
                "https://{}.example.com/",
                ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".")
            ),
            "https://localhost:8443/",
        ] {
            assert!(check_configured(bad, off).await.is_err(), "{bad} must be refused");
        }
        let ok = check_configured("https://hooks.example.com:8443/in?x=1", off).await.unwrap();
        assert_eq!(ok.as_str(), "https://hooks.example.com:8443/in?x=1");
    }

    /// A name that resolves to loopback is refused after resolution, before any connection:
    /// the listener never sees one.
    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_after_dns() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = guarded(Duration::from_secs(2), OutboundConfig::default()).unwrap();
        let err = client.get(format!("https://localhost:{port}/")).send().await.unwrap_err();
        let refused = refused_by_guard(&err).expect("the guard refused it");
        assert!(matches!(refused, Refused::Address { address, .. } if address.is_loopback()), "{refused:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "no connection was made");
        // With the test switch, the same name connects.
        let client = guarded(Duration::from_secs(2), OutboundConfig { allow_loopback: true }).unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            let body = "x".repeat(5000);
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            tokio::io::AsyncWriteExt::write_all(&mut socket, answer.as_bytes()).await.unwrap();
        });
        let res = client.get(format!("http://localhost:{port}/")).send().await.unwrap();
        assert_eq!(read_capped(res, 1024).await.unwrap().len(), 1024, "the body is cut at the cap");
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
