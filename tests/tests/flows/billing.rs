//! Billing end to end: Stripe events built from Stripe's own objects (`tests/data/stripe/`)
//! and signed as Stripe signs them, through the webhook receiver, the FIFO queue and the
//! consumer of the local stack; the account routes against a local double of Stripe's API
//! that checks the exact requests; the ordering property; reconciliation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shared::billing::SubscriptionStatus;
use shared::billing::events::{self, StripeEvent};
use shared::clock::Clock as _;
use shared::id::AccountId;
use testkit::app::TestApp;
use wiremock::matchers::{body_string_contains, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const SECRET: &str = "whsec_test_secret";

fn fixture(name: &str) -> Value {
    let path = format!("{}/data/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Stripe's subscription object with the fields under test set.
pub(crate) fn subscription(id: &str, customer: &str, status: &str, price: &str, created: i64) -> Value {
    let mut s = fixture("subscription");
    s["id"] = json!(id);
    s["customer"] = json!(customer);
    s["status"] = json!(status);
    s["created"] = json!(created);
    s["cancel_at_period_end"] = json!(false);
    s["cancel_at"] = Value::Null;
    s["trial_end"] = json!(created + 14 * 86_400);
    s["items"]["data"][0]["id"] = json!(format!("si_{id}"));
    s["items"]["data"][0]["price"]["id"] = json!(price);
    s["items"]["data"][0]["quantity"] = json!(1);
    s
}

/// Stripe's event object around `object`.
fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    let mut e = fixture("event");
    e["id"] = json!(id);
    e["type"] = json!(kind);
    e["created"] = json!(created);
    e["data"] = json!({"object": object});
    e
}

fn invoice(id: &str, customer: &str, subscription: &str) -> Value {
    let mut i = fixture("invoice");
    i["id"] = json!(id);
    i["customer"] = json!(customer);
    i["subscription"] = json!(subscription);
    i["amount_due"] = json!(4900);
    i
}

async fn post_event(app: &TestApp, body: &Value, secret: &str) -> (u16, Value) {
    post_signed(&app.client, &app.base, body, secret).await
}

/// Posts `body` to `base`'s Stripe webhook, signed with `secret` as Stripe signs.
pub(crate) async fn post_signed(client: &reqwest::Client, base: &str, body: &Value, secret: &str) -> (u16, Value) {
    let raw = body.to_string();
    let now = shared::clock::SystemClock.now_secs();
    let res = client
        .post(format!("{base}/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", shared::billing::webhook::header(secret, now, raw.as_bytes()))
        .body(raw)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Stripe's `checkout.session.completed` for `account`'s checkout: customer `cus_acme`,
/// subscription `sub_1`.
pub(crate) fn checkout_completed(account: &str, created: i64) -> Value {
    let mut session = fixture("checkout_session");
    session["customer"] = json!("cus_acme");
    session["subscription"] = json!("sub_1");
    session["client_reference_id"] = json!(account);
    event("evt_checkout", "checkout.session.completed", created, session)
}

pub(crate) async fn stripe_double() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .and(header_exists("idempotency-key"))
        .and(body_string_contains("metadata[account_id]="))
        .respond_with(ResponseTemplate::new(200).set_body_json({
            let mut c = fixture("customer");
            c["id"] = json!("cus_acme");
            c
        }))
        .expect(1)
        .named("the customer is created once")
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .and(header_exists("idempotency-key"))
        .and(body_string_contains("mode=subscription"))
        .and(body_string_contains("customer=cus_acme"))
        .and(body_string_contains("subscription_data[trial_period_days]=14"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("checkout_session")))
        .mount(&server)
        .await;
    server
}

async fn app_with(stripe: &MockServer) -> TestApp {
    TestApp::spawn(&[
        ("STRIPE_WEBHOOK_SECRET", &format!("whsec_old,{SECRET}")),
        ("STRIPE_SECRET_KEY", "sk_test_123"),
        ("STRIPE_API_BASE", &stripe.uri()),
    ])
    .await
}

async fn billing(app: &TestApp, token: &str, account: &str) -> Value {
    app.call("GET", &format!("/accounts/{account}/billing"), Some(token), None).await.1
}

/// Waits until the account's billing satisfies `done`.
async fn until(app: &TestApp, token: &str, account: &str, done: impl Fn(&Value) -> bool) -> Value {
    testkit::eventually("the account's billing to reach the expected state", || async {
        let b = billing(app, token, account).await;
        done(&b).then_some(b)
    })
    .await
}

pub(crate) async fn mount_subscription(stripe: &MockServer, sub: &Value) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap())))
        .respond_with(ResponseTemplate::new(200).set_body_json(sub.clone()))
        .mount(stripe)
        .await;
}

