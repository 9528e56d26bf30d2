//! Load harness: the membership check plus a tenant-scoped read (`GET
//! /accounts/{id}/members`, 20 members) through the full tenancy router on the embedded
//! store, offered at a fixed rate (open loop: latency counts from each request's scheduled
//! start, so a stall is not hidden). Prints p50/p90/p99/max.
//! Run: `cargo bench -p tenancy --bench tenancy` (`RATE` and `SECONDS` override).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use shared::auth::session::{self, Session};
use shared::auth::tokens::{self, AccessClaims};
use shared::id::{AccountId, SessionId, UserId};
use shared::keys;
use shared::store::{Item, Put};
use shared::tenancy::{Account, Membership, Role, membership_item};
use tower::ServiceExt;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let rate = env_or("RATE", 500);
    let seconds = env_or("SECONDS", 10);
    let dir = tempfile::tempdir().unwrap();
    let s = testkit::services::services(dir.path(), &[]).await;
    let store = s.store.as_ref();
    let now = s.clock.now_ms();

    // An account with 20 members, the first of whom calls.
    let account = Account {
        id: AccountId::new(),
        name: "Acme".into(),
        created_by: UserId::new(),
        created_at_ms: now,
        org_id: None,
        require_mfa: false,
        deleted_at_ms: None,
        purge_after_ms: None,
    };
    store.put(Put::new(Item::from_record(keys::account(account.id), &account).unwrap())).await.unwrap();
    let mut caller = None;
    for i in 0..20 {
        let email = shared::mail::EmailAddress::parse(&format!("user{i}@example.com")).unwrap();
        let record = shared::auth::users::User::new(email, true, Some(format!("User {i}")), String::new(), now);
        let user = record.id;
        caller.get_or_insert(user);
        assert!(shared::auth::users::create(store, &record).await.unwrap());
        let role = if i == 0 { Role::Owner } else { Role::Member };
        let m = Membership { account_id: account.id, user_id: user, role, joined_at_ms: now };
        store.put(Put::new(membership_item(&m).unwrap())).await.unwrap();
    }
    let user = caller.unwrap();
    let sid = SessionId::new();
    let session = Session {
        id: sid,
        user_id: user,
        created_at_ms: now,
        last_used_at_ms: now,
        ip: None,
        user_agent: None,
        refresh_hash: String::new(),
        mfa: false,
    };
    store.put(Put::new(Item::from_record(session::key(user, sid), &session).unwrap())).await.unwrap();
    let t = &s.tokens;
    let secs = now / 1000;
    let claims = AccessClaims {
        iss: t.issuer.clone(),
        aud: t.audience.clone(),
        sub: user.to_string(),
        sid: sid.to_string(),
        iat: secs,
        nbf: secs,
        exp: secs + 3600,
        jti: "bench".into(),
    };
    let token = tokens::sign(t.signing_keys().await.unwrap(), &claims).unwrap();
    let app = tenancy::app(s.clone());
    let path = format!("/accounts/{}/members", account.id);

    let request = |app: axum::Router, path: String, token: String| async move {
        let req = Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    };
    // Warm up.
    for _ in 0..200 {
        request(app.clone(), path.clone(), token.clone()).await;
    }

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (app, path, token) = (app.clone(), path.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            request(app, path, token).await;
            due.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "tenancy/members_read: {total} requests offered at {rate}/s over {:.1} s (achieved {:.0}/s): \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies[latencies.len() - 1],
    );
}
