//! The main journey (sign-up, verification, login, an account, an invitation accepted,
//! checkout, Stripe's webhook applied) under random store and queue faults ends in the
//! state it ends in without them:
//! routes answer 503 with `Retry-After` (never 500) and a retried request finishes what the
//! failed one started; consumers retry until each job has had its one effect. See
//! `testkit::faults` for the faults.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shared::clock::{Clock as _, ManualClock};
use testkit::app::{PASSWORD, TestApp, token_in};
use testkit::faults::{Chaos, chaotic, item_shapes};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_fault_journey";

fn fixture(name: &str) -> Value {
    let path = format!("{}/data/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Stripe's API as the journey needs it.
async fn stripe_double() -> MockServer {
    let server = MockServer::start().await;
    let mut customer = fixture("customer");
    customer["id"] = json!("cus_journey");
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(customer))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("checkout_session")))
        .mount(&server)
        .await;
    let mut sub = fixture("subscription");
    sub["id"] = json!("sub_journey");
    sub["customer"] = json!("cus_journey");
    sub["status"] = json!("active");
    sub["cancel_at_period_end"] = json!(false);
    sub["cancel_at"] = Value::Null;
    sub["items"]["data"][0]["price"]["id"] = json!("price_team_monthly_local");
    sub["items"]["data"][0]["quantity"] = json!(1);
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_journey"))
        .respond_with(ResponseTemplate::new(200).set_body_json(sub))
        .mount(&server)
        .await;
    server
}

/// A client that does what a 503 with `Retry-After` asks: tries again (sooner than asked,
/// to keep the test short). A 500 is never acceptable.
struct Client<'a> {
    app: &'a TestApp,
    retries: std::sync::atomic::AtomicU32,
}

impl Client<'_> {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        for _ in 0..200 {
            let (status, headers, answer) = self.app.call_full(method, path, token, body.clone()).await;
            assert_ne!(status, 500, "{method} {path}: {answer}");
            if status != 503 {
                return (status, answer);
            }
            assert!(headers.contains_key("retry-after"), "{method} {path}: a 503 says when to retry");
            assert_eq!(answer["code"], "unavailable", "{method} {path}: {answer}");
            self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{method} {path}: still 503 after 200 attempts");
    }

    /// Signs `email` up, proves it and logs in; returns the access token.
    async fn user(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": PASSWORD});
        assert_eq!(self.call("POST", "/auth/signup", None, Some(credentials.clone())).await.0, 202);
        let token = token_in(&self.app.wait_email(email, "Confirm your email address").await);
        // A 503 means nothing was done (the link still works); once done, nothing fails it.
        let (status, body) = self.call("POST", "/auth/verify-email", None, Some(json!({"token": token}))).await;
        assert_eq!(status, 200, "{body}");
        let (status, tokens) = self.call("POST", "/auth/login", None, Some(credentials)).await;
        assert_eq!(status, 200, "{tokens}");
        tokens["access_token"].as_str().unwrap().to_owned()
    }
}

/// What a journey leaves behind, without the ids and times it drew.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Grace's accounts and roles, Acme's members and roles, Acme's subscription and plan.
    accounts: Vec<(String, String)>,
    /// Emails sent: template and recipient, and how many.
    emails: BTreeMap<(String, String), usize>,
    items: BTreeMap<String, usize>,
}

