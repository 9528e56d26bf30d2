//! Tests of what the process sends out about itself: log lines and error-tracking events.
//! One binary, because both install process-wide state (the global log subscriber, the
//! Sentry client), which [`process_telemetry`] sets up once for every test in it.

mod error_tracking;
mod log_hygiene;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use testkit::sentry::SentryStandIn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Every log line of the process, as JSON.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Once per process: a Sentry stand-in (on a thread of its own, outliving each test's
/// runtime), error tracking pointed at it, and the global subscriber capturing every line
/// at debug level with error tracking's log layer beside it, as `telemetry::init` installs.
pub fn process_telemetry() -> (Capture, &'static SentryStandIn) {
    static ONCE: OnceLock<(Capture, SentryStandIn)> = OnceLock::new();
    let (capture, sentry) = ONCE.get_or_init(|| {
        let sentry = SentryStandIn::start_detached();
        let env = shared::settings::Env::new([("SENTRY_DSN".to_owned(), sentry.dsn.clone())]);
        let config = shared::telemetry::error_tracking::ErrorTrackingConfig::from_env(&env, "test")
            .expect("the stand-in's DSN parses")
            .expect("error tracking is configured");
        shared::telemetry::error_tracking::init(&config).expect("error tracking starts");
        let capture = Capture::default();
        let fmt = tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(capture.clone());
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(fmt)
            .with(shared::telemetry::error_tracking::log_layer())
            .init();
        (capture, sentry)
    });
    (capture.clone(), sentry)
}
