//! Background jobs: a typed set of [`Job`]s, [`Jobs::enqueue`] from any function, and the
//! [`JobRunner`] that every job-consuming function runs over its queue.
//!
//! The runner, for each message:
//! 1. decodes the [`Envelope`]; a body that does not decode is parked in the dead-letter
//!    queue with the error recorded, and the batch goes on;
//! 2. takes the job's idempotency record (`IDEMPOTENCY#<key>`): a conditional create with a
//!    lease (an expiry), so a redelivered message whose job already completed is
//!    acknowledged without running again, and one whose job is running elsewhere waits;
//! 3. runs the [`JobHandler`] and records the job's state (`JOB#<id>`: status, attempts,
//!    last error) where operators can read it;
//! 4. on success marks the idempotency record completed (kept 7 days); on a retryable
//!    failure releases it and hides the message for an exponential backoff; after
//!    `job_max_attempts`, or on a permanent failure, parks it in the dead-letter queue.
//!
//! A crash after the side effect and before step 4 can still repeat the effect once the
//! lease expires (as with any at-least-once queue); handlers whose effect has its own
//! idempotency key (Stripe, SES tags) pass it on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::exports::ExportSubject;
use crate::id::ExportId;
use crate::mail::EmailAddress;
use crate::mail::templates::Email;
use crate::queue::QueueName;
use crate::queue::{Outgoing, QueueError, Queues};
use crate::store::{Index, Item, Key, Put, Query, Store, StoreError};

pub mod outbox;
pub mod product;
mod runner;
pub mod webhook;

pub use product::{ProductJob, ProductJobs};
pub use runner::{JobError, JobHandler, JobOutcome, JobRunner, RunnerParts, backoff};

crate::ulid_id!(
    /// Identifies one enqueued job.
    JobId
);

/// How long a running job holds its idempotency record before another delivery may run it.
pub const LEASE: Duration = Duration::from_secs(5 * 60);
/// How long a completed job's idempotency record is kept (duplicates later than this run).
pub const COMPLETED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long job state records are kept.
pub const STATE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Every kind of background job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Render and send one transactional email.
    SendEmail {
        /// The recipient.
        to: EmailAddress,
        /// The template and its variables.
        email: Email,
    },
    /// Set a per-seat subscription's quantity to the account's member count.
    SyncSeats {
        /// The account.
        account_id: crate::id::AccountId,
    },
    /// Cancel a deleted account's subscription at the period end.
    CancelForDeletedAccount {
        /// The account.
        account_id: crate::id::AccountId,
    },
    /// Build a data export (GDPR), store it, and email its link.
    ExportData {
        /// The export.
        export_id: ExportId,
        /// What it covers.
        subject: ExportSubject,
        /// Who receives the link.
        notify: EmailAddress,
    },
    /// Store a webhook message and queue its delivery to each subscribed endpoint (run by
    /// `webhooks::delivery::fan_out`).
    PublishWebhook {
        /// The account whose endpoints receive it.
        account_id: crate::id::AccountId,
        /// The event.
        event: webhook::WebhookEvent,
    },
    /// One attempt to deliver a webhook message to one endpoint (`webhooks::delivery::deliver`).
    DeliverWebhook {
        /// Which message, where, which attempt.
        delivery: webhook::WebhookDelivery,
    },
    /// Look up the TXT record of an organization's domain claim and verify the claim when it
    /// holds its token (`tenancy::domains::verify`).
    VerifyDomain {
        /// The organization.
        org_id: crate::id::OrgId,
        /// The domain (ASCII form).
        domain: String,
    },
    /// A job of the product's own functions (see [`product`]): its registered name and its
    /// payload, run by the handler registered under that name.
    Product {
        /// The name the job type registered (`projects.recount`).
        name: String,
        /// The job's own fields, as its type serializes them.
        payload: serde_json::Value,
    },
}

impl Job {
    /// The queue this job goes to (and so the function that runs it).
    pub fn queue(&self) -> QueueName {
        match self {
            Self::SendEmail { .. } => QueueName::Email,
            Self::ExportData { .. }
            | Self::SyncSeats { .. }
            | Self::CancelForDeletedAccount { .. }
            | Self::PublishWebhook { .. }
            | Self::DeliverWebhook { .. }
            | Self::VerifyDomain { .. }
            | Self::Product { .. } => QueueName::Jobs,
        }
    }

