//! The Stripe event ledger: every event the webhook receiver accepted, at
//! `STRIPE_EVENT#<id>` / `EVENT`, with its payload and what became of it
//! ([`LedgerStatus`]); failed ones are indexed for replay.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Billing;
use super::events::StripeEvent;
use crate::keys;
use crate::store::{Condition, Item, Put, StoreError, Update};

/// What became of a ledger event. Moves forward only: `received` → `queued` → one of the
/// outcomes (a replay sets `queued` again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    /// Recorded by the receiver, not yet queued.
    Received,
    /// On the billing queue.
    Queued,
    /// Its effect is in the billing state.
    Applied,
    /// Nothing to do (an event type not acted on, a stale snapshot).
    Ignored,
    /// No account owns its customer.
    Unmatched,
    /// It could not be applied; replay it after a fix.
    Failed,
}

impl LedgerStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Queued => "queued",
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Unmatched => "unmatched",
            Self::Failed => "failed",
        }
    }
}

/// Records a delivered event as `received`; `Ok(false)` when it was recorded before (a
/// duplicate delivery).
///
/// # Errors
/// When the store fails.
pub async fn record_received(s: &Billing<'_>, event: &StripeEvent, payload: &str) -> Result<bool, StoreError> {
    let entry = Item::new(keys::stripe_event(&event.id))
        .with("type", event.kind.clone())
        .with("created", event.created)
        .with("customer", event.customer())
        .with("status", LedgerStatus::Received.as_str())
        .with("received_at_ms", s.clock.now_ms())
        .with("payload", payload);
    match s.store.put(Put::new(entry).if_not_exists()).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_condition_failure() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The status of a ledger event, if it is recorded.
///
/// # Errors
/// When the store fails or the status is not one of [`LedgerStatus`].
pub async fn status(s: &Billing<'_>, event_id: &str) -> Result<Option<LedgerStatus>, StoreError> {
    let Some(item) = s.store.get(&keys::stripe_event(event_id)).await? else { return Ok(None) };
    let status = item.data.get("status").cloned().unwrap_or(Value::Null);
    serde_json::from_value(status).map(Some).map_err(|e| StoreError::Corrupt(format!("ledger status: {e}")))
}

/// Marks a `received` event `queued` (nothing if it is already further along).
///
/// # Errors
/// When the store fails.
pub async fn mark_queued(s: &Billing<'_>, event_id: &str) -> Result<(), StoreError> {
    let mark = Update::new(keys::stripe_event(event_id))
        .set("status", LedgerStatus::Queued.as_str())
        .when(Condition::Equals("status".into(), LedgerStatus::Received.as_str().into()));
    match s.store.update(mark).await {
        Ok(_) => Ok(()),
        // Already past `received` (a consumer was faster): nothing to mark.
        Err(e) if e.is_condition_failure() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Records what became of a ledger event.
///
/// # Errors
/// When the store fails.
pub async fn mark(s: &Billing<'_>, event_id: &str, status: LedgerStatus, note: Option<&str>) -> Result<(), StoreError> {
    let mut update = Update::new(keys::stripe_event(event_id))
        .set("status", status.as_str())
        .set("processed_at_ms", s.clock.now_ms())
        .when(Condition::Exists);
    if let Some(n) = note {
        update = update.set("note", n);
    }
    update = update.gsi1((status == LedgerStatus::Failed).then(|| keys::failed_stripe_event(event_id)));
    match s.store.update(update).await {
        Ok(_) => Ok(()),
        // Not recorded by the receiver (a replay from elsewhere): nothing to mark.
        Err(e) if e.is_condition_failure() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Queues every failed ledger event again (after a fix); returns how many.
///
/// # Errors
/// When the store or the queue fails.
pub async fn replay_failed(s: &Billing<'_>) -> anyhow::Result<usize> {
    use crate::store::StoreExt as _;
    let items =
        s.store.query_all(crate::store::Query::index(crate::store::Index::Gsi1, keys::FAILED_STRIPE_EVENTS)).await?;
    let mut replayed = 0;
    for item in items {
        let Some(payload) = item.data.get("payload").and_then(Value::as_str) else { continue };
        let event: StripeEvent = serde_json::from_str(payload)?;
        let group = event.customer().unwrap_or_else(|| "no-customer".into());
        let dedup = format!("replay-{}-{}", event.id, s.clock.now_ms());
        let message = crate::queue::Outgoing::new(payload).fifo(group, dedup);
        s.queues.get(crate::queue::QueueName::Billing).send(message).await?;
        mark(s, &event.id, LedgerStatus::Queued, Some("replayed")).await?;
        tracing::info!(event_id = %event.id, "failed Stripe event queued again");
        replayed += 1;
    }
    Ok(replayed)
}
