//! Idempotent `POST`s (`shared::http::idempotency`) through the conventions, on the embedded
//! store, called with a real API key: a retry gets the first answer, another request with
//! the key is refused, concurrent ones never both run, failures are not kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use shared::config::Config;
use shared::id::{AccountId, UserId};
use shared::services::Services;
use shared::tenancy::Role;
use tower::ServiceExt as _;

struct Fixture {
    app: Router,
    key: String,
    runs: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("GROUNDWORK_DATA_DIR".to_owned(), dir.path().to_string_lossy().into_owned())];
    let services = Services::from_config(Config::from_vars(vars).unwrap()).await.unwrap();
    let now = services.clock.now_ms();
    let (_, key) = shared::tenancy::api_keys::create(
        services.store.as_ref(),
        AccountId::new(),
        "ci".into(),
        Role::Admin,
        UserId::new(),
        now,
    )
    .await
    .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let routes = Router::new()
        .route(
            "/things",
            post(move |body: String| {
                let runs = Arc::clone(&counted);
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    if body.contains("slow") {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    let headers = [(header::LOCATION, format!("/things/{n}"))];
                    (StatusCode::CREATED, headers, axum::Json(json!({"thing": n})))
                }
            }),
        )
        .route("/flaky", post(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/refused", post(|| async { (StatusCode::PAYMENT_REQUIRED, axum::Json(json!({"code": "plan_limit"}))) }))
        .route(
            "/broken",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"code": "unexpected"}))) }),
        )
        .route(
            "/portal",
            post(|| async { ([(header::CACHE_CONTROL, "no-store")], axum::Json(json!({"url": "https://portal"}))) }),
        )
        .route("/auth/login", post(|| async { axum::Json(json!({"access_token": "secret"})) }));
    let settings = services.config.http.clone();
    let app = shared::http::finish(
        shared::http::guarded(routes, services, shared::http::rate_limits::LimitedRoutes::default()),
        &settings,
    );
    Fixture { app, key, runs, _dir: dir }
}

async fn send(f: &Fixture, path: &str, key: Option<&str>, body: Value) -> (StatusCode, axum::http::HeaderMap, Value) {
    send_raw(f, path, key, body.to_string()).await
}

async fn send_raw(
    f: &Fixture,
    path: &str,
    key: Option<&str>,
    body: String,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::post(path).header("authorization", format!("Bearer {}", f.key));
    req = req.header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let res = f.app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_runs_nothing() {
    let f = fixture().await;
    let (status, headers, first) = send(&f, "/things", Some("order-42"), json!({"a": 1})).await;
    assert_eq!((status, first["thing"].as_u64()), (StatusCode::CREATED, Some(1)));
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = send(&f, "/things", Some("order-42"), json!({"a": 1})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again, first, "the same answer");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(headers[header::LOCATION], "/things/1");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(f.runs.load(Ordering::SeqCst), 1, "the handler ran once");

    // Another key, or none, runs again.
    assert_eq!(send(&f, "/things", Some("order-43"), json!({"a": 1})).await.2["thing"], 2);
    assert_eq!(send(&f, "/things", None, json!({"a": 1})).await.2["thing"], 3);
}

#[tokio::test]
async fn the_same_key_for_another_request_is_refused() {
    let f = fixture().await;
    assert_eq!(send(&f, "/things", Some("k1"), json!({"a": 1})).await.0, StatusCode::CREATED);
    let (status, _, problem) = send(&f, "/things", Some("k1"), json!({"a": 2})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")));
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_retry_serialized_again_is_the_same_request() {
    let f = fixture().await;
    let first = send_raw(&f, "/things", Some("k1"), r#"{ "a": 1, "b": [1, 2] }"#.into()).await;
    assert_eq!(first.0, StatusCode::CREATED);
    // Other spacing and another key order: the same JSON, so the same request.
    let again = send_raw(&f, "/things", Some("k1"), r#"{"b":[1,2],"a":1}"#.into()).await;
    assert_eq!((again.0, &again.2), (StatusCode::CREATED, &first.2));
    assert_eq!(again.1["idempotent-replayed"], "true");
    let other = send_raw(&f, "/things", Some("k1"), r#"{"b":[2,1],"a":1}"#.into()).await;
    assert_eq!(other.0, StatusCode::UNPROCESSABLE_ENTITY, "another value is another request");
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn two_concurrent_requests_with_one_key_never_both_run() {
    let f = fixture().await;
    let body = json!({"slow": true});
    let (a, b) = tokio::join!(send(&f, "/things", Some("race"), body.clone()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&f, "/things", Some("race"), body.clone()).await
    });
    assert_eq!(a.0, StatusCode::CREATED);
    assert_eq!((b.0, b.2["code"].as_str()), (StatusCode::CONFLICT, Some("idempotency_key_in_use")), "{:?}", b.2);
    assert_eq!(b.1[header::RETRY_AFTER], "1");
    assert_eq!(f.runs.load(Ordering::SeqCst), 1, "only the first ran");
    // Once it finished, the retry gets its answer.
    let (status, headers, _) = send(&f, "/things", Some("race"), body).await;
    assert_eq!((status, &headers["idempotent-replayed"]), (StatusCode::CREATED, &"true".parse().unwrap()));
}

#[tokio::test]
async fn failures_are_not_kept_and_secret_answers_never_are() {
    let f = fixture().await;
    for _ in 0..2 {
        let (status, headers, _) = send(&f, "/flaky", Some("k"), json!({})).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(headers.get("idempotent-replayed").is_none(), "a 503 is not replayed: the retry runs");
    }
    for _ in 0..2 {
        let (status, headers, _) = send(&f, "/auth/login", Some("k"), json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get("idempotent-replayed").is_none(), "tokens are never kept");
    }
    // A refusal (402: upgrade, then retry) runs again; so does an answer marked no-store.
    for path in ["/refused", "/portal"] {
        for _ in 0..2 {
            let (_, headers, _) = send(&f, path, Some("k2"), json!({})).await;
            assert!(headers.get("idempotent-replayed").is_none(), "{path} is not kept");
        }
    }
    // A 500 (the outcome is unknown) is kept, as Stripe does.
    send(&f, "/broken", Some("k3"), json!({})).await;
    let (status, headers, _) = send(&f, "/broken", Some("k3"), json!({})).await;
    assert_eq!((status, headers.get("idempotent-replayed").is_some()), (StatusCode::INTERNAL_SERVER_ERROR, true));
}

#[tokio::test]
async fn malformed_keys_are_refused() {
    let f = fixture().await;
    for key in ["", &"k".repeat(256)] {
        let (status, _, problem) = send(&f, "/things", Some(key), json!({})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_idempotency_key")));
    }
    assert_eq!(send(&f, "/things", Some(&"k".repeat(255)), json!({})).await.0, StatusCode::CREATED);
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
}
