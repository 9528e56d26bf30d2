//! The scheduled function's Lambda entry point (EventBridge schedules).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    let services = shared::lambda::bootstrap().await?;
    let clock = services.clock.clone();
    shared::lambda::serve_schedules(scheduled::deployed_jobs(&services), clock).await
}
