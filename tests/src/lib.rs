//! Test support shared by every crate's tests, and home of the cross-function integration
//! tests (`tests/tests/`).
//!
//! - [`app`]: the whole local stack per test ([`app::TestApp`]), with its outbox, and the
//!   loopback OpenID Connect provider's helpers;
//! - [`services`]: services over the embedded adapters in a test's own directory;
//! - [`faults`]: a store that fails the items a test names (outage tests);
//! - [`issuers`]: external token issuers for rent-auth tests (Cognito on the loopback AWS
//!   server, a JWKS stand-in for the vendors without a local server);
//! - [`eventually`]: waits for what background work (queues, jobs, schedules) makes true;
//! - [`logs`]: with `TEST_LOG=1`, a failing test shows its logs;
//! - [`moto`]: clients for the DynamoDB/SQS API server the test command starts on loopback,
//!   with a fresh table or queue per test;
//! - [`runtime_api`]: a Lambda Runtime API stub, to run a function's real bootstrap binary;
//! - [`store_contract`] and [`queue_contract`]: the contract suites every adapter passes,
//!   instantiated per adapter with [`store_contract_suite!`] and [`queue_contract_suite!`];
//! - [`migration_contract`]: the data-migration runner's guarantees (once, in order,
//!   resumable, one runner at a time) on each store adapter ([`migration_contract_suite!`]);
//! - [`events`]: real Lambda event payloads from `tests/data/`;
//! - [`smtp`]: the capturing SMTP server the test command starts;
//! - [`sentry`]: a stand-in for Sentry's envelope endpoint, keeping the events it gets;
//! - [`dns`]: the DNS server the test command starts, whose TXT records tests write;
//! - [`template`]: `template.yaml`, parsed.

pub mod app;
pub mod billing;
pub mod cloud;
pub mod dns;
pub mod events;
pub mod faults;
pub mod issuers;
pub mod journeys;
pub mod migration_contract;
pub mod moto;
pub mod posthog;
pub mod queue_contract;
pub mod runtime_api;
pub mod sentry;
pub mod services;
pub mod smtp;
pub mod store_contract;
pub mod template;
pub mod webhook_receiver;

use std::future::Future;
use std::time::Duration;

/// A fixed start time for manual clocks (2027-01-15T08:00:00Z).
pub const T0_MS: i64 = 1_800_000_000_000;

/// How long [`eventually`] waits before it gives up.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// Polls `probe` until it returns `Some`, and returns that; the way a test waits for what
/// queues, jobs and schedules do in the background.
///
/// # Panics
/// After [`EVENTUALLY`], naming `what` it waited for.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(EVENTUALLY, what, probe).await
}

/// As [`eventually`], waiting up to `limit` (for work paced by real timeouts).
///
/// # Panics
/// After `limit`, naming `what` it waited for.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// With `TEST_LOG=1` (or a filter: `TEST_LOG=shared=debug`), routes the logs of this test
/// process to the test harness, which shows a test's output when it fails. Idempotent.
pub fn logs() {
    let Ok(filter) = std::env::var("TEST_LOG") else { return };
    let filter = if filter == "1" { "debug".to_owned() } else { filter };
    // A process has one global subscriber; a test binary that set its own keeps it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}