#[tokio::test]
async fn checkout_webhooks_dunning_and_entitlements_on_the_local_stack() {
    let stripe = stripe_double().await;
    let app = app_with(&stripe).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let (_, account) = app.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    let acme = account["id"].as_str().unwrap().to_owned();
    let path_of = |what: &str| format!("/accounts/{acme}/billing/{what}");

    // The catalogue is public; the free state applies before any subscription.
    let (status, plans) = app.call("GET", "/plans", None, None).await;
    assert_eq!((status, plans["plans"].as_array().unwrap().len()), (200, 3));
    assert_eq!(billing(&app, &ada, &acme).await["entitlements"]["plan"], "free");

    // Bad input: an unknown plan, a plain member.
    let (status, body) =
        app.call("POST", &path_of("checkout"), Some(&ada), Some(json!({"plan": "gold", "interval": "monthly"}))).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unknown_plan")));
    let path = format!("/accounts/{acme}/invitations");
    app.call("POST", &path, Some(&ada), Some(json!({"email": "bob@example.com", "role": "member"}))).await;
    let token = app.token_from_email("bob@example.com", "invited you to").await;
    assert_eq!(app.call("POST", "/invitations/accept", Some(&bob), Some(json!({"token": token}))).await.0, 200);
    let choice = json!({"plan": "team", "interval": "monthly"});
    assert_eq!(app.call("POST", &path_of("checkout"), Some(&bob), Some(choice.clone())).await.0, 403);
    assert_eq!(app.call("GET", &format!("/accounts/{acme}/billing"), Some(&bob), None).await.0, 403);

    // Checkout: the customer is created once and reused.
    let (status, body) = app.call("POST", &path_of("checkout"), Some(&ada), Some(choice.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().unwrap().starts_with("https://checkout.stripe.com/"));
    assert_eq!(app.call("POST", &path_of("checkout"), Some(&ada), Some(choice)).await.0, 200);

    // Stripe reports the completed checkout; the consumer reads the subscription.
    let t0 = shared::clock::SystemClock.now_secs() - 1000;
    mount_subscription(&stripe, &subscription("sub_1", "cus_acme", "trialing", "price_team_monthly_local", t0)).await;
    let completed = checkout_completed(&acme, t0 + 1);
    let (status, receipt) = post_event(&app, &completed, SECRET).await;
    assert_eq!((status, receipt["duplicate"].as_bool()), (200, Some(false)));
    let b = until(&app, &ada, &acme, |b| b["subscription"]["status"] == "trialing").await;
    assert_eq!(b["entitlements"]["plan"], "team");
    assert!(b["entitlements"]["features"].as_array().unwrap().contains(&json!("sso")));
    // The price's amount, kept for the account's MRR (Stripe's fixture: $20.00).
    assert_eq!((&b["subscription"]["unit_amount"], &b["subscription"]["currency"]), (&json!(2000), &json!("usd")));
    // Delivered again: acknowledged, not queued again.
    assert_eq!(post_event(&app, &completed, SECRET).await.1["duplicate"], true);

    // Forged or stale signatures and non-events: 400, nothing recorded.
    let forged = event(
        "evt_forged",
        "customer.subscription.deleted",
        t0 + 2,
        subscription("sub_1", "cus_acme", "canceled", "price_team_monthly_local", t0),
    );
    let (status, body) = post_event(&app, &forged, "whsec_attacker").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_signature")));
    let store = app.stack.services.store.as_ref();
    assert!(store.get(&shared::keys::stripe_event("evt_forged")).await.unwrap().is_none());
    let (status, body) = post_event(&app, &json!({"hello": "world"}), SECRET).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("not_a_stripe_event")));

    // A failed payment: past due (the plan stays), the owner is emailed once.
    let past_due = subscription("sub_1", "cus_acme", "past_due", "price_team_monthly_local", t0);
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/v1/subscriptions/sub_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(past_due.clone()))
        .with_priority(1)
        .mount(&stripe)
        .await;
    let failed = event("evt_failed", "invoice.payment_failed", t0 + 10, invoice("in_1", "cus_acme", "sub_1"));
    assert_eq!(post_event(&app, &failed, SECRET).await.0, 200);
    let b = until(&app, &ada, &acme, |b| b["subscription"]["status"] == "past_due").await;
    assert_eq!(b["entitlements"]["plan"], "team");
    let mail = app.wait_email("ada@example.com", "49.00 USD").await;
    assert!(mail.contains(&format!("/accounts/{acme}/billing")), "the email links to billing");
    let dunned_bob = std::fs::read_dir(app.outbox())
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .any(|t| t.contains("To: bob@example.com") && t.contains("49.00 USD"));
    assert!(!dunned_bob, "plain members are not dunned");

    // Stripe gives up: unpaid, back to free.
    let unpaid = event(
        "evt_unpaid",
        "customer.subscription.updated",
        t0 + 20,
        subscription("sub_1", "cus_acme", "unpaid", "price_team_monthly_local", t0),
    );
    assert_eq!(post_event(&app, &unpaid, SECRET).await.0, 200);
    let b = until(&app, &ada, &acme, |b| b["subscription"]["status"] == "unpaid").await;
    assert_eq!(b["entitlements"]["plan"], "free");

    // Back on the free plan, its seat limit (3) holds at invite time.
    let path = format!("/accounts/{acme}/invitations");
    assert_eq!(app.call("POST", &path, Some(&ada), Some(json!({"email": "c@example.com"}))).await.0, 201);
    let (status, body) = app.call("POST", &path, Some(&ada), Some(json!({"email": "d@example.com"}))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("seat_limit")));

    // An event for a customer nobody owns is acknowledged and recorded as such.
    let stranger = event(
        "evt_stranger",
        "customer.subscription.updated",
        t0 + 30,
        subscription("sub_x", "cus_nobody", "active", "price_team_monthly_local", t0),
    );
    assert_eq!(post_event(&app, &stranger, SECRET).await.0, 200);
    testkit::eventually("the stranger's event to be marked unmatched", || async {
        let entry = store.get(&shared::keys::stripe_event("evt_stranger")).await.unwrap().unwrap();
        (entry.data["status"] == "unmatched").then_some(())
    })
    .await;
    stripe.verify().await;
}

