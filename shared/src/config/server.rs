//! The local server and the public addresses: where the local stack listens, the API's and
//! the frontend's base URLs (the issuer of access tokens; links in emails), the product's
//! name, the operators' token and the staff's addresses.

use serde::Deserialize;

use crate::secret::Secret;
use crate::settings::{ConfigError, Env};

/// Where the local stack listens and how the system names itself.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `GROUNDWORK_HOST` (default `127.0.0.1`).
    pub host: String,
    /// `GROUNDWORK_PORT` (default 3000; 0 picks a free port).
    pub port: u16,
    /// `GROUNDWORK_API_URL`: the API's public base URL, the issuer (`iss`) of access tokens
    /// (default the local stack's address; required on Lambda).
    pub api_url: String,
    /// `GROUNDWORK_APP_URL`: the frontend's base URL, for links in emails (default the local
    /// stack's address).
    pub app_url: String,
    /// `GROUNDWORK_APP_NAME`: the product name in emails (default `Groundwork`).
    pub app_name: String,
    /// `GROUNDWORK_OPERATOR_TOKEN`: the bearer token of the `/ops` routes (unset: disabled).
    pub operator_token: Option<Secret<String>>,
    /// `GROUNDWORK_STAFF_EMAILS`: the addresses (comma-separated) of the staff who may read
    /// the customer-success routes and console (`/ops/accounts`, `/ops/console`) signed in
    /// as themselves, once the address is verified. Empty: the operator token only.
    pub staff_emails: Vec<crate::mail::EmailAddress>,
}

#[derive(Deserialize)]
struct Vars {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    api_url: Option<String>,
    #[serde(default = "default_app_name")]
    app_name: String,
    operator_token: Option<String>,
    staff_emails: Option<String>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    3000
}

fn default_app_name() -> String {
    "Groundwork".into()
}

impl ServerConfig {
    /// From `GROUNDWORK_*`.
    ///
    /// # Errors
    /// A malformed port; on Lambda, a missing API URL.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let v: Vars = env.area("GROUNDWORK_")?;
        let local = format!("http://{}:{}", v.host, v.port);
        if v.api_url.is_none() && env.on_lambda {
            return Err(ConfigError::Missing {
                var: "GROUNDWORK_API_URL".into(),
                why: "access tokens name the API's public URL as their issuer (stack parameter ApiUrl)",
            });
        }
        let api_url = env.url("GROUNDWORK_API_URL", Some(local.clone()))?.unwrap_or_default();
        let mut staff_emails = Vec::new();
        for raw in v.staff_emails.iter().flat_map(|list| list.split(',')).map(str::trim).filter(|e| !e.is_empty()) {
            staff_emails.push(crate::mail::EmailAddress::parse(raw).map_err(|_| ConfigError::Invalid {
                var: "GROUNDWORK_STAFF_EMAILS".into(),
                value: raw.chars().take(200).collect(),
                reason: "expected email addresses separated by commas".into(),
            })?);
        }
        Ok(Self {
            app_url: env.url("GROUNDWORK_APP_URL", Some(local))?.unwrap_or_default(),
            api_url,
            host: v.host,
            port: v.port,
            app_name: v.app_name,
            operator_token: v.operator_token.map(Secret::new),
            staff_emails,
        })
    }
}

/// HTTP settings that come from configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `GROUNDWORK_MAX_BODY_BYTES`: the largest request body accepted (default 1 MiB).
    pub max_body_bytes: usize,
    /// `GROUNDWORK_TRUSTED_PROXIES`: how many proxies in front of the local server append to
    /// `X-Forwarded-For` (default 0: the socket's peer is the client, and the header, which
    /// anyone can send, is ignored). With N, the client is the Nth address from the right
    /// of the header followed by the peer. On Lambda the client is API Gateway's `sourceIp`.
    pub trusted_proxies: usize,
    /// The browser origins allowed to call the API with credentials (CORS), each exactly
    /// `scheme://host[:port]`: `GROUNDWORK_CORS_ORIGINS` (comma-separated; no wildcard, as
    /// the Fetch standard forbids one with credentials), plus, with
    /// `GROUNDWORK_CORS_DEV_ORIGINS=true` (local only), the usual dev servers' origins
    /// ([`DEV_ORIGINS`]). Empty: no CORS headers at all. On AWS the HTTP API answers CORS
    /// from the `CorsAllowOrigins` stack parameter.
    pub cors_origins: Vec<String>,
    /// The rate of each signed-in user's requests, whatever the plan:
    /// `GROUNDWORK_USER_REQUESTS_PER_SECOND` (default 100) with a burst of
    /// `GROUNDWORK_USER_REQUEST_BURST` (default 200). Generous: a page of a single-page app
    /// makes a few calls, and Stripe allows 100 a second per account. Also the rate of API
    /// keys whose plan sets none (`http::rate_limits`).
    pub user_rate: crate::auth::rate_limit::Rate,
}