    /// The job's kind, for logs and state records (a product job's registered name).
    pub fn kind(&self) -> &str {
        match self {
            Self::Product { name, .. } => name,
            Self::SendEmail { .. } => "send_email",
            Self::ExportData { .. } => "export_data",
            Self::SyncSeats { .. } => "sync_seats",
            Self::CancelForDeletedAccount { .. } => "cancel_for_deleted_account",
            Self::PublishWebhook { .. } => "publish_webhook",
            Self::DeliverWebhook { .. } => "deliver_webhook",
            Self::VerifyDomain { .. } => "verify_domain",
        }
    }
}

/// A job as it travels on a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The job's id.
    pub id: JobId,
    /// Deduplicates jobs: two envelopes with one key run once. Defaults to the id.
    pub idempotency_key: String,
    /// When it was enqueued (Unix ms).
    pub enqueued_at_ms: i64,
    /// The job.
    pub job: Job,
}

/// What enqueueing needs: the queues, the store (where job state is recorded) and the clock.
/// Borrowed from the process's services (`Services::jobs`) or from a domain context.
#[derive(Clone, Copy)]
pub struct Jobs<'a> {
    /// Where jobs go.
    pub queues: &'a Queues,
    /// Where job state records are kept.
    pub store: &'a dyn Store,
    /// Stamps the envelope.
    pub clock: &'a dyn Clock,
}

impl Jobs<'_> {
    /// Enqueues `job` on its queue and records it as queued.
    ///
    /// # Errors
    /// When the queue refuses or is unavailable.
    pub async fn enqueue(&self, job: Job) -> Result<JobId, QueueError> {
        let id = JobId::new();
        self.enqueue_with_key(job, id, id.to_string()).await
    }

    /// Enqueues `job` with an explicit idempotency key: enqueueing the same logical action
    /// twice (a retried request) then runs it once.
    ///
    /// # Errors
    /// When the queue refuses or is unavailable, or `key` is empty or over 200 bytes.
    pub async fn enqueue_with_key(&self, job: Job, id: JobId, key: String) -> Result<JobId, QueueError> {
        let (envelope, body) = self.envelope(job, id, key)?;
        self.queues.get(envelope.job.queue()).send(Outgoing::new(body)).await?;
        self.queued(&envelope).await;
        Ok(id)
    }

    /// As [`Jobs::enqueue_with_key`], visible on its queue only after `delay` (at most
    /// [`crate::queue::MAX_DELAY`], SQS's limit).
    ///
    /// # Errors
    /// As [`Jobs::enqueue_with_key`].
    pub async fn enqueue_after(&self, job: Job, key: String, delay: Duration) -> Result<JobId, QueueError> {
        let id = JobId::new();
        let (envelope, body) = self.envelope(job, id, key)?;
        let message = Outgoing::new(body).delayed(delay.min(crate::queue::MAX_DELAY));
        self.queues.get(envelope.job.queue()).send(message).await?;
        self.queued(&envelope).await;
        Ok(id)
    }

    /// The envelope of `job` and its body on the queue.
    fn envelope(&self, job: Job, id: JobId, key: String) -> Result<(Envelope, String), QueueError> {
        if key.is_empty() || key.len() > 200 {
            return Err(QueueError::Invalid("an idempotency key is 1 to 200 bytes".into()));
        }
        let envelope = Envelope { id, idempotency_key: key, enqueued_at_ms: self.clock.now_ms(), job };
        let body = serde_json::to_string(&envelope).map_err(|e| QueueError::Invalid(e.to_string()))?;
        Ok((envelope, body))
    }

    /// Records a job that reached its queue.
    async fn queued(&self, envelope: &Envelope) {
        let (queue, now) = (envelope.job.queue(), self.clock.now_ms());
        let state = JobState::new(envelope, queue, JobStatus::Queued, now);
        if let Err(e) = state.save(self.store, now).await {
            // The job is on its queue; its state record catches up when it runs.
            tracing::warn!(job_id = %envelope.id, error = %e, "could not record the queued job");
        }
        tracing::info!(job_id = %envelope.id, kind = envelope.job.kind(), queue = queue.as_str(), "job enqueued");
    }

    /// Stages `job` to go out with a change (see [`outbox`]): add the returned job's
    /// [`outbox::StagedJob::op`] to the change's transaction, then [`Jobs::dispatch`] it.
    /// `key` deduplicates it like [`Jobs::enqueue_with_key`]'s (default: the job's id).
    ///
    /// # Errors
    /// When `key` is empty or over 200 bytes.
    pub fn stage(&self, job: Job, key: Option<String>) -> Result<outbox::StagedJob, QueueError> {
        let id = JobId::new();
        let (envelope, body) = self.envelope(job, id, key.unwrap_or_else(|| id.to_string()))?;
        Ok(outbox::StagedJob { envelope, body })
    }

    /// Sends a job staged with a committed change to its queue. Never fails: what cannot be
    /// sent now, the outbox relay sends within minutes (a warning is logged).
    pub async fn dispatch(&self, staged: outbox::StagedJob) {
        let key = outbox::key(&staged.envelope);
        match outbox::send(self.queues, self.store, staged.envelope.job.queue(), key, staged.body).await {
            Ok(()) => self.queued(&staged.envelope).await,
            Err(e) => {
                let id = staged.envelope.id;
                tracing::warn!(job_id = %id, error = format!("{e:#}"), "dispatching a staged job failed; the outbox relay sends it");
            }
        }
    }
}

