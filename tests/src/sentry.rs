//! A stand-in for Sentry's ingestion endpoint on loopback (Sentry is a paid service without
//! a local server): it takes envelopes at `POST /api/<project>/envelope/` exactly as the SDK
//! sends them, checks the authentication header names the DSN's public key, and keeps each
//! event item for tests to read. [`SentryStandIn::hang`] makes it stop answering, as an
//! unreachable Sentry would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// The public key of the stand-in's DSN.
pub const PUBLIC_KEY: &str = "0123456789abcdef0123456789abcdef";

#[derive(Clone, Default)]
struct Shared {
    events: Arc<Mutex<Vec<Value>>>,
    envelopes: Arc<Mutex<Vec<String>>>,
    hang: Arc<AtomicBool>,
}

/// A running stand-in.
pub struct SentryStandIn {
    /// The DSN pointing at it (`SENTRY_DSN`).
    pub dsn: String,
    shared: Shared,
}

impl SentryStandIn {
    /// Starts the stand-in on a free loopback port.
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new().route("/api/{project}/envelope/", post(envelope)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Sentry stand-in");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { dsn: format!("http://{PUBLIC_KEY}@{addr}/42"), shared }
    }

    /// As [`SentryStandIn::start`], on a thread and runtime of its own that live as long as
    /// the process (for a stand-in shared by tests, each on its own runtime).
    ///
    /// # Panics
    /// If it cannot start.
    pub fn start_detached() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                tx.send(Self::start().await).expect("the caller waits");
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the stand-in starts")
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Value> {
        self.shared.events.lock().unwrap().clone()
    }

    /// Every envelope received so far, as sent.
    pub fn raw(&self) -> Vec<String> {
        self.shared.envelopes.lock().unwrap().clone()
    }

    /// The events whose tag `name` is `value`.
    pub fn tagged(&self, name: &str, value: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["tags"][name] == value).collect()
    }

    /// Waits up to ten seconds for an event that `matches`.
    ///
    /// # Panics
    /// If none arrives.
    pub async fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            if let Some(e) = self.events().into_iter().find(&matches) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no Sentry event {what}; received: {:#?}", self.events());
    }

    /// From now on, accepts connections but never answers.
    pub fn hang(&self) {
        self.shared.hang.store(true, Ordering::SeqCst);
    }
}

async fn envelope(
    State(shared): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if shared.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let auth = headers.get("x-sentry-auth").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if project != "42" || !auth.contains(&format!("sentry_key={PUBLIC_KEY}")) {
        return StatusCode::UNAUTHORIZED;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    match parse_envelope(&body) {
        Some(items) => {
            shared.envelopes.lock().unwrap().push(text);
            let events = items.into_iter().filter(|(h, _)| h["type"] == "event").map(|(_, p)| p);
            shared.events.lock().unwrap().extend(events);
            StatusCode::OK
        }
        None => StatusCode::BAD_REQUEST,
    }
}

/// The items of an envelope (<https://develop.sentry.dev/sdk/envelopes/>): a header line,
/// then per item a header line and a payload of `length` bytes, or up to the next newline.
fn parse_envelope(body: &[u8]) -> Option<Vec<(Value, Value)>> {
    let line = |rest: &[u8]| -> (Vec<u8>, usize) {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        (rest[..end].to_vec(), (end + 1).min(rest.len()))
    };
    let (header, mut at) = line(body);
    serde_json::from_slice::<Value>(&header).ok()?;
    let mut items = Vec::new();
    while at < body.len() {
        let (item_header, used) = line(&body[at..]);
        at += used;
        if item_header.is_empty() {
            continue;
        }
        let item_header: Value = serde_json::from_slice(&item_header).ok()?;
        let payload = match item_header["length"].as_u64() {
            Some(len) => {
                let len = usize::try_from(len).ok()?;
                let payload = body.get(at..at + len)?.to_vec();
                at += len;
                if body.get(at) == Some(&b'\n') {
                    at += 1;
                }
                payload
            }
            None => {
                let (payload, used) = line(&body[at..]);
                at += used;
                payload
            }
        };
        let payload = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        items.push((item_header, payload));
    }
    Some(items)
}
