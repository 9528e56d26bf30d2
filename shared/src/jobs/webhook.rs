//! The payloads of the two webhook jobs, as they travel on the jobs queue. They live here so
//! that [`super::Job`] names them without `jobs` depending on [`crate::webhooks`], which
//! builds on `jobs`; `webhooks` re-exports them (as `Event`, `Delivery`, `Trigger`) and
//! holds their behaviour.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{AccountId, WebhookEndpointId};

/// An event to publish to an account's webhook endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Its type (`member.joined`): see `webhooks::catalogue::valid_type`.
    pub event_type: String,
    /// Its id, the `webhook-id` receivers deduplicate on: 1 to 100 of `A-Z a-z 0-9 _ -`.
    /// Publishing one id twice delivers it once. Derive it from what happened
    /// (`member-joined-<invitation>`) so a retried caller publishes the same id.
    pub id: String,
    /// When it happened (Unix ms).
    pub occurred_at_ms: i64,
    /// Its `data` (at most `webhooks::MAX_BODY_BYTES` once wrapped).
    pub data: Value,
}

/// What made a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryTrigger {
    /// Publishing, and the retries of the schedule.
    Scheduled,
    /// A replay asked for by the account (retried on the schedule too).
    Replay,
    /// A test message asked for by the account (one attempt).
    Test,
}

/// One attempt to deliver a message to an endpoint, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The account.
    pub account_id: AccountId,
    /// The endpoint.
    pub endpoint_id: WebhookEndpointId,
    /// The message.
    pub message_id: String,
    /// Which attempt (from 1).
    pub attempt: u32,
    /// Not to be made before this time (Unix ms).
    pub not_before_ms: i64,
    /// How many times it was queued again to wait for `not_before_ms`.
    pub hop: u32,
    /// What made it.
    pub trigger: DeliveryTrigger,
    /// Tells apart the deliveries of one replay or test from every other (empty for
    /// scheduled ones, which are unique by endpoint, message and attempt).
    pub nonce: String,
}
