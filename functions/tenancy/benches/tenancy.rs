//! Load harness: the membership check plus a tenant-scoped read (`GET
//! /accounts/{id}/members`, 20 members) through the full tenancy router on the embedded
//! store, offered at a fixed rate (open loop: latency counts from each request's scheduled
//! start, so a stall is not hidden). Prints p50/p90/p99/max.
//! Run: `cargo bench -p tenancy --bench tenancy` (`RATE` and `SECONDS` override).

#![allow(clippy::cast_precision_loss)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use support::{env_or, fixture, open_loop, send};

#[tokio::main]
async fn main() {
    let rate = env_or("RATE", 500);
    let seconds = env_or("SECONDS", 10);
    // The users' rate limit raised above the offered rate: this measures the route, not a
    // refusal (the limiter still runs on every request).
    let f = fixture(&[("GROUNDWORK_USER_REQUESTS_PER_SECOND", "100000"), ("GROUNDWORK_USER_REQUEST_BURST", "100000")])
        .await;
    let app = tenancy::app(f.services.clone());
    let path = format!("/accounts/{}/members", f.account);
    let request = |_| {
        let req = Request::builder()
            .uri(path.clone())
            .header(header::AUTHORIZATION, format!("Bearer {}", f.user_token))
            .body(Body::empty())
            .unwrap();
        send(app.clone(), req, StatusCode::OK)
    };
    // Warm up.
    for i in 0..200 {
        request(i).await;
    }
    let (latencies, elapsed) = open_loop(rate, seconds, request).await;
    let total = rate * seconds;
    println!(
        "tenancy/members_read: {total} requests offered at {rate}/s over {:.1} s (achieved {:.0}/s): \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        latencies.quantile(0.50),
        latencies.quantile(0.90),
        latencies.quantile(0.99),
        latencies.max(),
    );
}
