//! The HTTP conventions every router gets from `shared::http::finish`: every error is a
//! problem+json body with the right status and a stable code, never a panic or a bare 500.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::error::ApiError;
use shared::http::{HttpSettings, Json, Path, Query};
use shared::store::StoreError;
use tower::ServiceExt;

#[derive(Deserialize)]
struct Signup {
    #[allow(dead_code)]
    email: String,
    #[allow(dead_code)]
    age: u32,
}

#[derive(Deserialize)]
struct Paging {
    #[allow(dead_code)]
    limit: u32,
}

fn app() -> Router {
    let routes = Router::new()
        .route("/things", post(|Json(_): Json<Signup>| async { Json(json!({"ok": true})) }))
        .route("/things/{id}", get(|Path(id): Path<u64>| async move { Json(json!({ "id": id })) }))
        .route("/list", get(|Query(_): Query<Paging>| async { "[]" }))
        .route(
            "/down",
            get(|| async { Err::<(), ApiError>(StoreError::Unavailable(anyhow::anyhow!("table gone")).into()) }),
        )
        .route("/bug", get(|| async { Err::<(), ApiError>(anyhow::anyhow!("secret internals").into()) }))
        .route("/panics", get(panics));
    shared::http::finish(routes, &HttpSettings { max_body_bytes: 1024, ..HttpSettings::default() })
}

async fn panics() -> StatusCode {
    panic!("secret internals of a panic")
}

async fn call(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let res = app().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, v)
}

fn post_json(body: impl Into<Body>, content_type: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/things");
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

async fn assert_problem(req: Request<Body>, status: StatusCode, code: &str) -> Value {
    let (s, headers, body) = call(req).await;
    assert_eq!(s, status, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], format!("urn:groundwork:problem:{code}"));
    assert!(body["title"].is_string());
    assert!(body["request_id"].is_string(), "{body}");
    assert_eq!(headers["x-request-id"].to_str().unwrap(), body["request_id"].as_str().unwrap());
    body
}

