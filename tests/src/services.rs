//! Services over the embedded adapters in a test's own data directory: the one way a test
//! builds them (the whole stack with HTTP is [`crate::app::TestApp`]).

use std::path::Path;
use std::sync::Arc;

use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::services::Services;

/// The configuration of a local system whose data lives in `dir`, with `extra` variables on
/// top of the defaults.
///
/// # Panics
/// If the variables do not make a valid configuration.
pub fn config(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![("GROUNDWORK_DATA_DIR".to_owned(), dir.display().to_string())];
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Config::from_vars(vars).expect("a valid test configuration")
}

/// Services over the embedded adapters in `dir`, on the system clock.
///
/// # Panics
/// If they cannot be built.
pub async fn services(dir: &Path, extra: &[(&str, &str)]) -> Services {
    services_with_clock(dir, extra, Arc::new(SystemClock)).await
}

/// Services over the embedded adapters in `dir`, on `clock` (tests move time).
///
/// # Panics
/// If they cannot be built.
pub async fn services_with_clock(dir: &Path, extra: &[(&str, &str)], clock: Arc<dyn Clock>) -> Services {
    crate::logs();
    Services::with_clock(config(dir, extra), clock).await.expect("services build")
}

/// The shipped free plan's API rate limits, as `plans.toml` writes them: what
/// [`plans_file_with`] replaces to give tests and harnesses other rates.
pub const FREE_API_LIMITS: &str = "api_requests_per_second = 5, api_burst = 10, api_requests_per_month = 10000 }";

/// The shipped plan catalogue with `from` replaced by `to`, written into `dir`; returns its
/// path, for `GROUNDWORK_PLANS_FILE`.
///
/// # Panics
/// When `from` is not in the shipped catalogue (it moved: update the caller), or the file
/// cannot be written.
pub fn plans_file_with(dir: &Path, from: &str, to: &str) -> String {
    let shipped = include_str!("../../shared/config/plans.toml");
    let edited = shipped.replace(from, to);
    assert_ne!(edited, shipped, "{from:?} is not in the shipped plan catalogue: update the caller");
    let path = dir.join("plans.toml");
    std::fs::write(&path, edited).expect("the plan catalogue is written");
    path.to_string_lossy().into_owned()
}