async fn journey(app: &TestApp, clock: &ManualClock) -> Outcome {
    let client = Client { app, retries: 0.into() };
    let ada = client.user("ada@example.com").await;
    let (status, account) = client.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    assert_eq!(status, 201, "{account}");
    let acme = account["id"].as_str().unwrap().to_owned();

    let invite = json!({"email": "grace@example.com", "role": "admin"});
    let (status, body) = client.call("POST", &format!("/accounts/{acme}/invitations"), Some(&ada), Some(invite)).await;
    assert_eq!(status, 201, "{body}");
    let invitation = token_in(&app.wait_email("grace@example.com", "invited you to").await);
    let grace = client.user("grace@example.com").await;
    let (status, body) =
        client.call("POST", "/invitations/accept", Some(&grace), Some(json!({"token": invitation}))).await;
    assert_eq!(status, 200, "{body}");

    let choice = json!({"plan": "team", "interval": "monthly"});
    let (status, body) =
        client.call("POST", &format!("/accounts/{acme}/billing/checkout"), Some(&ada), Some(choice)).await;
    assert_eq!(status, 200, "{body}");

    // Stripe reports the completed checkout, retrying until it gets a 2xx as Stripe does.
    let mut session = fixture("checkout_session");
    session["customer"] = json!("cus_journey");
    session["subscription"] = json!("sub_journey");
    session["client_reference_id"] = json!(acme);
    let mut event = fixture("event");
    event["id"] = json!("evt_journey_checkout");
    event["type"] = json!("checkout.session.completed");
    event["created"] = json!(clock.now_secs());
    event["data"] = json!({"object": session});
    let raw = event.to_string();
    let mut delivered = false;
    for _ in 0..200 {
        let signature = shared::billing::webhook::header(SECRET, clock.now_secs(), raw.as_bytes());
        let res = app
            .client
            .post(format!("{}/webhooks/stripe", app.base))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        if status == 200 {
            delivered = true;
            break;
        }
        assert_eq!(status, 503, "the webhook: {:?}", res.text().await);
    }
    assert!(delivered, "the webhook was never accepted");
    let billing = testkit::eventually("the subscription to be applied", || async {
        let (_, b) = client.call("GET", &format!("/accounts/{acme}/billing"), Some(&ada), None).await;
        (b["subscription"]["status"] == "active").then_some(b)
    })
    .await;
    app.drain().await;

    let (_, list) = client.call("GET", "/accounts", Some(&grace), None).await;
    let mut accounts: Vec<(String, String)> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a["role"].as_str().unwrap().to_owned()))
        .collect();
    let (_, members) = client.call("GET", &format!("/accounts/{acme}/members"), Some(&ada), None).await;
    accounts.extend(
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned())),
    );
    accounts.sort();
    accounts.push((
        billing["subscription"]["status"].as_str().unwrap_or_default().to_owned(),
        billing["entitlements"]["plan"].as_str().unwrap_or_default().to_owned(),
    ));
    let mut emails = BTreeMap::new();
    for entry in std::fs::read_dir(app.outbox()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.trim_end_matches(".eml").splitn(3, '-');
        parts.next();
        if let (Some(template), Some(to)) = (parts.next(), parts.next()) {
            *emails.entry((template.to_owned(), to.to_owned())).or_default() += 1;
        }
    }
    let database = app.stack.services.config.data_dir.join(shared::services::EMBEDDED_DB_FILE);
    let items = item_shapes(&database)
        .into_iter()
        // Counters of the limiters and the audit trail record attempts, not outcomes: a
        // retried request is two attempts. A retried sign-up also mails one more
        // verification link (each sign-up gets one); the spare expires unused in 24 hours,
        // and would only answer "already verified".
        .filter(|(shape, _)| !shape.starts_with("RATE#") && !shape.contains("AUDIT") && !shape.starts_with("TOKEN#"))
        .collect();
    Outcome { accounts, emails, items }
}