/// A local stack and a Stripe double, with Ada owning an account on an active team plan.
async fn subscribed(customer: &str, sub: &str) -> (MockServer, TestApp, String, AccountId, Value) {
    let stripe = MockServer::start().await;
    let app = app_with(&stripe).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (_, account) = app.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    let acme: AccountId = account["id"].as_str().unwrap().parse().unwrap();
    let s = &app.stack.services;
    events::link_customer(&s.billing(), customer, acme).await.unwrap();
    let now = s.clock.now_secs();
    let active = subscription(sub, customer, "active", "price_team_monthly_local", now - 100);
    shared::billing::snapshot::apply_snapshot(
        &s.billing(),
        acme,
        &serde_json::from_value(active.clone()).unwrap(),
        now - 50,
        "evt_seed",
    )
    .await
    .unwrap();
    (stripe, app, ada, acme, active)
}

#[tokio::test]
async fn plan_changes_cancel_and_resume_send_exactly_the_right_requests() {
    let (stripe, app, ada, acme, _) = subscribed("cus_acme", "sub_1").await;
    let now = app.stack.services.clock.now_secs();
    let path_of = |what: &str| format!("/accounts/{acme}/billing/{what}");

    // Upgrade: at once, prorated, with an idempotency key.
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_1"))
        .and(header_exists("idempotency-key"))
        .and(body_string_contains("items[0][id]=si_sub_1"))
        .and(body_string_contains("items[0][price]=price_business_monthly_local"))
        .and(body_string_contains("proration_behavior=always_invoice"))
        .respond_with(ResponseTemplate::new(200).set_body_json(subscription(
            "sub_1",
            "cus_acme",
            "active",
            "price_business_monthly_local",
            now - 100,
        )))
        .expect(1)
        .mount(&stripe)
        .await;
    let (status, b) = app
        .call("POST", &path_of("change-plan"), Some(&ada), Some(json!({"plan": "business", "interval": "monthly"})))
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["entitlements"]["plan"], "business");
    let (status, body) = app
        .call("POST", &path_of("change-plan"), Some(&ada), Some(json!({"plan": "business", "interval": "monthly"})))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("same_plan")));

    // Downgrade: a schedule from the subscription, then its two phases.
    let mut schedule = fixture("subscription_schedule");
    schedule["id"] = json!("sub_sched_1");
    Mock::given(method("POST"))
        .and(path("/v1/subscription_schedules"))
        .and(header_exists("idempotency-key"))
        .and(body_string_contains("from_subscription=sub_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(schedule.clone()))
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/subscription_schedules/sub_sched_1"))
        .and(header_exists("idempotency-key"))
        .and(body_string_contains("phases[1][items][0][price]=price_starter_monthly_local"))
        .and(body_string_contains("end_behavior=release"))
        .respond_with(ResponseTemplate::new(200).set_body_json(schedule))
        .expect(1)
        .mount(&stripe)
        .await;
    let (status, b) = app
        .call("POST", &path_of("change-plan"), Some(&ada), Some(json!({"plan": "starter", "interval": "monthly"})))
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["subscription"]["pending_plan_id"], "starter");
    assert_eq!(b["entitlements"]["plan"], "business", "a downgrade waits for the period end");

    // Cancel at period end, then resume.
    for (what, flag) in [("cancel", "true"), ("resume", "false")] {
        let mut answer = subscription("sub_1", "cus_acme", "active", "price_business_monthly_local", now - 100);
        answer["cancel_at_period_end"] = json!(flag == "true");
        Mock::given(method("POST"))
            .and(path("/v1/subscriptions/sub_1"))
            .and(header_exists("idempotency-key"))
            .and(body_string_contains(format!("cancel_at_period_end={flag}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .expect(1)
            .mount(&stripe)
            .await;
        let (status, b) = app.call("POST", &path_of(what), Some(&ada), None).await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["subscription"]["cancel_at_period_end"], flag == "true");
    }
    stripe.verify().await;
}

/// The lifecycle: trial → active → past due (a failed payment) → active on a bigger plan → canceled.
fn lifecycle(customer: &str, base: i64) -> Vec<Value> {
    let sub = |status: &str, price: &str| subscription("sub_life", customer, status, price, base);
    vec![
        event("evt_1", "customer.subscription.created", base + 1, sub("trialing", "price_team_monthly_local")),
        event("evt_2", "customer.subscription.trial_will_end", base + 2, sub("trialing", "price_team_monthly_local")),
        event("evt_3", "customer.subscription.updated", base + 3, sub("active", "price_team_monthly_local")),
        event("evt_4", "invoice.payment_failed", base + 4, invoice("in_life", customer, "sub_life")),
        event("evt_5", "customer.subscription.updated", base + 5, sub("past_due", "price_team_monthly_local")),
        event("evt_6", "customer.subscription.updated", base + 6, sub("active", "price_business_yearly_local")),
        event("evt_7", "customer.subscription.deleted", base + 7, sub("canceled", "price_business_yearly_local")),
    ]
}

/// An account with an owner who receives billing email.
async fn owned_account(s: &shared::services::Services, customer: &str) -> AccountId {
    use shared::auth::users::{self, User};
    use shared::store::Put;
    let account = AccountId::new();
    let email = shared::mail::EmailAddress::parse(&format!("owner-{customer}@example.com")).unwrap();
    let owner = User::new(email, true, None, String::new(), 0);
    let user = owner.id;
    assert!(users::create(s.store.as_ref(), &owner).await.unwrap());
    let m = shared::tenancy::Membership {
        account_id: account,
        user_id: user,
        role: shared::tenancy::Role::Owner,
        joined_at_ms: 0,
    };
    s.store.put(Put::new(shared::tenancy::membership_item(&m).unwrap())).await.unwrap();
    events::link_customer(&s.billing(), customer, account).await.unwrap();
    account
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    // Heap's algorithm.
    let mut a: Vec<usize> = (0..n).collect();
    let mut out = vec![a.clone()];
    let mut c = vec![0; n];
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                a.swap(0, i)
            } else {
                a.swap(c[i], i)
            }
            out.push(a.clone());
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    out
}

#[tokio::test]
async fn every_order_and_duplication_of_a_lifecycle_ends_in_the_in_order_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = testkit::services::services(dir.path(), &[]).await;
    let base = 1_800_000_000;
    let project = |st: &shared::billing::BillingState| {
        (st.status, st.plan_id.clone(), st.interval, st.subscription_id.clone(), st.entitlements.clone())
    };

    // The in-order run.
    let account = owned_account(&s, "cus_0").await;
    for e in lifecycle("cus_0", base) {
        let e: StripeEvent = serde_json::from_value(e).unwrap();
        shared::billing::apply::apply(&s.billing(), None, &e).await.unwrap();
    }
    let (expected, _) = shared::billing::state(s.store.as_ref(), account).await.unwrap();
    assert_eq!(expected.status, Some(SubscriptionStatus::Canceled));
    assert_eq!(expected.entitlements.as_ref().unwrap().plan, "free");
    // Each transition is one product event for the customer-success layer, at Stripe's time.
    let events = shared::product_events::recent(s.store.as_ref(), account, 50).await.unwrap();
    let mut seen: Vec<(&str, i64)> = events.iter().map(|e| (e.name.as_str(), e.at_ms / 1000 - base)).collect();
    seen.sort_by_key(|(_, at)| *at);
    assert_eq!(
        seen,
        [
            ("trial.started", 1),
            ("subscription.converted", 3),
            ("payment.failed", 5),
            ("plan.changed", 6),
            ("subscription.cancelled", 7)
        ],
        "{events:?}"
    );
    let converted = events.iter().find(|e| e.name == "subscription.converted").unwrap();
    assert_eq!(converted.properties["from_trial"], true);
    let changed = events.iter().find(|e| e.name == "plan.changed").unwrap();
    assert_eq!(
        (changed.properties["from"].as_str(), changed.properties["to"].as_str()),
        (Some("team"), Some("business"))
    );

    // Every ordering of the six subscription events (720), each with the first two delivered
    // twice more at the end; the payment failure rides along at a fixed place.
    let mut runs = 0;
    for (n, order) in permutations(6).into_iter().enumerate() {
        let customer = format!("cus_{}", n + 1);
        let account = owned_account(&s, &customer).await;
        let all = lifecycle(&customer, base);
        let subs: Vec<&Value> = all.iter().filter(|e| e["type"] != "invoice.payment_failed").collect();
        let mut sequence: Vec<Value> = order.iter().map(|i| subs[*i].clone()).collect();
        sequence.insert(n % 7, all[3].clone());
        sequence.push(sequence[0].clone());
        sequence.push(sequence[1].clone());
        for e in &sequence {
            let e: StripeEvent = serde_json::from_value(e.clone()).unwrap();
            shared::billing::apply::apply(&s.billing(), None, &e).await.unwrap();
        }
        let (got, _) = shared::billing::state(s.store.as_ref(), account).await.unwrap();
        assert_eq!(project(&got), project(&expected), "order {order:?}");
        runs += 1;
    }
    assert_eq!(runs, 720);

    // No side effect twice: each email job key once on the queue, and no entitlement change
    // recorded for a duplicate (every change moves to a different plan).
    let queue = s.queues.get(shared::config::QueueName::Email);
    let mut keys = std::collections::HashMap::<String, usize>::new();
    loop {
        let batch = queue.receive(10, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            let env: shared::jobs::Envelope = serde_json::from_str(&m.body).unwrap();
            *keys.entry(env.idempotency_key).or_default() += 1;
            queue.ack(&m.receipt).await.unwrap();
        }
    }
    assert!(!keys.is_empty());
    assert!(keys.values().all(|n| *n == 1), "an email was queued twice: {keys:?}");
    let audit = shared::audit::export_json_lines(s.store.as_ref(), &format!("account:{account}")).await.unwrap();
    let changes: Vec<Value> = audit.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect();
    assert!(changes.iter().all(|c| c["detail"]["from"] != c["detail"]["to"]), "{changes:?}");
}

