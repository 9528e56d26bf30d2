//! Faults that systems like this one shipped (account pre-hijacking, reset links that
//! outlive a reset, two tabs refreshing at once, a forged client address), each replayed
//! against the local stack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::{Value, json};
use shared::clock::ManualClock;
use shared::http::RequestContext;
use shared::id::CorrelationId;
use shared::store::{Delete, Item, Key, Page, Put, Query, Scan, Store, StoreError, TxOp, Update};
use testkit::app::{PASSWORD, TestApp, token_in};

const OWNER_PASSWORD: &str = "copper-lantern-meadow-81";
const IMPOSTOR_PASSWORD: &str = "granite-harbour-violin-29";

async fn signup(app: &TestApp, email: &str, password: &str) {
    let (status, body) =
        app.call("POST", "/auth/signup", None, Some(json!({"email": email, "password": password}))).await;
    assert_eq!(status, 202, "{body}");
    // The link is emailed by a job: wait for it, so links arrive in sign-up order.
    app.drain().await;
}

async fn login(app: &TestApp, email: &str, password: &str) -> (u16, Value) {
    app.call("POST", "/auth/login", None, Some(json!({"email": email, "password": password}))).await
}

#[tokio::test]
async fn an_impostors_unverified_sign_up_never_keeps_the_owner_out() {
    // A single sign-up: its link sets the password it chose.
    let app = TestApp::spawn(&[]).await;
    signup(&app, "bob@example.com", OWNER_PASSWORD).await;
    let link = app.token_from_email("bob@example.com", "Confirm your email address").await;
    assert_eq!(app.call("POST", "/auth/verify-email", None, Some(json!({"token": link}))).await.0, 200);
    assert_eq!(login(&app, "bob@example.com", OWNER_PASSWORD).await.0, 200);

    // Someone signs up with Ada's address and a password of their choice, and never
    // verifies; then Ada signs up herself. Whichever of the two links she follows (both
    // reached her mailbox), neither unproven password is kept: she chooses hers by the reset
    // link that verifying sends, and the impostor's never logs in.
    for pick in [0, 1] {
        let ada = format!("ada{pick}@example.com");
        signup(&app, &ada, IMPOSTOR_PASSWORD).await;
        signup(&app, &ada, OWNER_PASSWORD).await;
        let links = app.emails(&ada, "Confirm your email address");
        assert_eq!(links.len(), 2, "each sign-up sends its own link");
        let (status, me) =
            app.call("POST", "/auth/verify-email", None, Some(json!({"token": token_in(&links[pick])}))).await;
        assert_eq!((status, me["email_verified"].clone()), (200, json!(true)), "{me}");
        assert_eq!(login(&app, &ada, IMPOSTOR_PASSWORD).await.0, 401, "the impostor's password does not log in");
        assert_eq!(login(&app, &ada, OWNER_PASSWORD).await.0, 401, "no unproven password is kept");
        let reset = app.token_from_email(&ada, "Reset your").await;
        let body = json!({"token": reset, "password": OWNER_PASSWORD});
        assert_eq!(app.call("POST", "/auth/password/reset", None, Some(body)).await.0, 204);
        assert_eq!(login(&app, &ada, OWNER_PASSWORD).await.0, 200);
        // The other link, followed later, changes nothing for a verified address.
        app.call("POST", "/auth/verify-email", None, Some(json!({"token": token_in(&links[1 - pick])}))).await;
        assert_eq!(login(&app, &ada, IMPOSTOR_PASSWORD).await.0, 401);
        assert_eq!(login(&app, &ada, OWNER_PASSWORD).await.0, 200);
    }
    app.stack.stop().await;
}