/// Where a job stands, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// On its queue.
    Queued,
    /// A handler is running it.
    Running,
    /// Done.
    Succeeded,
    /// Done without effect, on purpose (a suppressed recipient...).
    Skipped,
    /// Failed; will be retried.
    Failed,
    /// Parked in the dead-letter queue; a redrive runs it again.
    Dead,
}

impl JobStatus {
    /// The status as its JSON string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

/// The visible state of one job (`JOB#<id>` / `STATE`). Dead jobs are also indexed
/// (gsi1 `JOBS#dead`) so operators can list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// The job's id (or the queue message id when the body did not decode).
    pub id: String,
    /// The job's kind (`unknown` when the body did not decode).
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Where it stands.
    pub status: JobStatus,
    /// How many times it has been attempted.
    pub attempts: u32,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Why it was skipped, if it was.
    pub note: Option<String>,
    /// When it was enqueued (Unix ms; 0 if unknown).
    pub enqueued_at_ms: i64,
    /// When this state was recorded (Unix ms).
    pub updated_at_ms: i64,
}

impl JobState {
    fn new(envelope: &Envelope, queue: QueueName, status: JobStatus, now: i64) -> Self {
        Self {
            id: envelope.id.to_string(),
            kind: envelope.job.kind().into(),
            queue: queue.as_str().into(),
            status,
            attempts: 0,
            last_error: None,
            note: None,
            enqueued_at_ms: envelope.enqueued_at_ms,
            updated_at_ms: now,
        }
    }

    /// The key of job `id`'s state.
    pub fn key(id: &str) -> Key {
        crate::keys::job_state(id)
    }

    async fn save(&self, store: &dyn Store, now: i64) -> Result<(), StoreError> {
        let mut item = Item::from_record(Self::key(&self.id), self)?
            .expiring_at((now + i64::try_from(STATE_RETENTION.as_millis()).unwrap_or(0)) / 1000);
        if self.status == JobStatus::Dead {
            item = item.with_gsi1(crate::keys::dead_job(self.updated_at_ms, &self.id));
        }
        store.put(Put::new(item)).await.map(|_| ())
    }

    /// The state of job `id`, if recorded.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn load(store: &dyn Store, id: &str) -> Result<Option<Self>, StoreError> {
        store.get(&Self::key(id)).await?.map(|i| i.record()).transpose()
    }

    /// The most recently dead-lettered jobs, newest first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn list_dead(store: &dyn Store, limit: u32) -> Result<Vec<Self>, StoreError> {
        store.query(Query::index(Index::Gsi1, crate::keys::DEAD_JOBS).descending().limit(limit)).await?.records()
    }
}

/// The job settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct JobsConfig {
    /// `GROUNDWORK_JOB_MAX_ATTEMPTS`: attempts before a job is dead-lettered (default 5).
    #[serde(rename = "job_max_attempts", default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_attempts() -> u32 {
    5
}

impl JobsConfig {
    /// From `GROUNDWORK_JOB_MAX_ATTEMPTS`.
    ///
    /// # Errors
    /// A malformed number.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        let jobs: Self = env.area("GROUNDWORK_")?;
        crate::settings::at_least("GROUNDWORK_JOB_MAX_ATTEMPTS", jobs.max_attempts, 1)?;
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(900));
    }

    #[test]
    fn envelopes_round_trip_and_reject_bad_addresses() {
        let e = Envelope {
            id: JobId::new(),
            idempotency_key: "k".into(),
            enqueued_at_ms: 1,
            job: Job::SendEmail {
                to: EmailAddress::parse("a@example.com").unwrap(),
                email: Email::Welcome { name: None },
            },
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&s).unwrap(), e);
        let bad = s.replace("a@example.com", "not-an-address");
        assert!(serde_json::from_str::<Envelope>(&bad).is_err());
    }
}
