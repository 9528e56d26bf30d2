//! The operator routes: dead letters listed with their job state and redriven, behind the
//! operator token.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::config::QueueName;
use shared::jobs::{Envelope, Job, JobId};
use shared::mail::EmailAddress;
use shared::mail::templates::Email;
use shared::services::Services;
use tower::ServiceExt;

async fn services(dir: &std::path::Path, token: Option<&str>) -> Services {
    let vars: Vec<(&str, &str)> = token.map(|t| ("GROUNDWORK_OPERATOR_TOKEN", t)).into_iter().collect();
    testkit::services::services(dir, &vars).await
}

async fn call(services: &Services, req: Request<Body>) -> (StatusCode, Value) {
    let res = platform::app(services.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn get(token: Option<&str>) -> Request<Body> {
    let mut b = Request::get("/ops/dead-letters");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven_by_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Some("op-token-123")).await;
    let id = JobId::new();
    let envelope = Envelope {
        id,
        idempotency_key: id.to_string(),
        enqueued_at_ms: 0,
        job: Job::SendEmail { to: EmailAddress::parse("a@example.com").unwrap(), email: Email::Welcome { name: None } },
    };
    let queue = services.queues.get(QueueName::Email);
    queue.send_to_dead_letters(&serde_json::to_string(&envelope).unwrap(), None).await.unwrap();

    assert_eq!(call(&services, get(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&services, get(Some("wrong"))).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&services, get(Some("op-token-123"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dead_letters"][0]["job_id"], id.to_string());
    assert_eq!(body["dead_letters"][0]["kind"], "send_email");
    assert_eq!(body["dead_letters"][0]["queue"], "email");
    assert!(!body.to_string().contains("a@example.com"), "bodies are not shown");

    let redrive = Request::post("/ops/dead-letters/redrive")
        .header(header::AUTHORIZATION, "Bearer op-token-123")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"queue": "email"}).to_string()))
        .unwrap();
    let (status, body) = call(&services, redrive).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"redriven": {"email": 1}}));
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(queue.receive(10, std::time::Duration::from_secs(1)).await.unwrap().len(), 1);

    let bad = Request::post("/ops/dead-letters/redrive")
        .header(header::AUTHORIZATION, "Bearer op-token-123")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"queue": "nope"}).to_string()))
        .unwrap();
    let (status, body) = call(&services, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "unknown_queue");
}

#[tokio::test]
async fn without_an_operator_token_the_routes_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), None).await;
    let (status, body) = call(&services, get(Some("anything"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "operator_access_disabled");
    // Without credentials it is 401, on or off.
    assert_eq!(call(&services, get(None)).await.0, StatusCode::UNAUTHORIZED);
}