/// The origins `GROUNDWORK_CORS_DEV_ORIGINS=true` allows locally: Vite (5173, its preview
/// 4173), Next.js and Create React App (3001, as the API takes 3000), and 8080, on
/// `localhost` and `127.0.0.1`.
pub const DEV_ORIGINS: &[&str] = &[
    "http://localhost:5173",
    "http://127.0.0.1:5173",
    "http://localhost:4173",
    "http://127.0.0.1:4173",
    "http://localhost:3001",
    "http://127.0.0.1:3001",
    "http://localhost:8080",
    "http://127.0.0.1:8080",
];

#[derive(Deserialize)]
struct HttpVars {
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default)]
    trusted_proxies: usize,
    cors_origins: Option<String>,
    #[serde(default)]
    cors_dev_origins: bool,
    #[serde(default = "default_user_requests_per_second")]
    user_requests_per_second: u32,
    #[serde(default = "default_user_request_burst")]
    user_request_burst: u32,
}

fn default_user_requests_per_second() -> u32 {
    100
}

fn default_user_request_burst() -> u32 {
    200
}

fn default_max_body_bytes() -> usize {
    1 << 20
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            trusted_proxies: 0,
            cors_origins: Vec::new(),
            user_rate: crate::auth::rate_limit::Rate {
                per_second: default_user_requests_per_second(),
                burst: default_user_request_burst(),
            },
        }
    }
}

impl HttpSettings {
    /// From `GROUNDWORK_MAX_BODY_BYTES`, `GROUNDWORK_TRUSTED_PROXIES`,
    /// `GROUNDWORK_CORS_ORIGINS`, `GROUNDWORK_CORS_DEV_ORIGINS`,
    /// `GROUNDWORK_USER_REQUESTS_PER_SECOND` and `GROUNDWORK_USER_REQUEST_BURST`.
    ///
    /// # Errors
    /// A malformed number, or a rate or burst outside 1 to 1,000,000; an allowed origin that is not exactly an origin (a wildcard, a
    /// path, another scheme); dev origins on Lambda.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let v: HttpVars = env.area("GROUNDWORK_")?;
        crate::settings::at_least("GROUNDWORK_MAX_BODY_BYTES", v.max_body_bytes, 1)?;
        for (var, value) in [
            ("GROUNDWORK_USER_REQUESTS_PER_SECOND", v.user_requests_per_second),
            ("GROUNDWORK_USER_REQUEST_BURST", v.user_request_burst),
        ] {
            crate::settings::at_least(var, value, 1)?;
            crate::settings::at_most(var, value, crate::billing::MAX_API_RATE)?;
        }
        let mut cors_origins = Vec::new();
        for raw in v.cors_origins.iter().flat_map(|list| list.split(',')).map(str::trim).filter(|o| !o.is_empty()) {
            cors_origins.push(origin(raw)?);
        }
        if v.cors_dev_origins {
            if env.on_lambda {
                return Err(ConfigError::Invalid {
                    var: "GROUNDWORK_CORS_DEV_ORIGINS".into(),
                    value: "true".into(),
                    reason: "dev origins are for the local stack; on AWS list origins in CorsAllowOrigins".into(),
                });
            }
            cors_origins.extend(DEV_ORIGINS.iter().map(|o| (*o).to_owned()));
        }
        cors_origins.sort();
        cors_origins.dedup();
        Ok(Self {
            max_body_bytes: v.max_body_bytes,
            trusted_proxies: v.trusted_proxies,
            cors_origins,
            user_rate: crate::auth::rate_limit::Rate {
                per_second: v.user_requests_per_second,
                burst: v.user_request_burst,
            },
        })
    }
}

/// `raw` as a serialized origin (RFC 6454): `http(s)://host[:port]`, lower-cased, nothing
/// after it.
fn origin(raw: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        var: "GROUNDWORK_CORS_ORIGINS".into(),
        value: raw.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    if raw.contains('*') {
        return Err(invalid("a wildcard cannot be allowed with credentials: list each origin"));
    }
    let url = reqwest::Url::parse(raw).map_err(|_| invalid("expected an origin such as https://app.acme.com"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.path() != "/"
    {
        return Err(invalid("expected an origin (scheme, host and port only), such as https://app.acme.com"));
    }
    Ok(url.origin().ascii_serialization())
}