#[tokio::test]
async fn reconciliation_repairs_drift_from_stripe() {
    let stripe = MockServer::start().await;
    let app = app_with(&stripe).await;
    let s = &app.stack.services;
    let account = AccountId::new();
    events::link_customer(&s.billing(), "cus_drift", account).await.unwrap();
    let now = s.clock.now_secs();
    let active = subscription("sub_d", "cus_drift", "active", "price_team_monthly_local", now - 1000);
    shared::billing::snapshot::apply_snapshot(
        &s.billing(),
        account,
        &serde_json::from_value(active).unwrap(),
        now - 500,
        "evt_old",
    )
    .await
    .unwrap();
    // Stripe canceled it, and the webhook never arrived.
    let canceled = subscription("sub_d", "cus_drift", "canceled", "price_team_monthly_local", now - 1000);
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions"))
        .and(wiremock::matchers::query_param("customer", "cus_drift"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [canceled], "has_more": false})),
        )
        .mount(&stripe)
        .await;
    let client = shared::billing::stripe::StripeClient::from_config(&s.config.billing).unwrap().unwrap();
    let repairs = shared::billing::reconcile::reconcile(&s.billing(), &client).await.unwrap();
    assert_eq!(repairs.len(), 1);
    let (state, _) = shared::billing::state(s.store.as_ref(), account).await.unwrap();
    assert_eq!(state.status, Some(SubscriptionStatus::Canceled));
    assert_eq!(state.entitlements.unwrap().plan, "free");
    // Nothing left to repair.
    assert!(shared::billing::reconcile::reconcile(&s.billing(), &client).await.unwrap().is_empty());
    let _ = Arc::new(());
}