#[tokio::test]
async fn a_valid_request_passes() {
    let (s, _, body) = call(post_json(r#"{"email":"a@b.c","age":3}"#, Some("application/json"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, json!({"ok": true}));
}

#[tokio::test]
async fn malformed_json_is_400() {
    assert_problem(post_json("{not json", Some("application/json")), StatusCode::BAD_REQUEST, "malformed_json").await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let req = post_json(r#"{"email":"a@b.c","age":3}"#, Some("text/plain"));
    assert_problem(req, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let req = post_json(r#"{"email":"a@b.c","age":3}"#, None);
    assert_problem(req, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_422_without_echoing_values() {
    let req = post_json(r#"{"email":"a@b.c","age":"hunter2-secret"}"#, Some("application/json"));
    let body = assert_problem(req, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("age"), "{detail}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let big = format!(r#"{{"email":"{}","age":1}}"#, "a".repeat(4096));
    // Refused on its declared length, before the body is read...
    let mut declared = post_json(big.clone(), Some("application/json"));
    declared.headers_mut().insert(header::CONTENT_LENGTH, big.len().into());
    assert_problem(declared, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // ...and, without a Content-Length, while reading it.
    assert_problem(post_json(big, Some("application/json")), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let body =
        assert_problem(Request::get("/nope").body(Body::empty()).unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(body["instance"], "/nope");
    let req = Request::delete("/things").body(Body::empty()).unwrap();
    let (s, headers, _) = call(req).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    let req = Request::delete("/things").body(Body::empty()).unwrap();
    assert_problem(req, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn bad_path_and_query_parameters_are_400() {
    assert_problem(Request::get("/things/abc").body(Body::empty()).unwrap(), StatusCode::BAD_REQUEST, "invalid_path")
        .await;
    assert_problem(
        Request::get("/list?limit=many").body(Body::empty()).unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn a_store_outage_is_503_with_a_retry_hint() {
    let (s, headers, body) = call(Request::get("/down").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "2");
    assert_eq!(body["code"], "unavailable");
    assert!(!body.to_string().contains("table gone"));
}

#[tokio::test]
async fn an_unexpected_error_is_500_and_says_nothing_inside() {
    let body = assert_problem(
        Request::get("/bug").body(Body::empty()).unwrap(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
    )
    .await;
    assert!(!body.to_string().contains("secret"));
}

#[tokio::test]
async fn a_handler_that_panics_gets_a_500_problem_not_a_closed_connection() {
    let body = assert_problem(
        Request::get("/panics").body(Body::empty()).unwrap(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
    )
    .await;
    assert!(!body.to_string().contains("secret"), "{body}");
    assert_eq!(body["instance"], "/panics");
}

#[tokio::test]
async fn a_client_request_id_is_kept_and_a_bad_one_replaced() {
    let req = Request::get("/nope").header("x-request-id", "client-abc-123").body(Body::empty()).unwrap();
    let (_, headers, body) = call(req).await;
    assert_eq!(headers["x-request-id"], "client-abc-123");
    assert_eq!(body["request_id"], "client-abc-123");
    let req = Request::get("/nope").header("x-request-id", "has spaces").body(Body::empty()).unwrap();
    let (_, headers, _) = call(req).await;
    assert_ne!(headers["x-request-id"], "has spaces");
}

/// The client address a handler sees, for a request from `peer` with `forwarded_for`.
async fn client_address(trusted_proxies: usize, forwarded_for: Option<&str>) -> Value {
    let routes = Router::new()
        .route("/ip", get(|ctx: shared::http::RequestContext| async move { Json(json!({ "ip": ctx.ip })) }));
    let app = shared::http::finish(routes, &HttpSettings { trusted_proxies, ..HttpSettings::default() });
    // What the local server's `into_make_service_with_connect_info` puts on every request.
    let peer = axum::extract::ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 7], 50_000)));
    let mut req = Request::get("/ip").extension(peer);
    if let Some(v) = forwarded_for {
        req = req.header("x-forwarded-for", v);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&bytes).unwrap()["ip"].clone()
}

#[tokio::test]
async fn the_client_address_follows_the_trusted_proxy_rule() {
    // No trusted proxy: the header is whatever the client wrote, so the peer is the client.
    assert_eq!(client_address(0, Some("203.0.113.9")).await, "192.0.2.7");
    assert_eq!(client_address(0, None).await, "192.0.2.7");
    // One proxy (the peer) appended what it saw: the last entry; what the client wrote before
    // it is ignored.
    assert_eq!(client_address(1, Some("6.6.6.6, 203.0.113.9")).await, "203.0.113.9");
    // Two proxies: the second entry from the right.
    assert_eq!(client_address(2, Some("6.6.6.6, 203.0.113.9, 10.0.0.2")).await, "203.0.113.9");
    // Fewer hops than proxies: the furthest one known.
    assert_eq!(client_address(3, Some("203.0.113.9")).await, "203.0.113.9");
}

fn cors_app() -> Router {
    let routes = Router::new().route("/things", post(|| async { Json(json!({"ok": true})) }));
    let settings = HttpSettings { cors_origins: vec!["http://localhost:5173".into()], ..HttpSettings::default() };
    shared::http::finish(routes, &settings)
}

async fn cors_call(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap) {
    let res = cors_app().oneshot(req).await.unwrap();
    (res.status(), res.headers().clone())
}

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/things")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type,idempotency-key")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_allowed_origin_gets_a_204_preflight_and_credentialed_answers() {
    let (status, h) = cors_call(preflight("http://localhost:5173")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:5173");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap().to_owned();
    assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].iter().all(|m| methods.contains(m)), "{methods}");
    let headers = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_owned();
    for name in ["authorization", "content-type", "idempotency-key", "x-request-id"] {
        assert!(headers.contains(name), "{headers}");
    }
    assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");

    let req = Request::post("/things").header(header::ORIGIN, "http://localhost:5173").body(Body::empty()).unwrap();
    let (status, h) = cors_call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:5173");
    let exposed = h[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().to_owned();
    for name in ["x-request-id", "retry-after", "location"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert!(
        h.get_all(header::VARY).iter().any(|v| v.to_str().unwrap().contains("origin")),
        "caches keep origins apart"
    );
}

#[tokio::test]
async fn another_origin_gets_no_cors_headers_and_the_answer_is_otherwise_unchanged() {
    let (_, h) = cors_call(preflight("https://evil.example")).await;
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    let req = Request::post("/things").header(header::ORIGIN, "https://evil.example").body(Body::empty()).unwrap();
    let (status, h) = cors_call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // Without configured origins, no CORS at all: a preflight is an unknown method.
    let (status, _, body) = call(preflight("http://localhost:5173")).await;
    assert_eq!((status, body["status"].clone()), (StatusCode::METHOD_NOT_ALLOWED, json!(405)));
}
