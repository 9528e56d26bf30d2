//! Observability: structured logs through `tracing` (JSON lines on Lambda, readable lines
//! locally) and CloudWatch metrics in the Embedded Metric Format ([`metrics`]).

pub mod metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{Config, LogFormat};

/// Installs the global log subscriber and turns EMF metrics on or off. Call once at start;
/// later calls (several tests in one process) keep the first subscriber.
pub fn init(config: &Config) {
    metrics::set_enabled(config.emf_metrics);
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .try_init(),
        // Colours only for a person at a terminal, not in a file or a pipe.
        LogFormat::Text => builder
            .compact()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
    };
    // Already installed: keep it.
    drop(result);
}
