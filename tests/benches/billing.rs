//! Billing load harness (printed report, nothing asserted): webhook ingest throughput
//! (signature check + ledger write + FIFO enqueue, through the full receiver router), one
//! request after another and with [`IN_FLIGHT`] at once (Stripe delivers concurrently), and
//! end-to-end events applied per second (the billing-events consumer draining the queue),
//! on the embedded store. Run: `cargo bench -p testkit --bench billing`.

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use shared::config::QueueName;
use shared::queue::consumer::{Message, process_batch};
use tower::ServiceExt as _;

const SECRET: &str = "whsec_bench";
const EVENTS: usize = 4000;
const CUSTOMERS: usize = 50;
/// Deliveries at once in the concurrent ingest run.
const IN_FLIGHT: usize = 8;

fn subscription(customer: &str, status: &str) -> Value {
    let path = format!("{}/data/stripe/subscription.json", env!("CARGO_MANIFEST_DIR"));
    let mut s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    s["id"] = json!(format!("sub_{customer}"));
    s["customer"] = json!(customer);
    s["status"] = json!(status);
    s["items"]["data"][0]["price"]["id"] = json!("price_team_monthly_local");
    s
}

/// Delivers one signed event to the receiver, as Stripe does at `now`; it must be accepted.
async fn deliver(app: axum::Router, now: i64, body: String) {
    let req = Request::post("/webhooks/stripe")
        .header("content-type", "application/json")
        .header("stripe-signature", shared::billing::webhook::header(SECRET, now, body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let s = testkit::services::services(dir.path(), &[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    for c in 0..CUSTOMERS {
        shared::billing::events::link_customer(&s.billing(), &format!("cus_{c}"), shared::id::AccountId::new())
            .await
            .unwrap();
    }
    let app = stripe_webhook::app(s.clone());
    let base = s.clock.now_secs() - 3600;
    let bodies: Vec<String> = (0..2 * EVENTS)
        .map(|i| {
            let status = if i % 3 == 0 { "past_due" } else { "active" };
            json!({"id": format!("evt_{i}"), "object": "event", "type": "customer.subscription.updated",
                   "created": base + i as i64, "data": {"object": subscription(&format!("cus_{}", i % CUSTOMERS), status)}})
            .to_string()
        })
        .collect();

    // Ingest: verify + ledger + enqueue, one request after another.
    let (sequential, concurrent) = bodies.split_at(EVENTS);
    let started = Instant::now();
    for body in sequential {
        deliver(app.clone(), s.clock.now_secs(), body.clone()).await;
    }
    let ingest = started.elapsed();
    // The same, IN_FLIGHT deliveries at once (other events: each is recorded once).
    let concurrent = std::sync::Arc::new(concurrent.to_vec());
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (app, clock, bodies, next) = (app.clone(), s.clock.clone(), concurrent.clone(), next.clone());
        running.spawn(async move {
            while let Some(body) = bodies.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                deliver(app.clone(), clock.now_secs(), body.clone()).await;
            }
        });
    }
    while let Some(worker) = running.join_next().await {
        worker.unwrap();
    }
    let ingest_concurrent = started.elapsed();

    // Apply: the consumer drains the FIFO queue in batches of 10.
    let handler = billing_events::handler(s.clone());
    let queue = s.queues.get(QueueName::Billing);
    let started = Instant::now();
    let mut applied = 0;
    loop {
        let batch = queue.receive(10, std::time::Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let messages: Vec<Message> = batch.iter().map(Message::from).collect();
        let failed = process_batch(handler.as_ref(), &messages, true).await;
        assert!(failed.is_empty());
        for m in &batch {
            queue.ack(&m.receipt).await.unwrap();
        }
        applied += batch.len();
    }
    let apply = started.elapsed();
    println!(
        "billing/webhook_ingest: {EVENTS} signed events in {:.2} s = {:.0} events/s ({:.0} µs each)",
        ingest.as_secs_f64(),
        EVENTS as f64 / ingest.as_secs_f64(),
        ingest.as_micros() as f64 / EVENTS as f64
    );
    println!(
        "billing/webhook_ingest_concurrent: {EVENTS} signed events, {IN_FLIGHT} at once, in {:.2} s = {:.0} events/s",
        ingest_concurrent.as_secs_f64(),
        EVENTS as f64 / ingest_concurrent.as_secs_f64()
    );
    println!(
        "billing/events_applied: {applied} events for {CUSTOMERS} customers in {:.2} s = {:.0} events/s",
        apply.as_secs_f64(),
        applied as f64 / apply.as_secs_f64()
    );
}
