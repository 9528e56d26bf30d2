//! Error tracking with Sentry, on when `SENTRY_DSN` is set.
//!
//! What is reported, one event each: every `ERROR` log line (a job that fails or is
//! dead-lettered, a scheduled job that fails, a consumer that cannot receive...), a panic
//! (with its backtrace), and an HTTP answer of 500, 502 or 504. A 503 is a refusal for now
//! (an overload, a dependency's outage), which metrics and alarms count, not a fault in the
//! code. `WARN` lines, and the error lines of the HTTP layer, become breadcrumbs: the 5xx
//! event of a request carries what its request logged on the way (the error's causes).
//!
//! Every event names the release ([`crate::RELEASE`]), the environment and the function;
//! a request's also its request id, method, route template, and the ids of its user and
//! tenant (account) once the request has been authenticated. Nothing else about the request
//! goes (no header, no body, no query string), and [`scrub_event`] removes from every text
//! of an event what looks like an email address or a secret (a JWT, a `Bearer` credential,
//! an API key, a long opaque token), in case a message carries one.
//!
//! On Lambda, [`flush`] runs before an invocation that reported something answers (the
//! environment is frozen afterwards, and whatever is still queued would go only with a
//! later invocation, if ever), waiting at most [`FLUSH_TIMEOUT`]; an invocation that
//! reported nothing does not wait. Events go from a background thread through a client with
//! a bounded timeout, so an unreachable Sentry never fails a request, and slows only the
//! invocations that report an error, by at most that flush.
//!
//! Off (no `SENTRY_DSN`), nothing is installed: no client, no log layer, no per-request
//! scope, no flush.
//!
//! The `sentry` crate is pinned to 0.46, the newest line on the workspace's reqwest 0.12:
//! later lines would link a second HTTP client into every function.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sentry::protocol::{Breadcrumb, Context, Event, Value};

use crate::settings::{ConfigError, Env};

/// The longest an invocation waits for its events to be sent.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest one envelope's delivery to Sentry may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The error-tracking settings: `SENTRY_DSN`, with the environment and the function name.
#[derive(Clone, PartialEq, Eq)]
pub struct ErrorTrackingConfig {
    /// Where events go (`SENTRY_DSN`, validated at start-up).
    pub dsn: sentry::types::Dsn,
    /// `GROUNDWORK_ENV`.
    pub environment: String,
    /// The Lambda function's name, or `local`.
    pub function: String,
}

impl std::fmt::Debug for ErrorTrackingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The DSN's public key is not a secret, but it lets anyone send events: keep it out
        // of logs anyway.
        f.debug_struct("ErrorTrackingConfig")
            .field("dsn", &format_args!("{}://[redacted]@{}", self.dsn.scheme(), self.dsn.host()))
            .field("environment", &self.environment)
            .field("function", &self.function)
            .finish()
    }
}

