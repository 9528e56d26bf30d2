//! Load harness: what the rate limits and idempotent `POST`s (`shared::http::guarded`) add
//! to an authenticated request through the tenancy router on the embedded store. Each
//! scenario runs without the guards (`finish(routes)`) and with them (`tenancy::app`, what
//! Lambda serves), alternating, back to back, at a fixed offered rate (open loop); the
//! report gives p50 and p99 of each, the p99 added and the ratio.
//!
//! - `user read`: `GET /accounts/{id}/members` with a user's access token (the user's rate:
//!   one read and one conditional write of its GCRA state);
//! - `api-key read`: the same with an API key (the plan read, the key's rate, the account's
//!   monthly counter);
//! - `create, no key`: `POST /accounts` without an `Idempotency-Key` (the user's rate);
//! - `user create`: `POST /accounts` with a fresh `Idempotency-Key` each time (the user's
//!   rate, the key's claim and its kept answer).
//!
//! Limits are raised above the offered rate so that every request is admitted: the
//! admitting path, which writes, is the one measured.
//! Run: `cargo bench -p tenancy --bench request_guards` (`RATE`, `SECONDS`, `ROUNDS`).

#![allow(clippy::cast_precision_loss)]

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use support::{Latencies, env_or, fixture, open_loop, send};

#[derive(Clone, Copy)]
enum Scenario {
    UserRead,
    ApiKeyRead,
    UserCreate,
    UserCreateNoKey,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::UserRead => "user read",
            Self::ApiKeyRead => "api-key read",
            Self::UserCreate => "user create",
            Self::UserCreateNoKey => "create, no key",
        }
    }
}

fn plans_file(dir: &std::path::Path) -> String {
    let high = "api_requests_per_second = 100000, api_burst = 100000, api_requests_per_month = 1000000000 }";
    testkit::services::plans_file_with(dir, testkit::services::FREE_API_LIMITS, high)
}

#[tokio::main]
async fn main() {
    let rate = env_or("RATE", 200);
    let seconds = env_or("SECONDS", 5);
    let rounds = env_or("ROUNDS", 2);
    let plans_dir = tempfile::tempdir().unwrap();
    let plans = plans_file(plans_dir.path());
    let f = fixture(&[
        ("GROUNDWORK_USER_REQUESTS_PER_SECOND", "100000"),
        ("GROUNDWORK_USER_REQUEST_BURST", "100000"),
        ("GROUNDWORK_PLANS_FILE", &plans),
    ])
    .await;
    let settings = f.services.config.http.clone();
    let without = shared::http::finish(tenancy::routes(f.services.clone()), &settings);
    let with = tenancy::app(f.services.clone());
    let members = format!("/accounts/{}/members", f.account);

    let run = |scenario: Scenario, app: Router, round: u64| {
        let (members, user, key) = (members.clone(), f.user_token.clone(), f.api_key.clone());
        let request = move |i: u64| {
            let req = match scenario {
                Scenario::UserRead | Scenario::ApiKeyRead => {
                    let token = if matches!(scenario, Scenario::UserRead) { &user } else { &key };
                    Request::get(members.clone()).header(header::AUTHORIZATION, format!("Bearer {token}"))
                }
                Scenario::UserCreate => Request::post("/accounts")
                    .header(header::AUTHORIZATION, format!("Bearer {user}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("idempotency-key", format!("bench-{round}-{i}")),
                Scenario::UserCreateNoKey => Request::post("/accounts")
                    .header(header::AUTHORIZATION, format!("Bearer {user}"))
                    .header(header::CONTENT_TYPE, "application/json"),
            };
            let (body, expected) = match scenario {
                Scenario::UserCreate | Scenario::UserCreateNoKey => {
                    (Body::from(r#"{"name":"Bench"}"#), StatusCode::CREATED)
                }
                _ => (Body::empty(), StatusCode::OK),
            };
            send(app.clone(), req.body(body).unwrap(), expected)
        };
        async move {
            // Warm up (caches, connections, the first write of each limiter item).
            for i in 0..100 {
                request(1_000_000 + i).await;
            }
            open_loop(rate, seconds, request).await.0
        }
    };

    println!(
        "request guards: {rate} requests/s offered for {seconds} s per run, {rounds} rounds of (without, with) \
         back to back, embedded store"
    );
    println!(
        "{:<14} {:>12} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "scenario", "p50 without", "p50 with", "p99 without", "p99 with", "p99 added", "ratio"
    );
    for scenario in [Scenario::UserRead, Scenario::ApiKeyRead, Scenario::UserCreateNoKey, Scenario::UserCreate] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            off.extend(run(scenario, without.clone(), round * 2).await.0);
            on.extend(run(scenario, with.clone(), round * 2 + 1).await.0);
        }
        off.sort();
        on.sort();
        let (off, on) = (Latencies(off), Latencies(on));
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
        let added = on.quantile(0.99).as_secs_f64() - off.quantile(0.99).as_secs_f64();
        println!(
            "{:<14} {:>12} {:>12} {:>12} {:>12} {:>12} {:>7.2}x",
            scenario.name(),
            ms(off.quantile(0.5)),
            ms(on.quantile(0.5)),
            ms(off.quantile(0.99)),
            ms(on.quantile(0.99)),
            format!("{:+.3} ms", added * 1000.0),
            on.quantile(0.99).as_secs_f64() / off.quantile(0.99).as_secs_f64(),
        );
    }
}
