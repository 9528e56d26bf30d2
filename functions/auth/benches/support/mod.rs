//! What the auth benchmarks share: a request through the router, and a signed-up user whose
//! address is confirmed.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::services::Services;
use tower::ServiceExt;

/// The password of [`signed_up`]'s user.
pub const PASSWORD: &str = "violet-anchor-trombone-47";

/// Settings that raise the per-user rate limit above what a benchmark loop sends, so every
/// request takes the limiter's admitting path (one conditional write) instead of a 429.
pub const UNLIMITED_USER_RATE: [(&str, &str); 2] =
    [("GROUNDWORK_USER_REQUESTS_PER_SECOND", "1000000"), ("GROUNDWORK_USER_REQUEST_BURST", "1000000")];

/// Sends one request; returns the status and the JSON body (`Null` if none).
pub async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Signs `email` up with [`PASSWORD`] and confirms the address directly in the store, as
/// the emailed link would.
pub async fn signed_up(app: &axum::Router, services: &Services, email: &str) {
    send(app, "POST", "/auth/signup", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    let store = services.store.as_ref();
    let address = shared::mail::EmailAddress::parse(email).unwrap();
    let mut user = shared::auth::users::by_email(store, &address).await.unwrap().unwrap();
    let item = store.get(&shared::keys::user(user.id)).await.unwrap().unwrap();
    user.email_verified = true;
    shared::auth::users::save(store, &user, item.version).await.unwrap();
}