impl ErrorTrackingConfig {
    /// From `SENTRY_DSN` (unset or empty: off).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `SENTRY_DSN` when it is not a DSN
    /// (`https://<public key>@<host>/<project id>`).
    pub fn from_env(env: &Env, environment: &str) -> Result<Option<Self>, ConfigError> {
        let Some(raw) = env.get("SENTRY_DSN") else { return Ok(None) };
        let invalid = |why: String| ConfigError::Invalid {
            var: "SENTRY_DSN".into(),
            value: "[redacted]".into(),
            reason: format!("not a Sentry DSN ({why}); expected https://<public key>@<host>/<project id>"),
        };
        if raw.chars().any(char::is_whitespace) {
            return Err(invalid("it contains a space".into()));
        }
        let dsn = sentry::types::Dsn::from_str(&raw).map_err(|e| invalid(e.to_string()))?;
        if dsn.project_id().value().is_empty() || !dsn.project_id().value().chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("the project id is not a number".into()));
        }
        let function = env.get("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into());
        Ok(Some(Self { dsn, environment: environment.to_owned(), function }))
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Events let through so far, and how many of them the last flush covered.
static CAPTURED: AtomicU64 = AtomicU64::new(0);
static FLUSHED: AtomicU64 = AtomicU64::new(0);
static GUARD: OnceLock<sentry::ClientInitGuard> = OnceLock::new();

/// Whether a client is installed.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs the Sentry client for the life of the process (the first call wins; later ones,
/// several tests in one process, keep it).
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn init(config: &ErrorTrackingConfig) -> anyhow::Result<()> {
    if GUARD.get().is_some() {
        return Ok(());
    }
    let http = crate::outbound::client(SEND_TIMEOUT)?;
    let transport = move |options: &sentry::ClientOptions| -> Arc<dyn sentry::Transport> {
        Arc::new(sentry::transports::ReqwestHttpTransport::with_client(options, http.clone()))
    };
    let options = sentry::ClientOptions {
        dsn: Some(config.dsn.clone()),
        release: Some(crate::RELEASE.into()),
        environment: Some(config.environment.clone().into()),
        send_default_pii: false,
        max_breadcrumbs: 30,
        before_send: Some(Arc::new(|event| {
            CAPTURED.fetch_add(1, Ordering::Relaxed);
            Some(scrub_event(event))
        })),
        before_breadcrumb: Some(Arc::new(|crumb| Some(scrub_breadcrumb(crumb)))),
        transport: Some(Arc::new(transport)),
        ..Default::default()
    };
    let guard = sentry::init(options);
    let function = config.function.clone();
    sentry::Hub::main().configure_scope(|scope| scope.set_tag("function", function));
    if GUARD.set(guard).is_ok() {
        ENABLED.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// The log layer: `ERROR` lines become events, `WARN` lines and the error lines of the HTTP
/// layer and of the Lambda runtime (which repeat what was reported) breadcrumbs; `None`
/// when error tracking is off.
pub fn log_layer<S>() -> Option<sentry::integrations::tracing::SentryLayer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use sentry::integrations::tracing::EventFilter;
    enabled().then(|| {
        sentry::integrations::tracing::layer()
            .event_filter(|meta| match *meta.level() {
                // The HTTP layer's own 5xx event carries these as its trail.
                tracing::Level::ERROR if meta.target().starts_with("shared::http") => EventFilter::Breadcrumb,
                tracing::Level::ERROR if meta.target().starts_with("shared::error") => EventFilter::Breadcrumb,
                // The runtime's line about a handler's error repeats what was reported.
                tracing::Level::ERROR if meta.target().starts_with("lambda_runtime") => EventFilter::Breadcrumb,
                tracing::Level::ERROR => EventFilter::Event,
                tracing::Level::WARN => EventFilter::Breadcrumb,
                _ => EventFilter::Ignore,
            })
            // Spans are not sent (no performance tracing); requests get their own scope.
            .span_filter(|_| false)
    })
}

/// A scope of its own for one request, tagged with its id, method and route, that the
/// user and tenant ids join once known ([`set_user`], [`set_tenant`]); `None` when off.
pub fn request_hub(request_id: &str, method: &str, route: &str) -> Option<Arc<sentry::Hub>> {
    if !enabled() {
        return None;
    }
    let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()));
    hub.configure_scope(|scope| {
        scope.set_tag("request_id", request_id);
        scope.set_tag("method", method);
        scope.set_tag("route", route);
    });
    Some(hub)
}

/// Reports an HTTP answer of 500, 502 or 504 (a panic already reported itself: pass
/// `panicked`) on the request's scope.
pub fn report_server_error(hub: &sentry::Hub, status: u16, method: &str, route: &str, panicked: bool) {
    if panicked || !matches!(status, 500 | 502 | 504) {
        return;
    }
    hub.capture_message(&format!("{status} on {method} {route}"), sentry::Level::Error);
}

/// Runs `work` (a queue message's handling, a scheduled job) in a scope of its own, so its
/// warnings reach only its own events as breadcrumbs; `work` itself when off.
pub async fn scoped<F: std::future::Future>(work: F) -> F::Output {
    if enabled() {
        let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()));
        sentry::SentryFutureExt::bind_hub(work, hub).await
    } else {
        work.await
    }
}

