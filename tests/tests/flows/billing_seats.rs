//! Per-seat pricing: the subscription's quantity follows the member count, synced by a job
//! when members join or leave (its own plan catalogue, from a file, in its own stack).

use serde_json::{Value, json};
use testkit::app::TestApp;
use wiremock::matchers::{body_string_contains, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn subscription(quantity: u64) -> Value {
    let path = format!("{}/data/stripe/subscription.json", env!("CARGO_MANIFEST_DIR"));
    let mut s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    s["id"] = json!("sub_seats");
    s["customer"] = json!("cus_seats");
    s["status"] = json!("active");
    s["items"]["data"][0]["id"] = json!("si_seats");
    s["items"]["data"][0]["price"]["id"] = json!("price_team_monthly_local");
    s["items"]["data"][0]["quantity"] = json!(quantity);
    s
}

async fn quantity_becomes(app: &TestApp, account: shared::id::AccountId, n: u64) {
    testkit::eventually(&format!("the quantity to become {n}"), || async {
        let (state, _) = shared::billing::state(app.stack.services.store.as_ref(), account).await.unwrap();
        (state.quantity == Some(n)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_subscription_quantity_follows_the_members() {
    let catalogue = shared::billing::DEFAULT_PLANS.replace("per_seat = false", "per_seat = true");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), catalogue).unwrap();
    let stripe = MockServer::start().await;
    for n in [2, 1] {
        Mock::given(method("POST"))
            .and(path("/v1/subscriptions/sub_seats"))
            .and(header_exists("idempotency-key"))
            .and(body_string_contains(format!("items[0][quantity]={n}")))
            .and(body_string_contains("proration_behavior=create_prorations"))
            .respond_with(ResponseTemplate::new(200).set_body_json(subscription(n)))
            .expect(1)
            .mount(&stripe)
            .await;
    }
    let plans_file = file.path().display().to_string();
    let app = TestApp::spawn(&[
        ("GROUNDWORK_PLANS_FILE", &plans_file),
        ("STRIPE_SECRET_KEY", "sk_test_123"),
        ("STRIPE_API_BASE", &stripe.uri()),
    ])
    .await;
    let s = &app.stack.services;
    assert!(s.plans.per_seat);
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let (_, account) = app.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    let acme: shared::id::AccountId = account["id"].as_str().unwrap().parse().unwrap();
    shared::billing::events::link_customer(&s.billing(), "cus_seats", acme).await.unwrap();
    let now = s.clock.now_secs();
    shared::billing::snapshot::apply_snapshot(
        &s.billing(),
        acme,
        &serde_json::from_value(subscription(1)).unwrap(),
        now - 10,
        "evt_seed",
    )
    .await
    .unwrap();

    let path = format!("/accounts/{acme}/invitations");
    app.call("POST", &path, Some(&ada), Some(json!({"email": "bob@example.com"}))).await;
    let token = app.token_from_email("bob@example.com", "invited you to").await;
    assert_eq!(app.call("POST", "/invitations/accept", Some(&bob), Some(json!({"token": token}))).await.0, 200);
    quantity_becomes(&app, acme, 2).await;
    assert_eq!(app.call("POST", &format!("/accounts/{acme}/leave"), Some(&bob), None).await.0, 204);
    quantity_becomes(&app, acme, 1).await;
    stripe.verify().await;
}
