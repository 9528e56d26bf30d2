//! AWS clients: one `SdkConfig` per process, loaded at init with operation and attempt
//! timeouts. Loading makes no network call: the region comes from `AWS_REGION` (always set
//! on Lambda) and credentials are resolved lazily, on the first request.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use std::time::Duration;

/// The AWS client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// `GROUNDWORK_AWS_TIMEOUT_MS`: the whole-operation timeout of AWS calls, retries
    /// included (default 5 s).
    pub operation_timeout: Duration,
    /// `GROUNDWORK_AWS_ATTEMPT_TIMEOUT_MS`: one attempt's timeout (default 2 s).
    pub attempt_timeout: Duration,
    /// `AWS_ENDPOINT_URL`: send every AWS call to this endpoint (a local API server).
    pub endpoint_url: Option<String>,
}

#[derive(serde::Deserialize)]
struct Vars {
    #[serde(default = "default_timeout_ms")]
    aws_timeout_ms: u64,
    #[serde(default = "default_attempt_timeout_ms")]
    aws_attempt_timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_attempt_timeout_ms() -> u64 {
    2_000
}

impl AwsConfig {
    /// From `GROUNDWORK_AWS_*` and `AWS_ENDPOINT_URL`.
    ///
    /// # Errors
    /// A malformed number.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        let v: Vars = env.area("GROUNDWORK_")?;
        Ok(Self {
            operation_timeout: Duration::from_millis(v.aws_timeout_ms),
            attempt_timeout: Duration::from_millis(v.aws_attempt_timeout_ms),
            endpoint_url: env.get("AWS_ENDPOINT_URL"),
        })
    }
}

/// The shared SDK configuration, with `AWS_ENDPOINT_URL` honoured for local API servers.
pub async fn sdk_config(config: &AwsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .operation_timeout(config.operation_timeout)
            .operation_attempt_timeout(config.attempt_timeout)
            .connect_timeout(Duration::from_secs(1))
            .build(),
    );
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
