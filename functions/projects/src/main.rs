//! The projects function's Lambda entry point.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    let services = shared::lambda::bootstrap().await?;
    shared::lambda::serve_http(projects::app(services)).await
}