#[tokio::test]
async fn only_the_newest_reset_link_works_and_a_reset_or_change_ends_them_all() {
    let app = TestApp::spawn(&[]).await;
    let (access, _) = app.user("ada@example.com").await;
    let forgot = || app.call("POST", "/auth/password/forgot", None, Some(json!({"email": "ada@example.com"})));
    assert_eq!(forgot().await.0, 202);
    app.drain().await;
    assert_eq!(forgot().await.0, 202);
    app.drain().await;
    let links = app.emails("ada@example.com", "Reset your");
    assert_eq!(links.len(), 2);
    let (newer, older) = (token_in(&links[0]), token_in(&links[1]));
    let reset = |token: String, password: &'static str| {
        app.call("POST", "/auth/password/reset", None, Some(json!({"token": token, "password": password})))
    };
    assert_eq!(reset(older.clone(), IMPOSTOR_PASSWORD).await.0, 400, "a newer link ends the older one");
    assert_eq!(reset(newer, OWNER_PASSWORD).await.0, 204);
    assert_eq!(reset(older, IMPOSTOR_PASSWORD).await.0, 400, "and so does the reset");
    assert_eq!(login(&app, "ada@example.com", OWNER_PASSWORD).await.0, 200);
    assert_eq!(login(&app, "ada@example.com", IMPOSTOR_PASSWORD).await.0, 401);

    // A link requested before a password change dies with the change.
    assert_eq!(forgot().await.0, 202);
    app.drain().await;
    let pending = token_in(&app.emails("ada@example.com", "Reset your")[0]);
    let (_, session) = login(&app, "ada@example.com", OWNER_PASSWORD).await;
    let change = json!({"current_password": OWNER_PASSWORD, "new_password": PASSWORD});
    let (status, body) =
        app.call("POST", "/auth/password/change", session["access_token"].as_str(), Some(change)).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(reset(pending, IMPOSTOR_PASSWORD).await.0, 400);
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.0, 200);
    let _ = access;
    app.stack.stop().await;
}

#[tokio::test]
async fn a_refresh_token_reused_within_the_interval_gets_the_same_successor() {
    let clock = ManualClock::at(1_800_000_000_000);
    let app = TestApp::spawn_with_clock(&[], Arc::new(clock.clone())).await;
    let _ = app.user("ada@example.com").await;
    let (_, first) = login(&app, "ada@example.com", PASSWORD).await;
    let refresh = |token: &Value| app.call("POST", "/auth/refresh", None, Some(json!({"refresh_token": token})));
    let (status, one) = refresh(&first["refresh_token"]).await;
    assert_eq!(status, 200, "{one}");
    clock.advance_ms(9_000);
    // The second tab, nine seconds later (the interval is ten): the same successor.
    let (status, two) = refresh(&first["refresh_token"]).await;
    assert_eq!(status, 200, "{two}");
    assert_eq!(one["refresh_token"], two["refresh_token"]);
    assert_eq!(one["session_id"], two["session_id"]);
    assert_eq!(app.call("GET", "/me", two["access_token"].as_str(), None).await.0, 200);
    // The successor works once, as any refresh token.
    let (status, three) = refresh(&one["refresh_token"]).await;
    assert_eq!(status, 200, "{three}");
    assert_eq!(app.call("GET", "/me", three["access_token"].as_str(), None).await.0, 200);
    app.stack.stop().await;
}

#[tokio::test]
async fn a_refresh_token_reused_after_the_interval_ends_the_session() {
    let clock = ManualClock::at(1_800_000_000_000);
    let app = TestApp::spawn_with_clock(&[], Arc::new(clock.clone())).await;
    let _ = app.user("ada@example.com").await;
    let (_, first) = login(&app, "ada@example.com", PASSWORD).await;
    let refresh = |token: &Value| app.call("POST", "/auth/refresh", None, Some(json!({"refresh_token": token})));
    let (status, second) = refresh(&first["refresh_token"]).await;
    assert_eq!(status, 200);
    clock.advance_ms(11_000);
    assert_eq!(refresh(&first["refresh_token"]).await.0, 401, "stolen: replayed after the interval");
    assert_eq!(refresh(&second["refresh_token"]).await.0, 401, "and the legitimate chain ends with it");
    assert_eq!(app.call("GET", "/me", second["access_token"].as_str(), None).await.0, 401);
    app.stack.stop().await;
}

/// Holds the first reads of refresh-token records until `parties` of them are waiting, so
/// concurrent refreshes all read the token unused before any rotates it: the race, every time.
struct ReadBarrier {
    inner: Arc<dyn Store>,
    barrier: tokio::sync::Barrier,
    held: AtomicUsize,
    parties: usize,
}

