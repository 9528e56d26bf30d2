//! What the tenancy load harnesses share: an account of 20 members on the embedded store
//! with a signed-in owner and an API key, and an open-loop driver that offers requests at a
//! fixed rate (latency counts from each request's scheduled start, so a stall is not
//! hidden).

#![allow(dead_code, clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use shared::auth::session::{self, Session};
use shared::auth::tokens::{self, AccessClaims};
use shared::id::{AccountId, SessionId, UserId};
use shared::services::Services;
use shared::store::{Item, Put};
use shared::tenancy::{Account, Membership, Role, membership_item};
use tower::ServiceExt;

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub struct Fixture {
    pub services: Services,
    pub account: AccountId,
    /// The owner's access token.
    pub user_token: String,
    /// An admin API key of the account.
    pub api_key: String,
    _dir: tempfile::TempDir,
}

/// Builds the fixture; `extra` are configuration variables.
pub async fn fixture(extra: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let s = testkit::services::services(dir.path(), extra).await;
    let store = s.store.as_ref();
    let now = s.clock.now_ms();

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
    store.put(Put::new(shared::tenancy::account_item(&account).unwrap())).await.unwrap();
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
        sso_org: None,
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
    let user_token = tokens::sign(t.signing_keys().await.unwrap(), &claims).unwrap();
    let (_, api_key) =
        shared::tenancy::api_keys::create(store, account.id, "bench".into(), Role::Admin, user, now).await.unwrap();
    Fixture { account: account.id, user_token, api_key, services: s, _dir: dir }
}

/// Sends `req` to `app`; checks the status; reads the body.
pub async fn send(app: Router, req: Request<Body>, expected: StatusCode) {
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), expected);
    res.into_body().collect().await.unwrap();
}

/// Latencies of an open-loop run, sorted.
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    /// The `p` quantile (0 to 1).
    pub fn quantile(&self, p: f64) -> Duration {
        self.0[((self.0.len() as f64 * p) as usize).min(self.0.len() - 1)]
    }

    pub fn max(&self) -> Duration {
        self.0[self.0.len() - 1]
    }
}

/// Offers `rate * seconds` requests at `rate` a second, the `i`th built by `make(i)`;
/// returns the latencies and the elapsed time.
pub async fn open_loop<F, Fut>(rate: u64, seconds: u64, make: F) -> (Latencies, Duration)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let request = make(i);
        tasks.push(tokio::spawn(async move {
            request.await;
            due.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    (Latencies(latencies), elapsed)
}
