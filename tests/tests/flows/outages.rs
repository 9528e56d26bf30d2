//! A store outage during a request answers 503 with `Retry-After` (the client may retry),
//! never a 500: the store's error keeps its type through entitlements, flags and billing
//! state, up to the one place errors become statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::{Value, json};
use shared::services::Services;
use testkit::app::TestApp;
use testkit::faults::FaultyStore;
use tower::ServiceExt as _;

/// The stack's services with the store failing what `rule` selects.
fn with_outage(app: &TestApp, rule: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Services {
    let base = app.stack.services.clone();
    Services { store: Arc::new(FaultyStore::new(Arc::clone(&base.store), rule)), ..base }
}

async fn call(services: &Services, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value, bool) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let res = local::router(services).unwrap().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().contains_key(header::RETRY_AFTER);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), retry_after)
}

fn assert_unavailable((status, body, retry_after): (u16, Value, bool), what: &str) {
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(body["code"], "unavailable", "{what}: {body}");
    assert!(retry_after, "{what}: a 503 says when to retry");
    assert!(!body.to_string().contains("injected"), "{what}: nothing internal in the body");
}

#[tokio::test]
async fn an_outage_of_the_data_a_route_needs_is_a_503_with_retry_after() {
    let app = TestApp::spawn(&[]).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (status, account) = app.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    assert_eq!(status, 201, "{account}");
    let acme = account["id"].as_str().unwrap().to_owned();

    // The billing state is unreadable: the billing route and the seat check of an invitation.
    let billing_down = with_outage(&app, |_, sk| sk == "BILLING");
    let answer = call(&billing_down, "GET", &format!("/accounts/{acme}/billing"), &ada, None).await;
    assert_unavailable(answer, "billing");
    let invite = json!({"email": "grace@example.com", "role": "member"});
    let answer = call(&billing_down, "POST", &format!("/accounts/{acme}/invitations"), &ada, Some(invite)).await;
    assert_unavailable(answer, "invitations");

    // The flag definitions are unreadable.
    let flags_down = with_outage(&app, |pk, _| pk == shared::keys::FLAGS_PARTITION);
    let answer = call(&flags_down, "GET", &format!("/accounts/{acme}/flags"), &ada, None).await;
    assert_unavailable(answer, "flags");

    // The same routes answer normally once the store is back.
    let healthy = app.stack.services.clone();
    assert_eq!(call(&healthy, "GET", &format!("/accounts/{acme}/billing"), &ada, None).await.0, 200);
    assert_eq!(call(&healthy, "GET", &format!("/accounts/{acme}/flags"), &ada, None).await.0, 200);
    app.stack.stop().await;
}