/// Runs `f` in the request's scope, if it has one (for the lines logged after its handler).
pub fn in_scope<R>(hub: Option<&Arc<sentry::Hub>>, f: impl FnOnce() -> R) -> R {
    match hub {
        Some(hub) => sentry::Hub::run(Arc::clone(hub), f),
        None => f(),
    }
}

/// Names the request's user (by id only) on its scope.
pub fn set_user(user_id: &impl std::fmt::Display) {
    // Formatted only when on: this runs on every authenticated request.
    if enabled() {
        sentry::Hub::current().configure_scope(|scope| {
            scope.set_user(Some(sentry::User { id: Some(user_id.to_string()), ..Default::default() }));
        });
    }
}

/// Names the request's tenant (account id) on its scope.
pub fn set_tenant(account_id: &impl std::fmt::Display) {
    if enabled() {
        sentry::Hub::current().configure_scope(|scope| scope.set_tag("account_id", account_id));
    }
}

/// Sends what is queued, waiting at most [`FLUSH_TIMEOUT`], when an event was reported
/// since the last flush: call before a Lambda invocation answers. Nothing to do when off,
/// or when the invocation reported nothing (so a Sentry outage, which leaves a backlog
/// behind, never holds up the invocations that go well).
pub async fn flush() {
    if !enabled() {
        return;
    }
    let captured = CAPTURED.load(Ordering::Relaxed);
    if FLUSHED.swap(captured, Ordering::Relaxed) == captured {
        return;
    }
    if let Some(client) = sentry::Hub::main().client() {
        // Blocking: it waits on the transport thread.
        let _ = tokio::task::spawn_blocking(move || client.flush(Some(FLUSH_TIMEOUT))).await;
    }
}

/// An event with the personal data and secrets its texts may carry removed: the user is
/// reduced to an id, the request's details dropped, and every message, exception value,
/// breadcrumb, extra and context value passed through [`scrub_text`].
pub fn scrub_event(mut event: Event<'static>) -> Event<'static> {
    event.request = None;
    event.server_name = None;
    if let Some(user) = event.user.take() {
        event.user = user.id.map(|id| sentry::User { id: Some(id), ..Default::default() });
    }
    if let Some(message) = event.message.as_mut() {
        scrub_in_place(message);
    }
    if let Some(entry) = event.logentry.as_mut() {
        scrub_in_place(&mut entry.message);
        entry.params.iter_mut().for_each(scrub_value);
    }
    for exception in &mut event.exception.values {
        if let Some(value) = exception.value.as_mut() {
            scrub_in_place(value);
        }
    }
    let crumbs = std::mem::take(&mut event.breadcrumbs.values);
    event.breadcrumbs.values = crumbs.into_iter().map(scrub_breadcrumb).collect();
    event.extra.values_mut().for_each(scrub_value);
    event.tags.values_mut().for_each(scrub_in_place);
    for context in event.contexts.values_mut() {
        if let Context::Other(map) = context {
            map.values_mut().for_each(scrub_value);
        }
    }
    event
}

/// A breadcrumb with its message and data passed through [`scrub_text`].
pub fn scrub_breadcrumb(mut crumb: Breadcrumb) -> Breadcrumb {
    if let Some(message) = crumb.message.as_mut() {
        scrub_in_place(message);
    }
    crumb.data.values_mut().for_each(scrub_value);
    crumb
}

fn scrub_value(value: &mut Value) {
    match value {
        Value::String(s) => scrub_in_place(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => map.values_mut().for_each(scrub_value),
        _ => {}
    }
}

fn scrub_in_place(s: &mut String) {
    if let Cow::Owned(clean) = scrub_text(s) {
        *s = clean;
    }
}

/// `text` with every word that looks like an email address replaced by `[email]`, and
/// every one that looks like a secret by `[secret]`: a JWT (`eyJ...`, two dots), the word
/// after `Bearer`, a Groundwork API key (`gwk_...`), a Stripe key or signing secret
/// (`sk_`, `rk_`, `whsec_`), and any word of 32 or more base64url characters that looks
/// random (Groundwork's refresh, link and key secrets, [`crate::auth::random_secret`]:
/// upper and lower case and digits, changing class at most characters), while names that
/// are long but made of words (`groundwork-staging-ApiErrorRateAlarm-1ABC2DEF3GHI`), hex
/// digests and ULIDs (26 characters) stay readable. A safety net, not the rule: log lines
/// carry no secret in the first place (the log-hygiene test). Words split at whitespace, quotes and
/// the punctuation around values in messages (`,;()[]{}<>=`).
///
/// Groundwork's own: a regular-expression crate would add its engine to every function for
/// these few shapes.
pub fn scrub_text(text: &str) -> Cow<'_, str> {
    let is_separator = |c: char| c.is_whitespace() || "\"'`,;()[]{}<>=".contains(c);
    let mut out = String::new();
    let mut changed = false;
    let mut after_bearer = false;
    let mut rest = text;
    while !rest.is_empty() {
        let sep_len = rest.find(|c: char| !is_separator(c)).unwrap_or(rest.len());
        out.push_str(&rest[..sep_len]);
        rest = &rest[sep_len..];
        let word_len = rest.find(is_separator).unwrap_or(rest.len());
        let word = &rest[..word_len];
        rest = &rest[word_len..];
        // Already a placeholder (text scrubbed before).
        let placeholder = (word == "secret" || word == "email") && out.ends_with('[');
        let replacement = if word.is_empty() || placeholder {
            None
        } else if after_bearer || looks_secret(word) {
            Some("[secret]")
        } else if looks_like_email(word) {
            Some("[email]")
        } else {
            None
        };
        after_bearer = word.eq_ignore_ascii_case("bearer");
        match replacement {
            Some(r) => {
                out.push_str(r);
                changed = true;
            }
            None => out.push_str(word),
        }
    }
    if changed { Cow::Owned(out) } else { Cow::Borrowed(text) }
}

fn looks_like_email(word: &str) -> bool {
    let word = word.trim_end_matches(['.', ':']);
    // `%40` is how an address travels in a query string.
    let at = word.rsplit_once('@').or_else(|| word.rsplit_once("%40"));
    at.is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.starts_with('.'))
}

