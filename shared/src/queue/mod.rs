//! The queue port: at-least-once delivery with visibility timeouts, redelivery, a
//! dead-letter queue after too many receives, and a redrive of dead letters.
//!
//! One [`Queue`] value stands for one queue and its dead-letter queue. Two adapters are held
//! to one contract suite: [`sqs::SqsQueue`] (production; standard and FIFO) and
//! [`embedded::EmbeddedQueue`] (durable, in the embedded database; the local default).
//! [`consumer`] turns a batch of messages into the partial batch failures Lambda expects,
//! and runs the same handlers in-process for the local stack.

pub mod config;
pub mod consumer;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod sqs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// The system's queues. Each has an SQS queue and a dead-letter queue, whose URLs come
/// from `GROUNDWORK_<NAME>_QUEUE_URL` and `GROUNDWORK_<NAME>_DLQ_URL` with `sqs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueName {
    /// Transactional email jobs, consumed by `email-dispatch`.
    Email,
    /// SES bounce and complaint notifications, consumed by `mail-events`.
    MailEvents,
    /// Other background jobs (data exports...), consumed by `worker`.
    Jobs,
    /// Stripe events (FIFO, grouped by customer), consumed by `billing-events`.
    Billing,
}

/// Every queue of the system, by name.
#[derive(Clone)]
pub struct Queues(BTreeMap<QueueName, Arc<dyn Queue>>);

impl Queues {
    /// Queues from a full map.
    ///
    /// # Panics
    /// If a queue of [`QueueName::ALL`] is missing (a wiring bug caught at init).
    pub fn new(map: BTreeMap<QueueName, Arc<dyn Queue>>) -> Self {
        for q in QueueName::ALL {
            assert!(map.contains_key(&q), "queue {} is not wired", q.as_str());
        }
        Self(map)
    }

    /// The queue `name`.
    pub fn get(&self, name: QueueName) -> Arc<dyn Queue> {
        Arc::clone(&self.0[&name])
    }

    /// Every queue with its name.
    pub fn all(&self) -> impl Iterator<Item = (QueueName, &Arc<dyn Queue>)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }
}

impl QueueName {
    /// Every queue.
    pub const ALL: [Self; 4] = [Self::Email, Self::MailEvents, Self::Jobs, Self::Billing];

    /// The queue's short name (logs, operator routes, embedded table rows).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::MailEvents => "mail-events",
            Self::Jobs => "jobs",
            Self::Billing => "billing",
        }
    }

    /// Parses [`QueueName::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }

    /// The variables of the queue's URL and its dead-letter queue's URL.
    pub fn env_vars(self) -> (&'static str, &'static str) {
        match self {
            Self::Email => ("GROUNDWORK_EMAIL_QUEUE_URL", "GROUNDWORK_EMAIL_DLQ_URL"),
            Self::MailEvents => ("GROUNDWORK_MAIL_EVENTS_QUEUE_URL", "GROUNDWORK_MAIL_EVENTS_DLQ_URL"),
            Self::Jobs => ("GROUNDWORK_JOBS_QUEUE_URL", "GROUNDWORK_JOBS_DLQ_URL"),
            Self::Billing => ("GROUNDWORK_BILLING_QUEUE_URL", "GROUNDWORK_BILLING_DLQ_URL"),
        }
    }
}

/// The largest message body accepted (SQS's limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The longest delay a message may be sent with (SQS's limit).
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// The most messages one receive returns (SQS's limit).
pub const MAX_RECEIVE: u32 = 10;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outgoing {
    /// The body (JSON by convention).
    pub body: String,
    /// Hides the message for this long after sending (standard queues only).
    pub delay: Duration,
    /// FIFO: messages with the same id within five minutes are delivered once.
    pub dedup_id: Option<String>,
    /// FIFO: messages of one group are delivered in order, one batch in flight at a time.
    pub group_id: Option<String>,
}