#[async_trait]
impl Store for ReadBarrier {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let item = self.inner.get(key).await;
        if key.pk.starts_with("REFRESH#") && self.held.fetch_add(1, Ordering::SeqCst) < self.parties {
            self.barrier.wait().await;
        }
        item
    }
    async fn put(&self, put: Put) -> Result<Item, StoreError> {
        self.inner.put(put).await
    }
    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        self.inner.update(update).await
    }
    async fn delete(&self, delete: Delete) -> Result<Option<Item>, StoreError> {
        self.inner.delete(delete).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }
    async fn scan(&self, scan: Scan) -> Result<Page, StoreError> {
        self.inner.scan(scan).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        self.inner.transact(ops).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn two_tabs_refreshing_at_once_both_get_the_same_successor() {
    let dir = tempfile::tempdir().unwrap();
    let mut services = testkit::services::services(dir.path(), &[]).await;
    let user = shared::auth::users::User::new(
        shared::mail::EmailAddress::parse("ada@example.com").unwrap(),
        true,
        None,
        String::new(),
        services.clock.now_ms(),
    );
    assert!(shared::auth::users::create(services.store.as_ref(), &user).await.unwrap());
    let ctx = RequestContext { request_id: CorrelationId::generate(), ip: None, user_agent: None };
    let pair = auth::sessions::start(&services, user.id, &ctx, false).await.unwrap();
    services.store = Arc::new(ReadBarrier {
        inner: Arc::clone(&services.store),
        barrier: tokio::sync::Barrier::new(2),
        held: AtomicUsize::new(0),
        parties: 2,
    });
    let token = pair.refresh_token.clone().expect("a body delivery");
    let (a, b) = tokio::join!(
        auth::sessions::refresh(&services, &token, &ctx),
        auth::sessions::refresh(&services, &token, &ctx),
    );
    let (a, b) = (a.expect("the first tab refreshes"), b.expect("so does the second"));
    assert_eq!(a.refresh_token, b.refresh_token, "one rotation, one successor");
    assert_ne!(a.refresh_token, pair.refresh_token);
    // The session survived the race, and its one successor works.
    let successor = a.refresh_token.clone().expect("a body delivery");
    let next = auth::sessions::refresh(&services, &successor, &ctx).await.expect("the successor works");
    assert_ne!(next.refresh_token, a.refresh_token);
}

#[tokio::test]
async fn a_forged_forwarded_for_header_does_not_escape_the_per_ip_limit() {
    let app = TestApp::spawn(&[]).await;
    let mut statuses = Vec::new();
    // The per-IP limit of reset requests is 20 an hour; every request claims another address.
    for n in 0..21 {
        let res = app
            .client
            .post(format!("{}/auth/password/forgot", app.base))
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .json(&json!({"email": format!("nobody{n}@example.com")}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 202), "{statuses:?}");
    assert_eq!(statuses[20], 429, "the socket's address is the client's: {statuses:?}");
    app.stack.stop().await;
}

#[tokio::test]
async fn an_internationalised_domain_and_its_ascii_form_are_one_mailbox() {
    let app = TestApp::spawn(&[]).await;
    signup(&app, "zoe@bücher.example", OWNER_PASSWORD).await;
    // Stored and mailed in the ASCII form.
    let link = app.token_from_email("zoe@xn--bcher-kva.example", "Confirm your email address").await;
    let (status, me) = app.call("POST", "/auth/verify-email", None, Some(json!({"token": link}))).await;
    assert_eq!((status, me["email"].clone()), (200, json!("zoe@xn--bcher-kva.example")), "{me}");
    // The other spelling is the same, verified address: no second user, no second link.
    signup(&app, "zoe@xn--bcher-kva.example", IMPOSTOR_PASSWORD).await;
    assert_eq!(app.emails("zoe@xn--bcher-kva.example", "Confirm your email address").len(), 1);
    assert_eq!(login(&app, "zoe@xn--bcher-kva.example", OWNER_PASSWORD).await.0, 200);
    assert_eq!(login(&app, "ZOE@Bücher.example", OWNER_PASSWORD).await.0, 200);
    assert_eq!(login(&app, "zoe@bücher.example", IMPOSTOR_PASSWORD).await.0, 401);
    app.stack.stop().await;
}
