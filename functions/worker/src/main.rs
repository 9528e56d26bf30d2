//! The worker function's Lambda entry point (SQS event source: the jobs queue).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    let services = shared::lambda::bootstrap().await?;
    shared::lambda::serve_sqs(worker::handler(services)).await
}
