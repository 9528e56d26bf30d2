//! The mail-events function's Lambda entry point (SQS event source).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    let services = shared::lambda::bootstrap().await?;
    shared::lambda::serve_sqs(mail_events::handler(services)).await
}
