//! Load harness for the customer-success layer, on the embedded store:
//!
//! 1. **What recording a product event adds to a request.** Groundwork's flows record their
//!    lifecycle events as one more item in the transaction the request writes anyway
//!    (`shared::product_events::lifecycle`). Two routes through one axum router do the same
//!    write, a tenant item, one without and one with the event (`account.created` with two
//!    properties, as `POST /accounts` records it), for two kinds of write: a plain item, and
//!    one in a gsi1 index with an expiry as most of Groundwork's are (the event's row adds
//!    the B-tree pages the request's own write did not touch), one request at a time, interleaved (so
//!    the machine's drift falls on both alike); the report gives p50 and p99 of each and
//!    what the event adds. Goal: at most 50 µs at p99.
//! 2. **The daily rollup's throughput.** `ACCOUNTS` accounts (default 10,000), each with an
//!    owner and a few product events spread over the last 30 days, then
//!    `account_health::rollup` over all of them, timed; reported as accounts per minute.
//!    Goal: at least 10,000 a minute.
//!
//! Run: `cargo bench -p tenancy --bench customer_success` (`REQUESTS`, `ACCOUNTS`).

#![allow(clippy::cast_precision_loss)]

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use serde_json::json;
use shared::id::{AccountId, UserId};
use shared::product_events::ProductEvent;
use shared::services::Services;
use shared::store::{Item, Put, TxOp};
use shared::tenancy::{Account, Membership, Role};
use support::{Latencies, env_or, fixture, send};

const DAY_MS: i64 = 86_400_000;

/// The write a request makes anyway: one new item under the account's partition; `indexed`,
/// listed in a gsi1 index and expiring (as a membership, an invitation, a session is).
fn write(account: AccountId, indexed: bool) -> TxOp {
    let id = shared::jobs::JobId::new().to_string();
    let mut item = Item::new(shared::keys::tenant_item(account, "BENCH", &id)).with("name", "Bench").with("n", 1);
    if indexed {
        item = item.with_gsi1(shared::store::Key::new(format!("BENCH#{account}"), id)).expiring_at(4_000_000_000);
    }
    TxOp::Put(Put::new(item).if_not_exists())
}

type Bench = State<(Services, AccountId, bool)>;

async fn without_event(State((s, account, indexed)): Bench) -> StatusCode {
    s.store.transact(vec![write(account, indexed)]).await.unwrap();
    StatusCode::CREATED
}

async fn with_event(State((s, account, indexed)): Bench) -> StatusCode {
    let event = shared::product_events::lifecycle(
        "account.created",
        account,
        Some(UserId::new()),
        s.clock.now_ms(),
        &[("plan", json!("free")), ("via", json!("bench"))],
        None,
    )
    .unwrap();
    s.store.transact(vec![write(account, indexed), event]).await.unwrap();
    StatusCode::CREATED
}

async fn event_overhead(requests: u64, indexed: bool) {
    let f = fixture(&[]).await;
    let app = Router::new().route("/without", post(without_event)).route("/with", post(with_event)).with_state((
        f.services.clone(),
        f.account,
        indexed,
    ));
    let one = |path: &'static str| {
        let app = app.clone();
        async move {
            let started = Instant::now();
            send(app, Request::post(path).body(Body::empty()).unwrap(), StatusCode::CREATED).await;
            started.elapsed()
        }
    };
    for _ in 0..500 {
        one("/without").await;
        one("/with").await;
    }
    // Interleaved, each pair in alternating order, so drift in the machine's speed (other
    // load, the write-ahead log's checkpoints) falls on both alike.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for i in 0..requests {
        if i % 2 == 0 {
            off.push(one("/without").await);
            on.push(one("/with").await);
        } else {
            on.push(one("/with").await);
            off.push(one("/without").await);
        }
    }
    off.sort();
    on.sort();
    let (off, on) = (Latencies(off), Latencies(on));
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    let write = if indexed { "an indexed, expiring item" } else { "a plain item" };
    println!(
        "event overhead, the request writing {write}: {requests} requests to each route, one at a time, interleaved"
    );
    println!("{:<10} {:>12} {:>12} {:>12}", "", "p50", "p99", "max");
    println!("{:<10} {:>12} {:>12} {:>12}", "without", us(off.quantile(0.5)), us(off.quantile(0.99)), us(off.max()));
    println!("{:<10} {:>12} {:>12} {:>12}", "with", us(on.quantile(0.5)), us(on.quantile(0.99)), us(on.max()));
    let added = |q: f64| (on.quantile(q).as_secs_f64() - off.quantile(q).as_secs_f64()) * 1e6;
    println!("added: {:+.1} µs at p50, {:+.1} µs at p99 (goal: at most 50 µs at p99)", added(0.5), added(0.99));
}

async fn rollup_throughput(accounts: u64) {
    let dir = tempfile::tempdir().unwrap();
    let s = testkit::services::services(dir.path(), &[]).await;
    let now = s.clock.now_ms();
    let seeding = Instant::now();
    for i in 0..accounts {
        let owner = UserId::new();
        let account = Account {
            id: AccountId::new(),
            name: format!("Account {i}"),
            created_by: owner,
            created_at_ms: now - 60 * DAY_MS,
            org_id: None,
            require_mfa: false,
            deleted_at_ms: None,
            purge_after_ms: None,
        };
        let m =
            Membership { account_id: account.id, user_id: owner, role: Role::Owner, joined_at_ms: now - 60 * DAY_MS };
        let mut ops = vec![
            TxOp::Put(Put::new(shared::tenancy::account_item(&account).unwrap())),
            TxOp::Put(Put::new(shared::tenancy::membership_item(&m).unwrap())),
        ];
        // Active, at risk and dormant accounts in turn: events 1, 10 or 40 days ago.
        let age = [1, 10, 40][usize::try_from(i % 3).unwrap()];
        for k in 0..(i % 5) {
            let at = now - age * DAY_MS - i64::try_from(k).unwrap() * 60_000;
            let event = ProductEvent::new("report.exported", account.id, Some(owner), at).unwrap();
            ops.push(event.op().unwrap());
        }
        s.store.transact(ops).await.unwrap();
    }
    println!("rollup: {accounts} accounts seeded in {:.1} s", seeding.elapsed().as_secs_f64());
    let started = Instant::now();
    let done = shared::account_health::rollup(&s, now).await.unwrap();
    let took = started.elapsed();
    println!(
        "rollup: {} accounts in {:.2} s: {:.0} accounts per minute (goal: at least 10,000); {done:?}",
        accounts,
        took.as_secs_f64(),
        accounts as f64 / took.as_secs_f64() * 60.0
    );
}

/// What building the event's write costs, without the store: the part of the overhead that
/// is serialisation and keys rather than SQLite.
fn building(requests: u64) {
    let account = AccountId::new();
    let user = Some(UserId::new());
    let started = Instant::now();
    for i in 0..requests {
        let op = shared::product_events::lifecycle(
            "account.created",
            account,
            user,
            1_800_000_000_000 + i64::try_from(i).unwrap(),
            &[("plan", json!("free")), ("via", json!("bench"))],
            None,
        )
        .unwrap();
        std::hint::black_box(op);
    }
    println!("building the event's write: {:.1} µs each", started.elapsed().as_secs_f64() * 1e6 / requests as f64);
}

#[tokio::main]
async fn main() {
    let requests = env_or("REQUESTS", 20_000);
    let accounts = env_or("ACCOUNTS", 10_000);
    building(requests);
    event_overhead(requests, false).await;
    event_overhead(requests, true).await;
    rollup_throughput(accounts).await;
}
