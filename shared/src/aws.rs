//! AWS clients: one `SdkConfig` per process, loaded at init with operation and attempt
//! timeouts. Loading makes no network call: the region comes from `AWS_REGION` (always set
//! on Lambda) and credentials are resolved lazily, on the first request.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::Config;

/// The shared SDK configuration, with `AWS_ENDPOINT_URL` honoured for local API servers.
pub async fn sdk_config(config: &Config) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .operation_timeout(config.aws_operation_timeout)
            .operation_attempt_timeout(config.aws_attempt_timeout)
            .connect_timeout(std::time::Duration::from_secs(1))
            .build(),
    );
    if let Some(url) = &config.aws_endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