fn looks_secret(word: &str) -> bool {
    // URL-safe and standard base64 alike.
    let base64url = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/');
    let jwt = word.starts_with("eyJ") && word.matches('.').count() == 2;
    let prefixed = ["gwk_", "sk_", "rk_", "whsec_"].iter().any(|p| word.starts_with(p) && word.len() > p.len() + 8);
    let opaque = word.len() >= 32 && word.chars().all(base64url) && looks_random(word);
    jwt || prefixed || opaque
}

/// Mixed case and digits, with the character class (lower, upper, digit, other) changing
/// between at least 45% of neighbours: random base64url changes about 64% of the time,
/// words and identifiers far less.
fn looks_random(word: &str) -> bool {
    let class = |c: char| match c {
        'a'..='z' => 0,
        'A'..='Z' => 1,
        '0'..='9' => 2,
        _ => 3,
    };
    let classes: Vec<u8> = word.chars().map(class).collect();
    let has = |k: u8| classes.contains(&k);
    let changes = classes.windows(2).filter(|w| w[0] != w[1]).count();
    has(0) && has(1) && has(2) && changes * 100 >= (classes.len() - 1) * 45
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_secrets_are_removed_and_ids_kept() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let text = format!(
            "login for ada.lovelace@example.com failed: Authorization: Bearer {jwt}; key=gwk_0123456789abcdef, \
             refresh \"Zm9vYmFyYmF6cXV4cXV1eHF1dXpxdXV6cXV1eg\" user 01JABCDEFGHJKMNPQRSTVWXYZ0 at 12:30."
        );
        let clean = scrub_text(&text);
        for secret in
            ["ada.lovelace@example.com", jwt, "gwk_0123456789abcdef", "Zm9vYmFyYmF6cXV4cXV1eHF1dXpxdXV6cXV1eg"]
        {
            assert!(!clean.contains(secret), "{secret} in {clean}");
        }
        assert_eq!(clean.matches("[secret]").count(), 3, "{clean}");
        assert!(clean.contains("[email] failed") && clean.contains("01JABCDEFGHJKMNPQRSTVWXYZ0 at 12:30."), "{clean}");
        assert!(matches!(scrub_text("job 01JABCDEFGHJKMNPQRSTVWXYZ0 failed"), Cow::Borrowed(_)));
        let more = "to=dave%40example.com from root@localhost key Zm9vYmFy+mF6cXV4/XV1eHF1dXpxdXV6cXV1eg9Q==";
        assert_eq!(scrub_text(more), "to=[email] from [email] key [secret]==");
        let once = scrub_text("Authorization: Bearer eyJa.eyJb.c").into_owned();
        assert_eq!(scrub_text(&once), once, "scrubbing twice changes nothing: {once}");
        for name in [
            "groundwork-staging-launch-rockets-and-more",
            "groundwork-staging-ApiErrorRateAlarm-1ABC2DEF3GHI",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            assert_eq!(scrub_text(name), name, "a name is not a secret");
        }
    }

    #[test]
    fn groundwork_secrets_are_recognised() {
        let missed: Vec<String> =
            (0..2000).map(|_| crate::auth::random_secret().unwrap()).filter(|s| scrub_text(s) != "[secret]").collect();
        // The shape test is statistical: say how often it misses, and keep that rare.
        assert!(missed.len() <= 20, "{} of 2000 secrets missed, e.g. {:?}", missed.len(), missed.first());
    }

    #[test]
    fn every_text_of_an_event_is_scrubbed_and_the_user_is_an_id() {
        let mut event = Event {
            message: Some("reset sent to grace@example.com".into()),
            user: Some(sentry::User {
                id: Some("01JUSER".into()),
                email: Some("grace@example.com".into()),
                ip_address: Some(sentry::protocol::IpAddress::Auto),
                ..Default::default()
            }),
            request: Some(sentry::protocol::Request { data: Some("password=hunter2".into()), ..Default::default() }),
            ..Default::default()
        };
        event.exception.values.push(sentry::protocol::Exception {
            value: Some("invalid type: string \"grace@example.com\"".into()),
            ..Default::default()
        });
        event.breadcrumbs.values.push(Breadcrumb {
            message: Some("Bearer abc.def".into()),
            data: [("to".to_owned(), Value::from("grace@example.com"))].into_iter().collect(),
            ..Default::default()
        });
        event.extra.insert("nested".into(), serde_json::json!({"list": ["grace@example.com"]}));
        let clean = scrub_event(event);
        let text = serde_json::to_string(&clean).unwrap();
        assert!(
            !text.contains("grace@example.com") && !text.contains("hunter2") && !text.contains("abc.def"),
            "{text}"
        );
        assert_eq!(clean.user.as_ref().and_then(|u| u.id.as_deref()), Some("01JUSER"));
        assert!(clean.user.unwrap().ip_address.is_none());
    }

    #[test]
    fn a_malformed_dsn_fails_start_up_naming_it() {
        let env = Env::new([("SENTRY_DSN".to_owned(), "sentry.io/12".to_owned())]);
        let err = ErrorTrackingConfig::from_env(&env, "staging").unwrap_err();
        assert!(err.to_string().contains("SENTRY_DSN"), "{err}");
        let env = Env::new([("SENTRY_DSN".to_owned(), "https://abc@o1.ingest.sentry.io/42".to_owned())]);
        let config = ErrorTrackingConfig::from_env(&env, "staging").unwrap().unwrap();
        assert_eq!((config.environment.as_str(), config.function.as_str()), ("staging", "local"));
        assert!(!format!("{config:?}").contains("abc"));
        assert!(ErrorTrackingConfig::from_env(&Env::new([]), "staging").unwrap().is_none());
        for bad in ["https://abc@o1.ingest.sentry.io/notanumber", "https://abc@host/1 extra"] {
            let env = Env::new([("SENTRY_DSN".to_owned(), bad.to_owned())]);
            assert!(ErrorTrackingConfig::from_env(&env, "staging").is_err(), "{bad}");
        }
    }
}
