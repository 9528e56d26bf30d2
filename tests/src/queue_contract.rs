//! The queue contract: what every [`Queue`] adapter must do. Queues under test have a
//! one-second visibility timeout and dead-letter after two receives.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use shared::queue::{Outgoing, Queue, QueueError};

/// The visibility timeout of every queue under test.
pub const VISIBILITY: Duration = Duration::from_secs(1);
/// Receives before a message is dead-lettered.
pub const MAX_RECEIVES: u32 = 2;

/// A fresh, empty queue for one test.
pub struct QueueFixture {
    /// The queue under test.
    pub queue: Arc<dyn Queue>,
    /// Whatever must live as long as the queue.
    pub guard: Box<dyn Any + Send>,
}

/// Instantiates every contract case for one adapter. `$make` is an async closure-like
/// expression taking `fifo: bool` and producing a [`QueueFixture`].
#[macro_export]
macro_rules! queue_contract_suite {
    ($make:expr) => {
        $crate::queue_contract_suite!(@cases $make;
            sent_messages_are_received_once_acked(false),
            unacked_messages_come_back_after_the_visibility_timeout(false),
            visibility_can_be_changed(false),
            delayed_messages_stay_hidden(false),
            receive_waits_for_a_message(false),
            messages_received_too_often_are_dead_lettered_and_redriven(false),
            bad_messages_are_refused(false),
            the_backlog_counts_the_queue_and_its_dead_letters(false),
            fifo_keeps_group_order_and_deduplicates(true),
            fifo_blocks_a_group_while_a_message_is_in_flight(true),
            fifo_dead_letters_are_redriven(true),
        );
    };
    (@cases $make:expr; $($case:ident($fifo:expr)),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fixture: $crate::queue_contract::QueueFixture = ($make)($fifo).await;
                $crate::queue_contract::$case(&fixture).await;
            }
        )*
    };
}

async fn receive_all(q: &dyn Queue, want: usize, within: Duration) -> Vec<shared::queue::Received> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(q.receive(10, Duration::from_millis(500)).await.unwrap());
    }
    got
}

/// A message is received with its body and, once acknowledged, never again.
pub async fn sent_messages_are_received_once_acked(f: &QueueFixture) {
    let q = f.queue.as_ref();
    let mut sent = BTreeSet::new();
    for i in 0..3 {
        q.send(Outgoing::new(format!("{{\"n\":{i}}}"))).await.unwrap();
        sent.insert(format!("{{\"n\":{i}}}"));
    }
    let got = receive_all(q, 3, Duration::from_secs(5)).await;
    assert_eq!(got.iter().map(|m| m.body.clone()).collect::<BTreeSet<_>>(), sent);
    for m in &got {
        assert_eq!(m.receive_count, 1);
        q.ack(&m.receipt).await.unwrap();
    }
    tokio::time::sleep(VISIBILITY + Duration::from_millis(300)).await;
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

/// A message not acknowledged within the visibility timeout is delivered again.
pub async fn unacked_messages_come_back_after_the_visibility_timeout(f: &QueueFixture) {
    let q = f.queue.as_ref();
    let id = q.send(Outgoing::new("again")).await.unwrap();
    let first = receive_all(q, 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, id);
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty(), "hidden while in flight");
    let second = receive_all(q, 1, Duration::from_secs(5)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, id);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);
    q.ack(&second[0].receipt).await.unwrap();
}

/// A received message can be made visible again at once, or hidden for longer.
pub async fn visibility_can_be_changed(f: &QueueFixture) {
    let q = f.queue.as_ref();
    q.send(Outgoing::new("v")).await.unwrap();
    let m = receive_all(q, 1, Duration::from_secs(5)).await.pop().unwrap();
    q.change_visibility(&m.receipt, Duration::ZERO).await.unwrap();
    let again = receive_all(q, 1, Duration::from_secs(2)).await.pop().expect("visible again");
    q.change_visibility(&again.receipt, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty(), "extended visibility holds");
    q.ack(&again.receipt).await.unwrap();
}

/// A delayed message is not delivered before its delay.
pub async fn delayed_messages_stay_hidden(f: &QueueFixture) {
    let q = f.queue.as_ref();
    q.send(Outgoing::new("later").delayed(Duration::from_secs(2))).await.unwrap();
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
    let got = receive_all(q, 1, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "later");
}

