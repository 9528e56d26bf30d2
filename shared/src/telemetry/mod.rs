//! Observability: structured logs through `tracing` (JSON lines on Lambda, readable lines
//! locally) and CloudWatch metrics in the Embedded Metric Format ([`metrics`]).

pub mod metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::settings::Env;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (Lambda's default).
    Json,
    /// Human-readable lines (the local stack's default).
    Text,
}

crate::choices!(LogFormat { "json" => Json, "text" => Text });

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metrics {
    Emf,
    Off,
}

crate::choices!(Metrics { "emf" => Emf, "off" => Off });

/// The observability settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `GROUNDWORK_LOG`: a tracing filter such as `info` or `shared=debug,info` (default `info`).
    pub log_filter: String,
    /// `GROUNDWORK_LOG_FORMAT`: `json` or `text` (default `json` on Lambda, else `text`).
    pub log_format: LogFormat,
    /// `GROUNDWORK_METRICS`: `emf` or `off` (default `emf` on Lambda, else `off`).
    pub emf_metrics: bool,
}

impl TelemetryConfig {
    /// From `GROUNDWORK_LOG`, `GROUNDWORK_LOG_FORMAT` and `GROUNDWORK_METRICS`.
    ///
    /// # Errors
    /// An unknown format or metrics choice.
    pub fn from_env(env: &Env) -> Result<Self, crate::settings::ConfigError> {
        let (format, metrics) =
            if env.on_lambda { (LogFormat::Json, Metrics::Emf) } else { (LogFormat::Text, Metrics::Off) };
        let log_filter = env.get("GROUNDWORK_LOG").unwrap_or_else(|| "info".into());
        if let Err(e) = EnvFilter::builder().parse(&log_filter) {
            return Err(crate::settings::ConfigError::Invalid {
                var: "GROUNDWORK_LOG".into(),
                value: log_filter.chars().take(200).collect(),
                reason: format!("not a log filter ({e}); for example `info` or `shared=debug,info`"),
            });
        }
        Ok(Self {
            log_filter,
            log_format: env.choice("GROUNDWORK_LOG_FORMAT", format)?,
            emf_metrics: env.choice("GROUNDWORK_METRICS", metrics)? == Metrics::Emf,
        })
    }
}

/// Installs the global log subscriber and turns EMF metrics on or off. Call once at start;
/// later calls (several tests in one process) keep the first subscriber.
pub fn init(config: &TelemetryConfig) {
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
