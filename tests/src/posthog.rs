//! A stand-in for PostHog's batch capture endpoint on loopback (PostHog is a paid service
//! without a local server): it takes `POST /batch/` as PostHog documents it
//! (<https://posthog.com/docs/api/capture>), checks that every batch is a JSON object with
//! the project key and a list of events, each with `event`, `distinct_id`, `timestamp`,
//! `uuid` and `properties`, and keeps the batches for tests to read. The statuses to answer
//! can be queued, to play an outage (503) or a refusal (400).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

/// The project key the stand-in accepts.
pub const API_KEY: &str = "phc_standin";

#[derive(Clone, Default)]
struct Shared {
    batches: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    malformed: Arc<Mutex<Vec<String>>>,
}

/// A running stand-in.
pub struct PostHogStandIn {
    /// Its base URL (`POSTHOG_HOST`).
    pub host: String,
    shared: Shared,
}

impl PostHogStandIn {
    /// Starts the stand-in on a free loopback port.
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new().route("/batch/", post(batch)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the PostHog stand-in");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { host: format!("http://{addr}"), shared }
    }

    /// Answers the next requests with these statuses (then 200 again).
    pub fn answer(&self, statuses: &[u16]) {
        self.shared.answers.lock().unwrap().extend(statuses);
    }

    /// Every batch taken (answered 2xx) so far.
    pub fn batches(&self) -> Vec<Value> {
        self.shared.batches.lock().unwrap().clone()
    }

    /// Every event taken so far, `$groupidentify` included.
    pub fn events(&self) -> Vec<Value> {
        self.batches().iter().flat_map(|b| b["batch"].as_array().cloned().unwrap_or_default()).collect()
    }

    /// Why requests that did not have PostHog's shape were refused.
    pub fn malformed(&self) -> Vec<String> {
        self.shared.malformed.lock().unwrap().clone()
    }
}

fn check(body: &Value) -> Result<(), String> {
    if body["api_key"] != API_KEY {
        return Err(format!("api_key is {}", body["api_key"]));
    }
    let events = body["batch"].as_array().ok_or("no batch list")?;
    if events.is_empty() {
        return Err("an empty batch".into());
    }
    for e in events {
        for field in ["event", "distinct_id"] {
            if !e[field].is_string() {
                return Err(format!("an event without {field}: {e}"));
            }
        }
        if !e["properties"].is_object() {
            return Err(format!("an event without properties: {e}"));
        }
        if e["event"] != "$groupidentify" && !(e["timestamp"].is_string() && e["uuid"].is_string()) {
            return Err(format!("an event without timestamp or uuid: {e}"));
        }
    }
    Ok(())
}

async fn batch(State(shared): State<Shared>, body: axum::body::Bytes) -> StatusCode {
    let queued = shared.answers.lock().unwrap().pop_front();
    if let Some(status) = queued.filter(|s| *s >= 300) {
        return StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    match parsed.map_err(|e| e.to_string()).and_then(|b| check(&b).map(|()| b)) {
        Ok(body) => {
            shared.batches.lock().unwrap().push(body);
            StatusCode::OK
        }
        Err(why) => {
            shared.malformed.lock().unwrap().push(why);
            StatusCode::BAD_REQUEST
        }
    }
}