#[tokio::test]
async fn deleting_an_account_cancels_its_subscription_at_the_period_end() {
    let (stripe, app, ada, acme, active) = subscribed("cus_del", "sub_del").await;
    let s = &app.stack.services;
    let mut ending = active.clone();
    ending["cancel_at_period_end"] = json!(true);
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_del"))
        .and(header_exists("idempotency-key"))
        .and(body_string_contains("cancel_at_period_end=true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ending))
        .expect(1)
        .mount(&stripe)
        .await;
    assert_eq!(app.call("DELETE", &format!("/accounts/{acme}"), Some(&ada), None).await.0, 200);
    let marker = shared::keys::pending_cancellation(acme);
    testkit::eventually("the cancellation to happen", || async {
        s.store.get(&marker).await.unwrap().is_none().then_some(())
    })
    .await;
    let (state, _) = shared::billing::state(s.store.as_ref(), acme).await.unwrap();
    assert!(state.cancel_at_period_end);
    // Restored within the period: the owner can resume the subscription.
    assert_eq!(app.call("POST", &format!("/accounts/{acme}/restore"), Some(&ada), None).await.0, 200);
    stripe.verify().await;
}

#[tokio::test]
async fn the_plan_comes_from_the_item_whose_price_is_in_the_catalogue_wherever_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let s = testkit::services::services(dir.path(), &[]).await;
    let account = owned_account(&s, "cus_addon").await;
    // A metered add-on first, the plan's price second.
    let mut sub = subscription("sub_addon", "cus_addon", "active", "price_team_monthly_local", 1_800_000_000);
    let plan_item = sub["items"]["data"][0].clone();
    let mut addon = plan_item.clone();
    addon["id"] = json!("si_metered");
    addon["price"]["id"] = json!("price_api_calls_metered");
    addon["quantity"] = Value::Null;
    sub["items"]["data"] = json!([addon, plan_item]);
    let e = event("evt_addon", "customer.subscription.created", 1_800_000_000, sub.clone());
    let e: StripeEvent = serde_json::from_value(e).unwrap();
    shared::billing::apply::apply(&s.billing(), None, &e).await.unwrap();
    let (state, _) = shared::billing::state(s.store.as_ref(), account).await.unwrap();
    assert_eq!(state.plan_id.as_deref(), Some("team"), "a paying customer is not stored as free");
    assert_eq!(state.entitlements.as_ref().unwrap().plan, "team");
    assert_eq!(state.item_id.as_deref(), Some("si_sub_addon"), "seat syncs and plan changes touch the plan's item");
    assert_eq!(state.quantity, Some(1));

    // Two plan items (a set-up fault): reported, and the higher-ranked plan counts, not the first.
    let mut both = sub.clone();
    let mut starter = both["items"]["data"][1].clone();
    starter["id"] = json!("si_starter");
    starter["price"]["id"] = json!("price_starter_monthly_local");
    both["items"]["data"] = json!([starter, sub["items"]["data"][1].clone()]);
    let e = event("evt_both", "customer.subscription.updated", 1_800_000_100, both);
    let e: StripeEvent = serde_json::from_value(e).unwrap();
    shared::billing::apply::apply(&s.billing(), None, &e).await.unwrap();
    let (state, _) = shared::billing::state(s.store.as_ref(), account).await.unwrap();
    assert_eq!(state.plan_id.as_deref(), Some("team"));
}

#[tokio::test]
async fn a_downgrade_keeps_every_add_on_and_changes_only_the_plans_item() {
    let (stripe, app, ada, acme, _) = subscribed("cus_addon", "sub_2").await;
    // The schedule's current phase: a metered add-on first, then the plan (team, monthly).
    let mut schedule = fixture("subscription_schedule");
    schedule["id"] = json!("sub_sched_2");
    let plan_item = schedule["phases"][0]["items"][0].clone();
    let mut addon = plan_item.clone();
    addon["price"] = json!("price_api_calls_metered");
    addon["quantity"] = Value::Null;
    let mut team = plan_item;
    team["price"] = json!("price_team_monthly_local");
    team["quantity"] = json!(3);
    schedule["phases"][0]["items"] = json!([addon, team]);
    Mock::given(method("POST"))
        .and(path("/v1/subscription_schedules"))
        .and(body_string_contains("from_subscription=sub_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(schedule.clone()))
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/subscription_schedules/sub_sched_2"))
        .and(body_string_contains("phases[0][items][0][price]=price_api_calls_metered"))
        .and(body_string_contains("phases[0][items][1][price]=price_team_monthly_local"))
        .and(body_string_contains("phases[0][items][1][quantity]=3"))
        .and(body_string_contains("phases[1][items][0][price]=price_api_calls_metered"))
        .and(body_string_contains("phases[1][items][1][price]=price_starter_monthly_local"))
        .and(body_string_contains("phases[1][items][1][quantity]=3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(schedule))
        .expect(1)
        .mount(&stripe)
        .await;
    let path = format!("/accounts/{acme}/billing/change-plan");
    let (status, b) =
        app.call("POST", &path, Some(&ada), Some(json!({"plan": "starter", "interval": "monthly"}))).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["subscription"]["pending_plan_id"], "starter");
    app.stack.stop().await;
}

#[tokio::test]
async fn two_snapshots_of_one_second_are_settled_by_stripe_not_by_event_ids() {
    let stripe = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let uri = stripe.uri();
    let s = testkit::services::services(dir.path(), &[("STRIPE_SECRET_KEY", "sk_test_123"), ("STRIPE_API_BASE", &uri)])
        .await;
    let client = s.stripe.clone().unwrap();
    let t = 1_800_000_000;
    // Stripe says the subscription is past due; an `active` snapshot of the same second has
    // the id that sorts last, so a tie broken by ids would keep it.
    let truth = subscription("sub_tie", "cus_tie", "past_due", "price_team_monthly_local", t - 86_400);
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_tie"))
        .respond_with(ResponseTemplate::new(200).set_body_json(truth))
        .expect(2)
        .mount(&stripe)
        .await;
    for (customer, order) in [("cus_tie1", ["past_due", "active"]), ("cus_tie2", ["active", "past_due"])] {
        let account = owned_account(&s, customer).await;
        for status in order {
            let id = if status == "active" { "evt_z" } else { "evt_a" };
            let snapshot = subscription("sub_tie", customer, status, "price_team_monthly_local", t - 86_400);
            let e = event(id, "customer.subscription.updated", t, snapshot);
            let e: StripeEvent = serde_json::from_value(e).unwrap();
            shared::billing::apply::apply(&s.billing(), Some(&client), &e).await.unwrap();
        }
        let (state, _) = shared::billing::state(s.store.as_ref(), account).await.unwrap();
        assert_eq!(state.status, Some(SubscriptionStatus::PastDue), "Stripe's own state, whatever the order");
    }
}
