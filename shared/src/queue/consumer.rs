//! Consuming queues: one [`MessageHandler`] runs on Lambda (an SQS event, answered with
//! partial batch failures) and in the local stack (a polling loop over any [`Queue`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Queue, Received};

/// A message handed to a handler, whatever queue it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The queue's id for the message (stable across redeliveries).
    pub id: String,
    /// The handle of this delivery (to extend or shorten its visibility).
    pub receipt: String,
    /// The body as sent.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// The FIFO group, if any.
    pub group_id: Option<String>,
}

impl From<&Received> for Message {
    fn from(r: &Received) -> Self {
        Self {
            id: r.id.clone(),
            receipt: r.receipt.clone(),
            body: r.body.clone(),
            receive_count: r.receive_count,
            group_id: r.group_id.clone(),
        }
    }
}

/// Handles one message. It must be idempotent: a message can arrive twice, and out of order.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles `message`. An error leaves the message on the queue, to be received again
    /// after its visibility timeout and dead-lettered after too many receives.
    async fn handle(&self, message: &Message) -> anyhow::Result<()>;
}

/// Runs `handler` over a batch and returns the ids of the messages that failed (Lambda's
/// partial batch failure). A standard queue's messages are handled concurrently; a FIFO
/// queue's in order, and once a message of a group fails, the later messages of that group are
/// not handled and are reported failed too, so the group's order is kept.
pub async fn process_batch(handler: &dyn MessageHandler, messages: &[Message], fifo: bool) -> Vec<String> {
    if !fifo {
        // A standard queue promises no order: the batch's messages are handled together, so
        // one slow message (a webhook receiver taking its full timeout) does not hold up
        // the rest, nor the batch past the function's timeout.
        let results = futures_util::future::join_all(
            messages.iter().map(|m| crate::telemetry::error_tracking::scoped(handler.handle(m))),
        )
        .await;
        return messages
            .iter()
            .zip(results)
            .filter_map(|(m, result)| {
                let error = result.err()?;
                tracing::warn!(message_id = %m.id, receive_count = m.receive_count, error = format!("{error:#}"), "message handling failed");
                Some(m.id.clone())
            })
            .collect();
    }
    let mut failed = Vec::new();
    let mut failed_groups = std::collections::HashSet::new();
    for m in messages {
        if fifo && m.group_id.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            failed.push(m.id.clone());
            continue;
        }
        if let Err(error) = crate::telemetry::error_tracking::scoped(handler.handle(m)).await {
            tracing::warn!(message_id = %m.id, receive_count = m.receive_count, error = format!("{error:#}"), "message handling failed");
            if let Some(g) = &m.group_id {
                failed_groups.insert(g.clone());
            }
            failed.push(m.id.clone());
        }
    }
    failed
}

/// Consumes `queue` with `handler` until `shutdown` turns true: receives up to ten messages,
/// handles them, acknowledges the ones that succeeded. Failed ones come back after the
/// visibility timeout. This is the local stack's stand-in for Lambda's SQS event source.
pub async fn run_consumer(
    queue: Arc<dyn Queue>,
    handler: Arc<dyn MessageHandler>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(queue = queue.name(), "consumer started");
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        let batch = tokio::select! {
            r = queue.receive(10, Duration::from_secs(1)) => r,
            _ = shutdown.changed() => break,
        };
        let batch = match batch {
            Ok(b) => {
                backoff = Duration::from_millis(100);
                b
            }
            Err(error) => {
                tracing::error!(queue = queue.name(), error = format!("{error:#}"), "receive failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let messages: Vec<Message> = batch.iter().map(Message::from).collect();
        let failed = process_batch(handler.as_ref(), &messages, queue.is_fifo()).await;
        for r in batch.iter().filter(|r| !failed.contains(&r.id)) {
            if let Err(error) = queue.ack(&r.receipt).await {
                tracing::error!(queue = queue.name(), message_id = %r.id, error = format!("{error:#}"), "ack failed");
            }
        }
    }
    tracing::info!(queue = queue.name(), "consumer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct FailOn(&'static str, Mutex<Vec<String>>);

    #[async_trait]
    impl MessageHandler for FailOn {
        async fn handle(&self, m: &Message) -> anyhow::Result<()> {
            self.1.lock().unwrap().push(m.body.clone());
            if m.body == self.0 { anyhow::bail!("boom") } else { Ok(()) }
        }
    }

    fn msg(id: &str, group: Option<&str>) -> Message {
        Message {
            id: id.into(),
            receipt: id.into(),
            body: id.into(),
            receive_count: 1,
            group_id: group.map(Into::into),
        }
    }

    #[tokio::test]
    async fn standard_batches_fail_only_the_failing_message() {
        let h = FailOn("b", Mutex::default());
        let failed = process_batch(&h, &[msg("a", None), msg("b", None), msg("c", None)], false).await;
        assert_eq!(failed, ["b"]);
        assert_eq!(*h.1.lock().unwrap(), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn fifo_batches_stop_a_group_at_its_first_failure() {
        let h = FailOn("b", Mutex::default());
        let batch = [msg("a", Some("g1")), msg("b", Some("g1")), msg("c", Some("g2")), msg("d", Some("g1"))];
        let failed = process_batch(&h, &batch, true).await;
        assert_eq!(failed, ["b", "d"]);
        assert_eq!(*h.1.lock().unwrap(), ["a", "b", "c"]);
    }
}
