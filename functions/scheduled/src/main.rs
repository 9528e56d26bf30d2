//! The scheduled function's Lambda entry point (EventBridge schedules, and the data
//! migrations the deploy step invokes).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    let services = shared::lambda::bootstrap().await?;
    shared::lambda::serve_schedules(scheduled::deployed_jobs(&services), services.clone()).await
}