async fn run(chaos: Option<(Arc<Chaos>, Arc<Chaos>)>) -> (Outcome, MockServer) {
    let stripe = stripe_double().await;
    let clock = ManualClock::at(shared::clock::SystemClock.now_ms());
    // Time runs fast, so that job retries (2 s, 4 s, 8 s...) and visibility timeouts pass.
    let ticking = clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ticking.advance_ms(500);
        }
    });
    let settings = [
        ("STRIPE_WEBHOOK_SECRET", SECRET.to_owned()),
        ("STRIPE_SECRET_KEY", "sk_test_123".to_owned()),
        ("STRIPE_API_BASE", stripe.uri()),
        ("GROUNDWORK_JOB_MAX_ATTEMPTS", "10".to_owned()),
    ];
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let background = chaos.as_ref().map(|(_, b)| Arc::clone(b));
    let app = TestApp::spawn_wrapped(&settings, Arc::new(clock.clone()), move |services, role| match &chaos {
        None => services,
        Some((routes, background)) => chaotic(services, if role == local::Role::Routes { routes } else { background }),
    })
    .await;
    // EventBridge at the fast clock's pace: the outbox relay, every minute of that clock.
    let services = match &background {
        Some(b) => chaotic(app.stack.services.clone(), b),
        None => app.stack.services.clone(),
    };
    let relay = local::schedules(&services)
        .into_iter()
        .find(|(s, _)| s.name == scheduled::RELAY_JOB_OUTBOX.name)
        .expect("the relay is scheduled")
        .1;
    let relay_clock = clock.clone();
    let relaying = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(2400)).await;
            let _ = relay.run(relay_clock.now_ms()).await;
        }
    });
    let outcome = journey(&app, &clock).await;
    ticker.abort();
    relaying.abort();
    app.stack.stop().await;
    (outcome, stripe)
}

#[tokio::test]
async fn the_main_journey_under_five_percent_faults_ends_as_it_does_without_them() {
    let (calm, _) = run(None).await;
    // One journey is a few hundred operations: several seeds, so that every kind of fault
    // lands somewhere. A seed replays the same faults, up to the order in which concurrent
    // work draws them.
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in 1..=8_u64 {
        let routes = Chaos::refusals_only(seed, 0.05);
        let background = Chaos::new(seed << 32, 0.05);
        let (stormy, stripe) = run(Some((Arc::clone(&routes), Arc::clone(&background)))).await;
        assert_eq!(stormy, calm, "seed {seed}: routes {:?}, background {:?}", routes.tally(), background.tally());
        // However often the checkout was retried, Stripe was asked to create the customer
        // under one idempotency key, so it made one.
        let keys: BTreeSet<String> = stripe
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/v1/customers")
            .filter_map(|r| r.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned))
            .collect();
        assert_eq!(keys.len(), 1, "seed {seed}: {keys:?}");
        for (kind, n) in routes.tally().into_iter().chain(background.tally()) {
            *seen.entry(kind).or_default() += n;
        }
    }
    eprintln!("faults injected over the runs: {seen:?}");
    for kind in [
        "store read unavailable",
        "store write throttled",
        "store write timed out after it applied",
        "queue ack failed after the message was handled",
    ] {
        assert!(seen.contains_key(kind), "no {kind:?} in any run: {seen:?}");
    }
}

#[tokio::test]
async fn one_fault_at_each_position_ends_as_it_does_without_it() {
    // Count the operations of a fault-free run through a chaos that injects nothing.
    let counting = Chaos::new(0, 0.0);
    let (calm, _) = run(Some((Arc::clone(&counting), Arc::clone(&counting)))).await;
    let seen = counting.seen();
    eprintln!("operations of one journey: {seen:?}");
    let writes = seen["store write"];
    let acks = seen["queue ack"];
    // A refused write at every fifth position of the run (routes' and consumers' alike:
    // the second write of a route, a transaction, a job's state...), and every failed
    // acknowledgement of a handled message.
    let mut scripts: Vec<(String, Arc<Chaos>)> = Vec::new();
    for n in (1..=writes).step_by(5) {
        scripts.push((format!("write {n} refused"), Chaos::nth_write_refused(n)));
    }
    for n in 1..=acks {
        scripts.push((format!("ack {n} failed"), Chaos::nth_ack_failed(n)));
    }
    for (what, chaos) in scripts {
        let (outcome, _) = run(Some((Arc::clone(&chaos), Arc::clone(&chaos)))).await;
        assert_eq!(outcome, calm, "{what}: {:?}", chaos.tally());
    }
}
