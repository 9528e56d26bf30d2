//! Auth costs: access-token verification (the shared extractor's crypto, and the same token
//! again, as the process's verified-token cache answers it), the live-session check and the
//! user read on their own, an authenticated request through the full router (token +
//! per-user rate + live-session check + user read), a login (one argon2id verification) and a
//! refresh-token rotation, on the embedded store.
//! Run: `cargo bench -p auth --bench auth`.

mod support;

use std::sync::Mutex;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use shared::auth::{session, tokens, users};
use support::{PASSWORD, UNLIMITED_USER_RATE, signed_up};

async fn call(app: &axum::Router, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
    support::send(app, method, path, token, body).await.1
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let services = rt.block_on(testkit::services::services(dir.path(), &UNLIMITED_USER_RATE));
    let app = auth::app(services.clone());
    let password = PASSWORD;
    let pair = rt.block_on(async {
        signed_up(&app, &services, "ada@example.com").await;
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
    g.bench_function("verify_access_token_again", |b| {
        b.to_async(&rt).iter(|| async { t.verify(&access, now).await.unwrap() });
    });
    let claims = tokens::verify(keys, &access, &t.issuer, &t.audience, now).unwrap();
    let (user_id, session_id) = (claims.sub.parse().unwrap(), claims.sid.parse().unwrap());
    let store = services.store.as_ref();
    g.bench_function("live_session_check", |b| {
        b.to_async(&rt).iter(|| async { session::load(store, user_id, session_id).await.unwrap().unwrap() });
    });
    g.bench_function("user_read", |b| {
        b.to_async(&rt).iter(|| async { users::by_id(store, user_id).await.unwrap().unwrap() });
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
