//! A Lambda Runtime API stub on loopback: enough of the protocol (next invocation,
//! response, invocation error, init error) to run a function's real bootstrap binary,
//! feed it events and read its answers, as the Lambda service would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler's response.
    Response(Value),
    /// The handler's error report.
    Error(Value),
}

type Pending = (String, Value);

#[derive(Clone)]
struct Shared {
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    polled: Arc<Notify>,
    init_error: Arc<Mutex<Option<Value>>>,
    /// The invoked function's ARN and its timeout in milliseconds (the deadline header).
    function: Arc<Mutex<(String, u64)>>,
}

/// A running stub.
pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    sender: mpsc::UnboundedSender<Pending>,
    shared: Shared,
}

impl RuntimeApi {
    /// Starts the stub on a free loopback port.
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Shared {
            events: Arc::new(tokio::sync::Mutex::new(receiver)),
            waiting: Arc::default(),
            polled: Arc::new(Notify::new()),
            init_error: Arc::default(),
            function: Arc::new(Mutex::new((
                "arn:aws:lambda:us-east-1:123456789012:function:groundwork-test".to_owned(),
                30_000,
            ))),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind runtime API stub");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { address: addr.to_string(), sender, shared }
    }

    /// Waits until the function asks for its first event (its init is over).
    ///
    /// # Panics
    /// If it does not within `timeout`, or reports an init error.
    pub async fn wait_for_init(&self, timeout: Duration) {
        let polled = self.shared.polled.notified();
        if tokio::time::timeout(timeout, polled).await.is_err() {
            let init = self.shared.init_error.lock().unwrap().clone();
            panic!("the function did not ask for an event within {timeout:?} (init error: {init:?})");
        }
    }

    /// Invokes the function with `event` and waits for its answer.
    ///
    /// # Panics
    /// If no answer comes within 30 seconds.
    pub async fn invoke(&self, event: Value) -> Outcome {
        self.try_invoke(event, Duration::from_secs(30)).await.unwrap_or_else(|| {
            panic!("the function did not answer within 30 s (init error: {:?})", self.shared.init_error.lock().unwrap())
        })
    }

    /// Starts the bootstrap binary at `binary` as Lambda would, pointed at this stub, with
    /// `env` on top of Lambda's own variables, and waits for its init to finish.
    ///
    /// # Panics
    /// If the binary does not start or does not ask for an event within 20 seconds.
    pub async fn spawn(&self, binary: &str, function: &str, env: &[(String, String)]) -> tokio::process::Child {
        let child = tokio::process::Command::new(binary)
            .env_clear()
            .envs(lambda_env(self, function))
            .envs(env.iter().cloned())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        self.wait_for_init(Duration::from_secs(20)).await;
        child
    }

    /// Sets the ARN and timeout (milliseconds) the next invocations carry.
    pub fn set_function(&self, arn: &str, timeout_ms: u64) {
        *self.shared.function.lock().unwrap() = (arn.to_owned(), timeout_ms);
    }

    /// Resolves when the function next asks for an event. Create it (and `enable` it)
    /// before starting the process, so an early first poll is not missed.
    pub fn next_poll(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.polled.notified()
    }

    /// Invokes the function with `event`; `None` when it has not answered within `timeout`
    /// (the invocation is then abandoned, as Lambda abandons a timed-out one).
    ///
    /// # Panics
    /// If the stub stopped.
    pub async fn try_invoke(&self, event: Value, timeout: Duration) -> Option<Outcome> {
        let id = ulid::Ulid::new().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().unwrap().insert(id.clone(), tx);
        self.sender.send((id.clone(), event)).expect("stub is running");
        let answer = tokio::time::timeout(timeout, rx).await;
        self.shared.waiting.lock().unwrap().remove(&id);
        answer.ok().and_then(Result::ok)
    }

    /// The init error the function reported, if any.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.lock().unwrap().clone()
    }
}

