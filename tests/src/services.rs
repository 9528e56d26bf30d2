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
