//! The local stack: every function's routes, queue consumers and schedules in one process,
//! over the embedded adapters by default (no AWS account, no Docker, no network).
//!
//! It mounts exactly the code Lambda runs: each function crate's `routes()`, merged and
//! finished once with the shared HTTP conventions; the same queue handlers Lambda's SQS
//! event source calls, fed by a polling loop; the same scheduled jobs EventBridge fires,
//! fed by an in-process ticker.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use shared::config::{Config, QueueName};
use shared::queue::Queue;
use shared::queue::consumer::{MessageHandler, run_consumer};
use shared::schedule::{Schedule, ScheduledJob, run_schedule};
use shared::services::Services;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub mod cli;
pub mod scaffold;

/// Every function's routes, merged, with the shared HTTP conventions applied once.
///
/// # Errors
/// When a function's configuration (the plan catalogue) does not load.
pub fn router(services: &Services) -> anyhow::Result<Router> {
    let routes = Router::new()
        .merge(platform::routes(services.clone()))
        .merge(auth::routes(services.clone()))
        .merge(tenancy::routes(services.clone()))
        .merge(billing::routes(services.clone()))
        .merge(stripe_webhook::routes(services.clone()))
        .merge(products::routes(services));
    let limited = shared::http::rate_limits::LimitedRoutes::of(platform::api_description());
    let routes = shared::http::guarded(routes, services.clone(), limited);
    Ok(shared::http::finish(routes, &services.config.http))
}

/// A queue and the handler Lambda's event source would attach to it.
pub type Consumer = (Arc<dyn Queue>, Arc<dyn MessageHandler>);

/// Every queue consumer: the queue and the handler Lambda would attach to it.
///
/// # Errors
/// When a consumer cannot be built from the configuration.
pub fn consumers(services: &Services) -> anyhow::Result<Vec<Consumer>> {
    Ok(vec![
        (services.queues.get(QueueName::Email), email_dispatch::handler(services.clone())?),
        (services.queues.get(QueueName::MailEvents), mail_events::handler(services.clone())),
        (services.queues.get(QueueName::Jobs), worker::handler(services.clone())),
        (services.queues.get(QueueName::Billing), billing_events::handler(services.clone())),
    ])
}

/// Every schedule and its job.
pub fn schedules(services: &Services) -> Vec<(Schedule, Arc<dyn ScheduledJob>)> {
    scheduled::local_jobs(services)
}

/// A running local stack.
pub struct RunningStack {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// The services it runs on (tests inspect the store and queues through them).
    pub services: Services,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningStack {
    /// Stops accepting requests, lets in-flight work finish, stops consumers and schedules.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until `signal` completes, then stops.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// Starts the stack: binds `config.server.host:config.server.port` (port 0 picks a free one), starts
/// every consumer and schedule, and returns at once.
///
/// # Errors
/// If the services cannot be built or the address cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<RunningStack> {
    start_with_clock(config, Arc::new(shared::clock::SystemClock)).await
}

/// As [`start`], on the given clock (tests move time).
///
/// # Errors
/// As [`start`].
pub async fn start_with_clock(config: Config, clock: Arc<dyn shared::clock::Clock>) -> anyhow::Result<RunningStack> {
    start_wrapped(config, clock, |services, _| services).await
}

/// Who a [`start_wrapped`] hook is building services for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP routes.
    Routes,
    /// The queue consumers and the schedules.
    Background,
}

/// As [`start_with_clock`], with the services each part runs on passed through `wrap` first:
/// tests put fault-injecting adapters around the store and the queues, for the routes, the
/// background work, or both.
///
/// # Errors
/// As [`start`].
pub async fn start_wrapped(
    config: Config,
    clock: Arc<dyn shared::clock::Clock>,
    wrap: impl Fn(Services, Role) -> Services,
) -> anyhow::Result<RunningStack> {
    let bind = format!("{}:{}", config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    // With port 0 the defaults name no real port: point them at the one picked.
    let unbound = format!("http://{}:0", config.server.host);
    let mut config = config;
    for url in [&mut config.server.api_url, &mut config.server.app_url] {
        if *url == unbound {
            *url = format!("http://{addr}");
        }
    }
    let services = Services::with_clock(config, clock).await.context("building the services")?;
    // Before anything serves, as the deploy step does before a release takes traffic for
    // good (see `shared::migrations`).
    let applied = shared::migrations::run_to_completion(
        services.store.as_ref(),
        services.clock.as_ref(),
        shared::migrations::ALL,
    )
    .await
    .context("running the data migrations")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "data migrations applied");
    }
    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let background = wrap(services.clone(), Role::Background);
    for (queue, handler) in consumers(&background)? {
        tasks.spawn(run_consumer(queue, handler, watcher.clone()));
    }
    for (schedule, job) in schedules(&background) {
        let (clock, watcher) = (Arc::clone(&background.clock), watcher.clone());
        tasks.spawn(async move {
            if let Err(e) = run_schedule(schedule, job, clock, watcher).await {
                tracing::error!(error = %e, "schedule not started");
            }
        });
    }
    let app = router(&wrap(services.clone(), Role::Routes))?;
    let mut stop = watcher.clone();
    tasks.spawn(async move {
        // The peer's address is the client's (see `shared::http::context::client_address`).
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(RunningStack { addr, services, shutdown, tasks })
}