impl Outgoing {
    /// A message with this body, no delay.
    pub fn new(body: impl Into<String>) -> Self {
        Self { body: body.into(), ..Self::default() }
    }

    /// Delays delivery.
    #[must_use]
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the FIFO group and deduplication id.
    #[must_use]
    pub fn fifo(mut self, group_id: impl Into<String>, dedup_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self.dedup_id = Some(dedup_id.into());
        self
    }

    fn validate(&self, fifo: bool) -> Result<(), QueueError> {
        if self.body.is_empty() || self.body.len() > MAX_BODY_BYTES {
            return Err(QueueError::Invalid(format!("a message body is 1 to {MAX_BODY_BYTES} bytes")));
        }
        if self.delay > MAX_DELAY {
            return Err(QueueError::Invalid("a message may be delayed 15 minutes at most".into()));
        }
        if fifo {
            if self.group_id.is_none() || self.dedup_id.is_none() {
                return Err(QueueError::Invalid("a FIFO message needs a group id and a deduplication id".into()));
            }
            if !self.delay.is_zero() {
                return Err(QueueError::Invalid("FIFO messages cannot be delayed one by one".into()));
            }
        }
        for id in [&self.group_id, &self.dedup_id].into_iter().flatten() {
            let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(QueueError::Invalid(
                    "group and deduplication ids are 1 to 128 visible ASCII characters".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The id the queue gave the message when it was sent.
    pub id: String,
    /// Acknowledges or extends this one delivery.
    pub receipt: String,
    /// The body as sent.
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// The FIFO group, if any.
    pub group_id: Option<String>,
}

/// What went wrong with a queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request is malformed.
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The receipt is unknown or expired (the message was redelivered or deleted).
    #[error("the receipt is not valid any more")]
    StaleReceipt,
    /// The queue could not be reached; retrying later may work.
    #[error("the queue is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// One queue and its dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// The queue's logical name (for logs and operators).
    fn name(&self) -> &str;

    /// Whether the queue is FIFO.
    fn is_fifo(&self) -> bool;

    /// Sends a message; returns the id the queue gave it.
    async fn send(&self, message: Outgoing) -> Result<String, QueueError>;

    /// Receives up to `max` (1 to [`MAX_RECEIVE`]) visible messages, waiting up to `wait` for
    /// the first one. Each received message is hidden for the visibility timeout; a message
    /// received more often than the queue allows moves to the dead-letter queue instead.
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Received>, QueueError>;

    /// Deletes a received message: it will not be delivered again.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Hides a received message for `timeout` from now (zero makes it visible at once).
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;

    /// Up to `max` messages waiting in the dead-letter queue, without consuming them.
    async fn dead_letters(&self, max: u32) -> Result<Vec<Received>, QueueError>;

    /// Moves up to `max` dead letters back to the queue; returns how many moved.
    async fn redrive(&self, max: u32) -> Result<u32, QueueError>;

    /// Puts a message straight into the dead-letter queue (a consumer that knows a message
    /// can never succeed parks it there, then acknowledges the original).
    async fn send_to_dead_letters(&self, body: &str, group_id: Option<&str>) -> Result<(), QueueError>;

    /// How many messages wait in the queue (visible or not) and in its dead-letter queue; one
    /// call that answers only when the queue is reachable (the deep health check). SQS counts
    /// approximately (`ApproximateNumberOfMessages` + `...NotVisible`).
    async fn backlog(&self) -> Result<Backlog, QueueError>;
}

/// A queue's backlog ([`Queue::backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Backlog {
    /// Messages in the queue, waiting or being handled.
    pub messages: u64,
    /// Messages in its dead-letter queue.
    pub dead_letters: u64,
}

pub(crate) fn validate_max(max: u32) -> Result<(), QueueError> {
    if max == 0 || max > MAX_RECEIVE {
        return Err(QueueError::Invalid(format!("receive 1 to {MAX_RECEIVE} messages at a time")));
    }
    Ok(())
}
