//! The local server and the public addresses: where the local stack listens, the API's and
//! the frontend's base URLs (the issuer of access tokens; links in emails), the product's
//! name, and the operators' token.

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
        Ok(Self {
            app_url: env.url("GROUNDWORK_APP_URL", Some(local))?.unwrap_or_default(),
            api_url,
            host: v.host,
            port: v.port,
            app_name: v.app_name,
            operator_token: v.operator_token.map(Secret::new),
        })
    }
}

/// HTTP settings that come from configuration.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct HttpSettings {
    /// `GROUNDWORK_MAX_BODY_BYTES`: the largest request body accepted (default 1 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// `GROUNDWORK_TRUSTED_PROXIES`: how many proxies in front of the local server append to
    /// `X-Forwarded-For` (default 0: the socket's peer is the client, and the header, which
    /// anyone can send, is ignored). With N, the client is the Nth address from the right
    /// of the header followed by the peer. On Lambda the client is API Gateway's `sourceIp`.
    #[serde(default)]
    pub trusted_proxies: usize,
}

fn default_max_body_bytes() -> usize {
    1 << 20
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { max_body_bytes: default_max_body_bytes(), trusted_proxies: 0 }
    }
}

impl HttpSettings {
    /// From `GROUNDWORK_MAX_BODY_BYTES` and `GROUNDWORK_TRUSTED_PROXIES`.
    ///
    /// # Errors
    /// A malformed number.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        let settings: Self = env.area("GROUNDWORK_")?;
        crate::settings::at_least("GROUNDWORK_MAX_BODY_BYTES", settings.max_body_bytes, 1)?;
        Ok(settings)
    }
}
