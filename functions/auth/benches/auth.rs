//! Auth costs: access-token verification (the shared extractor's crypto), an authenticated
//! request through the full router (token + live-session check + user read), a login (one
//! argon2id verification) and a refresh-token rotation, on the embedded store.
//! Run: `cargo bench -p auth --bench auth`.

use std::sync::Mutex;

use axum::body::Body;
use axum::http::{Request, header};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::auth::tokens;
use tower::ServiceExt;

async fn call(app: &axum::Router, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
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
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The user rate limit is raised above what a benchmark loop sends, so every request
    // takes the admitting path (one conditional write) instead of a 429.
    let limits = [("GROUNDWORK_USER_REQUESTS_PER_SECOND", "1000000"), ("GROUNDWORK_USER_REQUEST_BURST", "1000000")];
    let services = rt.block_on(testkit::services::services(dir.path(), &limits));
    let app = auth::app(services.clone());
    let password = "violet-anchor-trombone-47";
    let pair = rt.block_on(async {
        call(&app, "POST", "/auth/signup", None, Some(json!({"email": "ada@example.com", "password": password}))).await;
        // Confirm the address directly in the store, as the emailed link would.
        let user = shared::auth::users::by_email(
            services.store.as_ref(),
            &shared::mail::EmailAddress::parse("ada@example.com").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        let item = services.store.get(&shared::keys::user(user.id)).await.unwrap().unwrap();
        let mut verified = user.clone();
        verified.email_verified = true;
        shared::auth::users::save(services.store.as_ref(), &verified, item.version).await.unwrap();
        call(&app, "POST", "/auth/login", None, Some(json!({"email": "ada@example.com", "password": password}))).await
    });
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = Mutex::new(pair["refresh_token"].as_str().unwrap().to_owned());
    let t = &services.tokens;
    let keys = rt.block_on(t.signing_keys()).unwrap();
    let now = services.clock.now_secs();

    let mut g = c.benchmark_group("auth");
    g.bench_function("verify_access_token", |b| {
        b.iter(|| tokens::verify(keys, &access, &t.issuer, &t.audience, now).unwrap());
    });
    g.bench_function("authenticated_get_me", |b| {
        b.to_async(&rt)
            .iter(|| async { assert!(call(&app, "GET", "/me", Some(&access), None).await["id"].is_string()) });
    });
    g.bench_function("refresh_rotation", |b| {
        b.to_async(&rt).iter(|| async {
            let current = refresh.lock().unwrap().clone();
            let next = call(&app, "POST", "/auth/refresh", None, Some(json!({"refresh_token": current}))).await;
            *refresh.lock().unwrap() = next["refresh_token"].as_str().unwrap().to_owned();
        });
    });
    g.sample_size(10);
    g.bench_function("login_argon2id", |b| {
        b.to_async(&rt).iter(|| async {
            let r = call(
                &app,
                "POST",
                "/auth/login",
                None,
                Some(json!({"email": "ada@example.com", "password": password})),
            )
            .await;
            assert!(r["access_token"].is_string());
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