async fn next(State(s): State<Shared>) -> impl IntoResponse {
    s.polled.notify_waiters();
    let Some((id, event)) = s.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), Bytes::new());
    };
    let mut headers = HeaderMap::new();
    let (arn, timeout_ms) = s.function.lock().unwrap().clone();
    let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
        + u128::from(timeout_ms);
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).expect("header value"));
    };
    set(&mut headers, "lambda-runtime-aws-request-id", id);
    set(&mut headers, "lambda-runtime-deadline-ms", deadline.to_string());
    set(&mut headers, "lambda-runtime-invoked-function-arn", arn);
    set(&mut headers, "lambda-runtime-trace-id", "Root=1-65a1b2c3-1234567890abcdef12345678;Sampled=0".into());
    set(&mut headers, "content-type", "application/json".into());
    (StatusCode::OK, headers, Bytes::from(serde_json::to_vec(&event).unwrap_or_default()))
}

fn parse(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(s): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    if let Some(tx) = s.waiting.lock().unwrap().remove(&id) {
        let _ = tx.send(Outcome::Response(parse(&body)));
    }
    StatusCode::ACCEPTED
}

async fn error(State(s): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    if let Some(tx) = s.waiting.lock().unwrap().remove(&id) {
        let _ = tx.send(Outcome::Error(parse(&body)));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Shared>, body: Bytes) -> StatusCode {
    *s.init_error.lock().unwrap() = Some(parse(&body));
    StatusCode::ACCEPTED
}

/// A signing key for functions under test (generated once per test process), in
/// `GROUNDWORK_JWT_KEYS`' format.
pub fn test_jwt_keys() -> &'static str {
    static KEYS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use base64::Engine as _;
        let der = shared::auth::keys::generate_pkcs8().expect("a test signing key");
        base64::engine::general_purpose::STANDARD.encode(der)
    })
}

/// One call to [`InvokeApi`]: the function name, the `Qualifier`, the payload.
pub type InvokeCall = (String, Option<String>, Value);

/// Lambda's Invoke API (`POST /2015-03-31/functions/{name}/invocations`, what
/// `boto3.client("lambda").invoke` calls) in front of a [`RuntimeApi`], on a free loopback
/// port: scripted answers first, in order, then the function's own. Every call is recorded.
pub struct InvokeApi {
    /// The endpoint (`AWS_ENDPOINT_URL_LAMBDA`).
    pub url: String,
    /// The calls so far.
    pub calls: Arc<Mutex<Vec<InvokeCall>>>,
}

#[derive(Clone)]
struct InvokeState {
    runtime: Arc<RuntimeApi>,
    scripted: Arc<Mutex<std::collections::VecDeque<Outcome>>>,
    calls: Arc<Mutex<Vec<InvokeCall>>>,
}

impl InvokeApi {
    /// Starts the front for `runtime`, answering `scripted` before the function answers.
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start(runtime: Arc<RuntimeApi>, scripted: Vec<Outcome>) -> Self {
        let state = InvokeState { runtime, scripted: Arc::new(Mutex::new(scripted.into())), calls: Arc::default() };
        let calls = Arc::clone(&state.calls);
        let app = Router::new().route("/2015-03-31/functions/{name}/invocations", post(invoke)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind invoke API");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}"), calls }
    }
}

async fn invoke(
    State(state): State<InvokeState>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    body: Bytes,
) -> axum::response::Response {
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.calls.lock().unwrap().push((name, query.get("Qualifier").cloned(), payload.clone()));
    let scripted = state.scripted.lock().unwrap().pop_front();
    let outcome = match scripted {
        Some(o) => o,
        None => state.runtime.invoke(payload).await,
    };
    match outcome {
        Outcome::Response(v) => axum::Json(v).into_response(),
        Outcome::Error(v) => {
            let mut r = axum::Json(v).into_response();
            r.headers_mut().insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
            r
        }
    }
}

/// The environment Lambda gives a function, pointing at `api`, plus the signing keys the
/// template provides.
pub fn lambda_env(api: &RuntimeApi, function: &str) -> Vec<(String, String)> {
    [
        ("GROUNDWORK_JWT_KEYS", test_jwt_keys()),
        ("GROUNDWORK_API_URL", "https://api.acme.test"),
        ("AWS_LAMBDA_RUNTIME_API", api.address.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "test"),
        ("AWS_REGION", "us-east-1"),
        ("GROUNDWORK_METRICS", "off"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
