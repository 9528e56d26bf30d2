//! The billing-events function's Lambda entry point (SQS event source: the FIFO billing queue).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    let services = shared::lambda::bootstrap().await?;
    shared::lambda::serve_sqs(billing_events::handler(services)).await
}
