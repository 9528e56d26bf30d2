//! Observability: structured logs through `tracing` (JSON lines on Lambda, readable lines
//! locally), CloudWatch metrics in the Embedded Metric Format ([`metrics`]), and error
//! tracking with Sentry when `SENTRY_DSN` is set ([`error_tracking`]).

pub mod error_tracking;
pub mod metrics;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FmtSpan, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

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
    /// `SENTRY_DSN`: error tracking, off when unset.
    pub error_tracking: Option<error_tracking::ErrorTrackingConfig>,
}

impl TelemetryConfig {
    /// From `GROUNDWORK_LOG`, `GROUNDWORK_LOG_FORMAT`, `GROUNDWORK_METRICS` and
    /// `SENTRY_DSN`, in `environment` (`GROUNDWORK_ENV`).
    ///
    /// # Errors
    /// An unknown format or metrics choice; a malformed DSN.
    pub fn from_env(env: &Env, environment: &str) -> Result<Self, crate::settings::ConfigError> {
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
            error_tracking: error_tracking::ErrorTrackingConfig::from_env(env, environment)?,
        })
    }
}

/// Installs the global log subscriber, turns EMF metrics on or off, and installs error
/// tracking when configured. Call once at start; later calls (several tests in one
/// process) keep the first subscriber.
///
/// # Errors
/// When error tracking is configured and its HTTP client cannot be built.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<()> {
    metrics::set_enabled(config.emf_metrics);
    if let Some(tracking) = &config.error_tracking {
        error_tracking::init(tracking)?;
    }
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    let result = match config.log_format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(json_lines())
            .finish()
            .with(error_tracking::log_layer())
            .try_init(),
        // Colours only for a person at a terminal, not in a file or a pipe.
        LogFormat::Text => builder
            .compact()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .finish()
            .with(error_tracking::log_layer())
            .try_init(),
    };
    // Already installed: keep it.
    drop(result);
    Ok(())
}

/// The JSON line format: the event's fields flat, its current span, its target, and the
/// release ([`crate::RELEASE`]) on every line, so a log search can tell one deploy's
/// lines from the next.
fn json_lines() -> WithRelease {
    WithRelease(
        tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true),
    )
}

/// A JSON event format with `"release"` as each object's first member.
struct WithRelease(tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>);

impl<S, N> FormatEvent<S, N> for WithRelease
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let release = serde_json::Value::String(crate::RELEASE.to_owned());
                write!(writer, "{{\"release\":{release},{rest}")
            }
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn every_json_line_names_the_release() {
        let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&lines);
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(json_lines())
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r1");
            let _entered = span.enter();
            tracing::info!(account_id = "a1", "hello");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["release"], crate::RELEASE);
        assert_eq!((line["message"].as_str(), line["account_id"].as_str()), (Some("hello"), Some("a1")));
        assert_eq!(line["span"]["request_id"], "r1");
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
