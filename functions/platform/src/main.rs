//! The platform function's Lambda entry point.

use shared::config::Config;
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    let config = Config::from_env()?;
    shared::telemetry::init(&config);
    let services = Services::from_config(config).await?;
    shared::lambda::serve_http(platform::app(services)).await
}
