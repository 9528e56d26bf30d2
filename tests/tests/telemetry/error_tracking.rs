//! Error tracking through the local stack's routes, against the Sentry stand-in: a 500
//! reaches Sentry once, named by its request, release, environment, function, user and
//! tenant ids, and with nothing personal (no address, no token, no header, no body); a panic
//! is reported once, by itself.

use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use shared::id::{AccountId, UserId};
use shared::store::{Item, Put};
use testkit::app::TestApp;
use tower::ServiceExt as _;

#[tokio::test]
async fn a_server_error_reaches_sentry_with_ids_and_nothing_personal() {
    let (_, sentry) = crate::process_telemetry();
    let app = TestApp::spawn(&[]).await;
    let (token, user_id) = app.user("grace@example.com").await;
    let (status, account) = app.call("POST", "/accounts", Some(&token), Some(json!({"name": "Acme"}))).await;
    assert_eq!(status, 201, "{account}");
    let account_id: AccountId = account["id"].as_str().unwrap().parse().unwrap();
    // A member record that does not decode, its bad value an address: listing the members
    // fails with a 500 whose error chain quotes it.
    let other = UserId::new();
    let corrupt = Item::new(shared::keys::membership(account_id, other))
        .with("account_id", account_id.to_string())
        .with("user_id", other.to_string())
        .with("role", "grace@example.com")
        .with("joined_at_ms", 1);
    app.stack.services.store.put(Put::new(corrupt)).await.unwrap();

    let res = app
        .client
        .get(format!("{}/accounts/{account_id}/members?email=grace@example.com", app.base))
        .bearer_auth(&token)
        .header("cookie", "gw_refresh=grace-cookie-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();

    let event = sentry.wait_for("for the 500", |e| e["tags"]["request_id"] == request_id.as_str()).await;
    // Sentry leaves out the default level, error.
    assert!(event.get("level").is_none_or(|l| l == "error"), "{event:#}");
    assert_eq!(event["message"], "500 on GET /accounts/{account_id}/members", "{event:#}");
    assert_eq!(event["release"], shared::RELEASE);
    assert_eq!(event["environment"], "test");
    assert_eq!(event["tags"]["function"], "local");
    assert_eq!(event["tags"]["route"], "/accounts/{account_id}/members");
    assert_eq!(event["tags"]["account_id"], account_id.to_string());
    assert_eq!(event["user"], json!({"id": user_id}), "the user is an id and nothing else");
    assert!(event.get("request").is_none(), "no request details: {event:#}");
    // The cause travels as the trail, scrubbed.
    let trail = event["breadcrumbs"]["values"].to_string();
    assert!(trail.contains("unexpected error") && trail.contains("[email]"), "{trail}");
    assert_eq!(sentry.tagged("request_id", &request_id).len(), 1, "one event per failed request");

    let sent = sentry.raw().join("\n");
    for personal in ["grace@example.com", token.as_str(), "grace-cookie-secret"] {
        assert!(!sent.contains(personal), "{personal} reached Sentry");
    }
    app.stack.stop().await;
}

#[tokio::test]
async fn a_panic_is_reported_once_with_its_request() {
    let (_, sentry) = crate::process_telemetry();
    let settings = shared::config::Config::from_vars(std::iter::empty()).unwrap().http;
    async fn boom() -> &'static str {
        panic!("boom while mailing ada@example.com")
    }
    let routes = axum::Router::new().route("/boom", axum::routing::get(boom));
    let app = shared::http::finish(routes, &settings);
    let res = app.oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 500);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let event = sentry
        .wait_for("for the panic", |e| e["tags"]["request_id"] == request_id.as_str() && e["exception"].is_object())
        .await;
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "panic", "{event:#}");
    assert_eq!(exception["value"], "boom while mailing [email]");
    assert_eq!(event["tags"]["route"], "/boom");
    // Give a second report the time it would take, then count.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sentry.tagged("request_id", &request_id).len(), 1, "the 500 of a panic is not reported again");
}
