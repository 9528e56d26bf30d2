//! Outbound webhook load harness (printed report, nothing asserted): what publishing costs
//! its caller, and how many signed deliveries per second the worker sustains to a fast
//! loopback receiver (fan-out, the signed POST through the guarded client, the attempt
//! record), on the embedded store and queues, the jobs queue drained in batches of 10 as
//! the Lambda event source hands them over. Run: `cargo bench -p testkit --bench webhooks`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::json;
use shared::config::QueueName;
use shared::queue::consumer::{Message, process_batch};
use shared::webhooks::{self, Event, NewEndpoint};

const EVENTS: usize = 1000;
const ENDPOINTS: usize = 4;

#[tokio::main]
async fn main() {
    // The receiver: answers 204 at once, counting what it got.
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let receiver = axum::Router::new().route(
        "/hook/{n}",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let s = testkit::services::services(dir.path(), &[("GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK", "true")]).await;
    let account = shared::id::AccountId::new();
    for n in 0..ENDPOINTS {
        let new = NewEndpoint {
            url: format!("http://{addr}/hook/{n}"),
            description: String::new(),
            event_types: vec![],
            enabled: true,
        };
        webhooks::create(s.store.as_ref(), account, new, s.clock.now_ms()).await.unwrap();
    }

    // Publishing: what the caller waits for (one queue send, and the job's state record).
    let started = Instant::now();
    for i in 0..EVENTS {
        let event =
            Event::new("project.created", format!("project-created-{i}"), s.clock.now_ms(), json!({"project_id": i}));
        webhooks::publish(&s.jobs(), account, &event).await.unwrap();
    }
    let publish = started.elapsed();

    // Delivery: the worker drains the jobs queue (fan-out jobs, then the deliveries they queue).
    let handler = worker::handler(s.clone());
    let queue = s.queues.get(QueueName::Jobs);
    let started = Instant::now();
    loop {
        let batch = queue.receive(10, std::time::Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let messages: Vec<Message> = batch.iter().map(Message::from).collect();
        let failed = process_batch(handler.as_ref(), &messages, false).await;
        assert!(failed.is_empty(), "{failed:?}");
        for m in &batch {
            queue.ack(&m.receipt).await.unwrap();
        }
    }
    let deliver = started.elapsed();
    let delivered = received.load(Ordering::Relaxed);
    assert_eq!(delivered, EVENTS * ENDPOINTS, "every message reached every endpoint once");
    println!(
        "webhooks/publish: {EVENTS} events in {:.2} s = {:.0} µs per publish",
        publish.as_secs_f64(),
        publish.as_micros() as f64 / EVENTS as f64
    );
    println!(
        "webhooks/deliver: {EVENTS} events to {ENDPOINTS} endpoints, {delivered} signed deliveries (and {EVENTS} fan-outs) in {:.2} s = {:.0} deliveries/s",
        deliver.as_secs_f64(),
        delivered as f64 / deliver.as_secs_f64()
    );
}