/// A long poll returns as soon as a message arrives.
pub async fn receive_waits_for_a_message(f: &QueueFixture) {
    let q = Arc::clone(&f.queue);
    let waiter = tokio::spawn(async move { q.receive(1, Duration::from_secs(5)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.queue.send(Outgoing::new("wake")).await.unwrap();
    let got = waiter.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "wake");
}

/// A message received more than the allowed times moves to the dead-letter queue; a
/// redrive puts it back, receivable afresh.
pub async fn messages_received_too_often_are_dead_lettered_and_redriven(f: &QueueFixture) {
    let q = f.queue.as_ref();
    let id = q.send(Outgoing::new("poison")).await.unwrap();
    for attempt in 1..=MAX_RECEIVES {
        let m = receive_all(q, 1, Duration::from_secs(5)).await;
        assert_eq!(m.len(), 1, "attempt {attempt}");
        assert_eq!(m[0].receive_count, attempt);
    }
    // The next receive finds it over the limit and dead-letters it.
    tokio::time::sleep(VISIBILITY + Duration::from_millis(200)).await;
    let none = receive_all(q, 1, Duration::from_secs(2)).await;
    assert!(none.is_empty(), "dead-lettered, not delivered: {none:?}");
    let mut dead = Vec::new();
    for _ in 0..10 {
        dead = q.dead_letters(10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].id, id, "a dead letter keeps its message id");
    assert_eq!(q.dead_letters(10).await.unwrap().len(), 1, "listing does not consume");
    assert_eq!(q.redrive(10).await.unwrap(), 1);
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    let back = receive_all(q, 1, Duration::from_secs(5)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "poison");
    assert_eq!(back[0].receive_count, 1);
    q.ack(&back[0].receipt).await.unwrap();
}

/// The backlog counts what waits, what is being handled, and what is parked; an
/// acknowledged message leaves it.
pub async fn the_backlog_counts_the_queue_and_its_dead_letters(f: &QueueFixture) {
    use shared::queue::Backlog;
    let q = f.queue.as_ref();
    assert_eq!(q.backlog().await.unwrap(), Backlog::default());
    q.send(Outgoing::new("one")).await.unwrap();
    q.send(Outgoing::new("two")).await.unwrap();
    q.send_to_dead_letters("parked", None).await.unwrap();
    assert_eq!(q.backlog().await.unwrap(), Backlog { messages: 2, dead_letters: 1 });
    let got = receive_all(q, 1, Duration::from_secs(5)).await;
    assert_eq!(q.backlog().await.unwrap().messages, 2, "a message being handled still counts");
    q.ack(&got[0].receipt).await.unwrap();
    assert_eq!(q.backlog().await.unwrap(), Backlog { messages: 1, dead_letters: 1 });
}

/// Empty, oversized and mis-addressed messages are refused.
pub async fn bad_messages_are_refused(f: &QueueFixture) {
    let q = f.queue.as_ref();
    let invalid = |r: Result<String, QueueError>| matches!(r, Err(QueueError::Invalid(_)));
    assert!(invalid(q.send(Outgoing::new("")).await));
    assert!(invalid(q.send(Outgoing::new("x".repeat(300 * 1024))).await));
    assert!(invalid(q.send(Outgoing::new("x").delayed(Duration::from_secs(3600))).await));
    assert!(q.receive(0, Duration::ZERO).await.is_err());
    assert!(q.receive(11, Duration::ZERO).await.is_err());
}

/// A FIFO queue delivers each group in order and drops duplicates within the window.
pub async fn fifo_keeps_group_order_and_deduplicates(f: &QueueFixture) {
    let q = f.queue.as_ref();
    assert!(q.is_fifo());
    assert!(matches!(q.send(Outgoing::new("no group")).await, Err(QueueError::Invalid(_))));
    for i in 0..4 {
        q.send(Outgoing::new(format!("a{i}")).fifo("A", format!("a{i}"))).await.unwrap();
        q.send(Outgoing::new(format!("b{i}")).fifo("B", format!("b{i}"))).await.unwrap();
    }
    // A duplicate within the window is accepted, and never delivered (checked below).
    q.send(Outgoing::new("a0-again").fifo("A", "a0")).await.unwrap();
    let mut order_a = Vec::new();
    let mut order_b = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while order_a.len() + order_b.len() < 8 && tokio::time::Instant::now() < deadline {
        for m in q.receive(10, Duration::from_millis(500)).await.unwrap() {
            match m.group_id.as_deref() {
                Some("A") => order_a.push(m.body.clone()),
                Some("B") => order_b.push(m.body.clone()),
                other => panic!("unexpected group {other:?}"),
            }
            q.ack(&m.receipt).await.unwrap();
        }
    }
    assert_eq!(order_a, ["a0", "a1", "a2", "a3"]);
    assert_eq!(order_b, ["b0", "b1", "b2", "b3"]);
    assert!(q.receive(10, Duration::from_millis(200)).await.unwrap().is_empty(), "duplicate was dropped");
}

/// While a message of a group is in flight, later messages of that group wait.
pub async fn fifo_blocks_a_group_while_a_message_is_in_flight(f: &QueueFixture) {
    let q = f.queue.as_ref();
    q.send(Outgoing::new("g1").fifo("G", "1")).await.unwrap();
    q.send(Outgoing::new("g2").fifo("G", "2")).await.unwrap();
    let first = q.receive(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body, "g1");
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty(), "g2 waits for g1");
    q.ack(&first[0].receipt).await.unwrap();
    let second = receive_all(q, 1, Duration::from_secs(3)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].body, "g2");
    q.ack(&second[0].receipt).await.unwrap();
}

/// FIFO dead letters keep their group through a redrive.
pub async fn fifo_dead_letters_are_redriven(f: &QueueFixture) {
    let q = f.queue.as_ref();
    q.send(Outgoing::new("bad").fifo("P", "bad-1")).await.unwrap();
    for _ in 0..MAX_RECEIVES {
        assert_eq!(receive_all(q, 1, Duration::from_secs(5)).await.len(), 1);
    }
    tokio::time::sleep(VISIBILITY + Duration::from_millis(200)).await;
    assert!(receive_all(q, 1, Duration::from_secs(2)).await.is_empty());
    let mut moved = 0;
    for _ in 0..10 {
        moved = q.redrive(10).await.unwrap();
        if moved > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(moved, 1);
    let back = receive_all(q, 1, Duration::from_secs(5)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].group_id.as_deref(), Some("P"));
    q.ack(&back[0].receipt).await.unwrap();
}
