//! Outbound webhooks end to end on the local stack, every delivery checked by a receiver that
//! verifies it with the Standard Webhooks reference library: publishing from Groundwork's
//! flows and from a team's own code, one delivery per message id, the retry schedule on a
//! controlled clock, auto-disable with its email, replay, secret rotation with its overlap,
//! test messages, and the refusal of private and loopback targets.

use std::sync::Arc;

use serde_json::{Value, json};
use shared::clock::{Clock, ManualClock};
use shared::webhooks::{self, Event, NewEndpoint};
use testkit::app::{PASSWORD, TestApp};
use testkit::webhook_receiver::ReceiverEndpoint;

const LOOPBACK: (&str, &str) = ("GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK", "true");

fn real_now_ms() -> i64 {
    shared::clock::SystemClock.now_ms()
}

async fn account(app: &TestApp, token: &str) -> String {
    let (status, body) = app.call("POST", "/accounts", Some(token), Some(json!({"name": "Acme"}))).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn register(app: &TestApp, token: &str, account: &str, body: Value) -> (u16, Value) {
    app.call("POST", &format!("/accounts/{account}/webhooks"), Some(token), Some(body)).await
}

async fn login(app: &TestApp, email: &str) -> String {
    let (status, tokens) =
        app.call("POST", "/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(status, 200, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// How far `clock` runs ahead of this machine's, for the receiver's timestamp check.
fn offset_secs(clock: &ManualClock) -> i64 {
    (clock.now_ms() - real_now_ms()) / 1000
}

async fn attempts(app: &TestApp, token: &str, account: &str, endpoint: &str) -> Vec<Value> {
    let (status, log) =
        app.call("GET", &format!("/accounts/{account}/webhooks/{endpoint}/attempts"), Some(token), None).await;
    assert_eq!(status, 200, "{log}");
    log["attempts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn events_reach_a_receiver_that_verifies_them_once_per_id_through_a_secret_rotation() {
    let clock = ManualClock::at(real_now_ms());
    let app = TestApp::spawn_with_clock(&[LOOPBACK], Arc::new(clock.clone())).await;
    let (owner, _) = app.user("owner@acme.test").await;
    let account = account(&app, &owner).await;
    let receiver = ReceiverEndpoint::new();
    let (status, created) = register(
        &app,
        &owner,
        &account,
        json!({"url": receiver.url(), "description": "ERP", "event_types": ["member.joined", "project.created"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let endpoint = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    receiver.configure(&[&secret], 200, None, 0).await;

    // The secret is shown once: never in reads, lists or the account export.
    let (_, read) = app.call("GET", &format!("/accounts/{account}/webhooks/{endpoint}"), Some(&owner), None).await;
    let (_, list) = app.call("GET", &format!("/accounts/{account}/webhooks"), Some(&owner), None).await;
    assert!(!read.to_string().contains("whsec_") && !list.to_string().contains("whsec_"), "{read} {list}");
    assert_eq!(list["endpoints"][0]["event_types"], json!(["member.joined", "project.created"]));

    // Groundwork's own flow: someone joins.
    let (member, member_id) = app.user("grace@acme.test").await;
    let path = format!("/accounts/{account}/invitations");
    let (status, _) = app.call("POST", &path, Some(&owner), Some(json!({"email": "grace@acme.test"}))).await;
    assert_eq!(status, 201);
    let token = app.token_from_email("grace@acme.test", "invited you to").await;
    let (status, _) = app.call("POST", "/invitations/accept", Some(&member), Some(json!({"token": token}))).await;
    assert_eq!(status, 200);
    let got = receiver.wait_for(1).await;
    assert!(got[0].verified, "{:?}", got[0]);
    let body = got[0].json();
    assert_eq!(body["type"], "member.joined");
    assert_eq!(body["data"], json!({"account_id": account, "user_id": member_id, "role": "member"}));

    // A team's own function publishes, twice with one id (a retried caller): one delivery.
    let services = &app.stack.services;
    let account_id = account.parse().unwrap();
    let event = Event::new("project.created", "project-created-42", clock.now_ms(), json!({"project_id": "42"}));
    webhooks::publish(&services.jobs(), account_id, &event).await.unwrap();
    webhooks::publish(&services.jobs(), account_id, &event).await.unwrap();
    // A type the endpoint does not subscribe to goes nowhere.
    let other = Event::new("project.deleted", "project-deleted-42", clock.now_ms(), json!({"project_id": "42"}));
    webhooks::publish(&services.jobs(), account_id, &other).await.unwrap();
    app.drain().await;
    let got = receiver.received().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].id.as_deref(), Some("project-created-42"));
    assert!(got[1].verified);

    // Rotation: the new secret signs at once, the old one too until the overlap ends.
    let (status, rotated) =
        app.call("POST", &format!("/accounts/{account}/webhooks/{endpoint}/rotate-secret"), Some(&owner), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated["previous_secret_expires_at_ms"].as_i64().unwrap(), clock.now_ms() + 24 * 3_600_000);
    receiver.configure(&[&secret], 200, None, 0).await;
    let (status, sent) =
        app.call("POST", &format!("/accounts/{account}/webhooks/{endpoint}/test"), Some(&owner), None).await;
    assert_eq!(status, 202, "{sent}");
    let got = receiver.wait_for(3).await;
    assert!(got[2].verified, "the old secret still verifies during the overlap: {:?}", got[2]);
    assert_eq!(got[2].json()["type"], "webhook.test");
    assert_eq!(got[2].signature.as_deref().unwrap().split(' ').count(), 2);
    receiver.configure(&[&new_secret], 200, None, 0).await;
    app.call("POST", &format!("/accounts/{account}/webhooks/{endpoint}/test"), Some(&owner), None).await;
    assert!(receiver.wait_for(4).await[3].verified, "the new secret verifies");
    clock.advance_ms(24 * 3_600_000);
    let owner = login(&app, "owner@acme.test").await;
    receiver.configure(&[&secret], 200, None, offset_secs(&clock)).await;
    app.call("POST", &format!("/accounts/{account}/webhooks/{endpoint}/test"), Some(&owner), None).await;
    let got = receiver.wait_for(5).await;
    assert!(!got[4].verified, "after the overlap the old secret no longer verifies");
    assert_eq!(got[4].signature.as_deref().unwrap().split(' ').count(), 1);

    // The delivery log has every attempt, newest first, with its status.
    let log = attempts(&app, &owner, &account, &endpoint).await;
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(log[0]["status"], 401);
    assert_eq!(log[0]["outcome"], "failed");
    assert_eq!(log[0]["trigger"], "test");
    assert!(log[0]["next_attempt_at_ms"].is_null(), "a test message is sent once");
    assert_eq!(log[4]["status"], 200);
    assert_eq!(log[4]["event_type"], "member.joined");
    assert!(log.iter().all(|a| a["latency_ms"].is_u64()));

    // Replaying by id needs a type the endpoint subscribes to (test messages never are).
    let (status, refused) = app
        .call(
            "POST",
            &format!("/accounts/{account}/webhooks/{endpoint}/replay"),
            Some(&owner),
            Some(json!({"message_id": sent["message_id"]})),
        )
        .await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("not_subscribed")), "{refused}");

    // An answer holding a secret is never kept for an Idempotency-Key retry: the retry runs.
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let res = app
            .client
            .post(format!("{}/accounts/{account}/webhooks", app.base))
            .bearer_auth(&owner)
            .header("idempotency-key", "create-once")
            .json(&json!({"url": receiver.url()}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        assert!(res.headers().get("idempotent-replayed").is_none());
        secrets.push(res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned());
    }
    assert_ne!(secrets[0], secrets[1]);
    let kept =
        testkit::faults::item_shapes(&app.stack.services.config.data_dir.join(shared::services::EMBEDDED_DB_FILE));
    assert!(!kept.keys().any(|k| k.starts_with("IDEMPOTENT_REQUEST#")), "no answer kept: {kept:?}");

    // Audited, as every change to an endpoint.
    let (_, audit) = app.call("GET", &format!("/accounts/{account}/audit"), Some(&owner), None).await;
    let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(
        actions.contains(&"webhook_endpoint.created") && actions.contains(&"webhook_endpoint.secret_rotated"),
        "{actions:?}"
    );
    app.stack.stop().await;
}

#[tokio::test]
async fn failures_retry_on_the_schedule_then_disable_the_endpoint_and_a_replay_recovers() {
    let clock = ManualClock::at(real_now_ms());
    let vars = [LOOPBACK, ("GROUNDWORK_WEBHOOK_DISABLE_AFTER_HOURS", "2")];
    let app = TestApp::spawn_with_clock(&vars, Arc::new(clock.clone())).await;
    let (owner, _) = app.user("owner@acme.test").await;
    let account = account(&app, &owner).await;
    let receiver = ReceiverEndpoint::new();
    let (_, created) = register(&app, &owner, &account, json!({"url": receiver.url()})).await;
    let endpoint = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    receiver.configure(&[&secret], 503, None, 0).await;

    let t0 = clock.now_ms();
    let event = Event::new("member.removed", "member-removed-7", t0, json!({"account_id": account, "user_id": "u7"}));
    webhooks::publish(&app.stack.services.jobs(), account.parse().unwrap(), &event).await.unwrap();
    // Attempt n+1 comes the schedule's delay after attempt n: 5 s, 5 min, 30 min, 2 h.
    let mut expected = 1;
    receiver.wait_for(expected).await;
    for wait in [5_000, 5 * 60_000, 30 * 60_000, 2 * 3_600_000] {
        // Not a moment early: a second before it is due, nothing more arrives.
        clock.advance_ms(wait - 1_000);
        receiver.configure(&[&secret], 503, None, offset_secs(&clock)).await;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(receiver.received().await.len(), expected, "an attempt came early");
        clock.advance_ms(1_000);
        expected += 1;
        let got = receiver.wait_for(expected).await;
        assert!(got.iter().all(|r| r.verified && r.id.as_deref() == Some("member-removed-7")), "{got:?}");
    }
    app.drain().await;

    // Five failures over more than two hours: disabled, the owner told, nothing more sent.
    let owner = login(&app, "owner@acme.test").await;
    let log = attempts(&app, &owner, &account, &endpoint).await;
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|a| a["status"] == 503 && a["outcome"] == "failed"));
    let attempts_made: Vec<u64> = log.iter().rev().map(|a| a["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts_made, vec![1, 2, 3, 4, 5]);
    assert_eq!(log[4]["next_attempt_at_ms"].as_i64().unwrap() - log[4]["at_ms"].as_i64().unwrap(), 5_000);
    assert_eq!(log[1]["next_attempt_at_ms"].as_i64().unwrap() - log[1]["at_ms"].as_i64().unwrap(), 2 * 3_600_000);
    let (_, read) = app.call("GET", &format!("/accounts/{account}/webhooks/{endpoint}"), Some(&owner), None).await;
    assert_eq!((read["enabled"].as_bool(), read["disabled_reason"].as_str()), (Some(false), Some("failing")), "{read}");
    app.wait_email("owner@acme.test", "was disabled").await;
    clock.advance_ms(6 * 3_600_000);
    app.drain().await;
    assert_eq!(receiver.received().await.len(), 5, "a disabled endpoint gets nothing");
    let replay = format!("/accounts/{account}/webhooks/{endpoint}/replay");
    let owner = login(&app, "owner@acme.test").await;
    let (status, refused) = app.call("POST", &replay, Some(&owner), Some(json!({"since_ms": t0}))).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("endpoint_disabled")));

    // The receiver is fixed: enable the endpoint and replay everything since the outage.
    receiver.configure(&[&secret], 204, None, offset_secs(&clock)).await;
    let path = format!("/accounts/{account}/webhooks/{endpoint}");
    let (status, read) = app.call("PATCH", &path, Some(&owner), Some(json!({"enabled": true}))).await;
    assert_eq!(status, 200, "{read}");
    assert!(read["failing_since_ms"].is_null() && read["disabled_reason"].is_null());
    let (status, replayed) = app.call("POST", &replay, Some(&owner), Some(json!({"since_ms": t0}))).await;
    assert_eq!(status, 202, "{replayed}");
    assert_eq!(replayed["queued"], 1);
    let got = receiver.wait_for(6).await;
    assert!(got[5].verified);
    assert_eq!(got[5].id.as_deref(), Some("member-removed-7"), "a replay keeps the message id");
    assert_eq!(got[5].body, got[0].body, "and the exact body");
    let (status, replayed) =
        app.call("POST", &replay, Some(&owner), Some(json!({"message_id": "member-removed-7"}))).await;
    assert_eq!((status, replayed["queued"].as_u64()), (202, Some(1)));
    receiver.wait_for(7).await;
    let (status, bad) = app.call("POST", &replay, Some(&owner), Some(json!({"message_id": "nope"}))).await;
    assert_eq!((status, bad["code"].as_str()), (422, Some("unknown_message")));
    let (status, bad) = app.call("POST", &replay, Some(&owner), Some(json!({}))).await;
    assert_eq!((status, bad["code"].as_str()), (422, Some("invalid_replay")));
    app.stack.stop().await;
}

#[tokio::test]
async fn private_and_loopback_targets_are_refused_at_registration_and_at_delivery() {
    let app = TestApp::spawn(&[]).await;
    let (owner, _) = app.user("owner@acme.test").await;
    let account = account(&app, &owner).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("https://127.0.0.1:{port}/hook"),
        // A name that resolves to 127.0.0.1: refused on what DNS answers.
        format!("https://localhost:{port}/hook"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://10.0.0.7/hook".to_owned(),
        "https://[::ffff:192.168.0.1]/hook".to_owned(),
        "https://[fd00:ec2::254]/".to_owned(),
        "http://hooks.example.com/plain-http".to_owned(),
        "https://user:pw@hooks.example.com/".to_owned(),
        "not a url".to_owned(),
    ] {
        let (status, body) = register(&app, &owner, &account, json!({"url": url})).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid_url")), "{url}: {body}");
    }
    let (status, body) =
        register(&app, &owner, &account, json!({"url": "https://hooks.example.com/x", "event_types": ["nope"]})).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_event_type")), "{body}");

    // A name that resolved to a public address when registered and to loopback now (DNS
    // rebinding): checked again at delivery, refused before any connection.
    let store = app.stack.services.store.as_ref();
    let account_id = account.parse().unwrap();
    let new = NewEndpoint {
        url: format!("https://localhost:{port}/hook"),
        description: String::new(),
        event_types: vec![],
        enabled: true,
    };
    let (endpoint, _) = webhooks::create(store, account_id, new, app.stack.services.clock.now_ms()).await.unwrap();
    let event = Event::new("member.joined", "m-1", 0, json!({}));
    webhooks::publish(&app.stack.services.jobs(), account_id, &event).await.unwrap();
    // (Its retry is due in five seconds: wait for the first attempt, not for the queue.)
    let endpoint_id = endpoint.id.to_string();
    let log = testkit::eventually("the refused attempt in the delivery log", || async {
        let log = attempts(&app, &owner, &account, &endpoint_id).await;
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert!(log[0]["status"].is_null());
    assert!(log[0]["error"].as_str().unwrap().contains("not a public address"), "{log:?}");
    assert_eq!(log[0]["next_attempt_at_ms"].as_i64().unwrap() - log[0]["at_ms"].as_i64().unwrap(), 5_000);
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "no connection reached the loopback listener");
    app.stack.stop().await;
}

#[tokio::test]
async fn redirects_are_answers_not_followed() {
    let app = TestApp::spawn(&[LOOPBACK]).await;
    let (owner, _) = app.user("owner@acme.test").await;
    let account = account(&app, &owner).await;
    let receiver = ReceiverEndpoint::new();
    let (_, created) = register(&app, &owner, &account, json!({"url": receiver.url()})).await;
    let endpoint = created["id"].as_str().unwrap();
    // Even with loopback allowed for tests, the metadata address is never reached: the
    // redirect is recorded as a failed answer.
    receiver
        .configure(&[created["secret"].as_str().unwrap()], 302, Some("http://169.254.169.254/latest/meta-data/"), 0)
        .await;
    let (status, _) =
        app.call("POST", &format!("/accounts/{account}/webhooks/{endpoint}/test"), Some(&owner), None).await;
    assert_eq!(status, 202);
    app.drain().await;
    assert_eq!(receiver.received().await.len(), 1);
    let log = attempts(&app, &owner, &account, endpoint).await;
    assert_eq!((log[0]["status"].as_u64(), log[0]["outcome"].as_str()), (Some(302), Some("failed")), "{log:?}");
    // Members without the admin role cannot see or change endpoints.
    let (reader, _) = app.user("reader@acme.test").await;
    let path = format!("/accounts/{account}/invitations");
    app.call("POST", &path, Some(&owner), Some(json!({"email": "reader@acme.test", "role": "read_only"}))).await;
    let token = app.token_from_email("reader@acme.test", "invited you to").await;
    app.call("POST", "/invitations/accept", Some(&reader), Some(json!({"token": token}))).await;
    let (status, _) = app.call("GET", &format!("/accounts/{account}/webhooks"), Some(&reader), None).await;
    assert_eq!(status, 403);
    app.stack.stop().await;
}
