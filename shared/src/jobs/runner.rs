//! The job runner: what a job-consuming function runs over its queue (see the module
//! documentation of [`super`] for the steps), and the [`JobHandler`] it calls.

use crate::clock::Clock;
use crate::queue::Queue;
use crate::queue::QueueName;
use crate::queue::consumer::{Message, MessageHandler};
use crate::store::Store;
use crate::store::{Condition, Delete, Item, Key, Put, StoreError, Update};
use crate::telemetry::metrics::{Metrics, Unit};
use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// What a handler did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// The job's effect happened.
    Done,
    /// The job was deliberately not carried out; the note says why.
    Skipped(String),
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying later (a dependency is down, throttling...).
    #[error("retryable: {0:#}")]
    Retry(anyhow::Error),
    /// Retrying cannot help (bad input, rejected by the provider...).
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

/// Carries out jobs. Implementations must tolerate running a job more than once.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs `job` (its `envelope` gives the id and key).
    async fn run(&self, envelope: &Envelope) -> Result<JobOutcome, JobError>;
}

/// The backoff before attempt `attempt + 1`: 2 s, 4 s, 8 s... capped at 15 minutes.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempt.clamp(1, 10))).min(Duration::from_secs(900))
}

/// Runs a [`JobHandler`] over one queue's messages (see the module documentation).
pub struct JobRunner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    queue_name: QueueName,
    queue: Arc<dyn Queue>,
    max_attempts: u32,
    handler: Arc<dyn JobHandler>,
}

/// What a [`JobRunner`] runs over: its queue, the store that holds idempotency and state
/// records, the clock, and the attempts before a retryable failure is dead-lettered
/// (`GROUNDWORK_JOB_MAX_ATTEMPTS`).
pub struct RunnerParts {
    /// Idempotency and job state records.
    pub store: Arc<dyn Store>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The queue's name (metrics, state records).
    pub queue_name: QueueName,
    /// The queue itself (backoff, dead letters).
    pub queue: Arc<dyn Queue>,
    /// Attempts before a retryable failure is dead-lettered.
    pub max_attempts: u32,
}

impl JobRunner {
    /// A runner of `handler` over the queue of `parts`.
    pub fn new(parts: RunnerParts, handler: Arc<dyn JobHandler>) -> Self {
        let RunnerParts { store, clock, queue_name, queue, max_attempts } = parts;
        Self { store, clock, queue_name, queue, max_attempts, handler }
    }

    fn idempotency_key(key: &str) -> Key {
        crate::keys::job_idempotency(key)
    }

    /// Takes the lease; `Ok(false)` when the job already completed or runs elsewhere.
    async fn acquire(&self, envelope: &Envelope, receipt: &str, now: i64) -> Result<Acquired, StoreError> {
        let store = self.store.as_ref();
        let key = Self::idempotency_key(&envelope.idempotency_key);
        let lease_end = (now + i64::try_from(LEASE.as_millis()).unwrap_or(0)) / 1000;
        // The lease names this delivery, so a lease whose write was applied but whose answer
        // was lost (a timeout) is recognised as ours below instead of blocking the job until
        // it expires.
        let holder = crate::auth::hash_secret(receipt);
        let record = Item::new(key.clone())
            .with("status", "in_progress")
            .with("job_id", envelope.id.to_string())
            .with("holder", holder.clone());
        let refused = match store.put(Put::new(record.expiring_at(lease_end)).if_not_exists()).await {
            Ok(_) => return Ok(Acquired::Yes),
            Err(StoreError::ConditionFailed) => None,
            Err(e) => Some(e),
        };
        match store.get(&key).await? {
            Some(i) if i.data.get("status").and_then(|s| s.as_str()) == Some("completed") => Ok(Acquired::Completed),
            Some(i) if i.data.get("holder").and_then(|h| h.as_str()) == Some(holder.as_str()) => Ok(Acquired::Yes),
            Some(_) => Ok(Acquired::Busy),
            // Not written: the outage is the answer (the delivery is retried). Or it expired
            // between the two calls: try again on the next delivery.
            None => refused.map_or(Ok(Acquired::Busy), Err),
        }
    }

    async fn complete(&self, envelope: &Envelope, now: i64) -> Result<(), StoreError> {
        let keep = (now + i64::try_from(COMPLETED_RETENTION.as_millis()).unwrap_or(0)) / 1000;
        self.store
            .update(
                Update::new(Self::idempotency_key(&envelope.idempotency_key))
                    .set("status", "completed")
                    .expires_at(Some(keep))
                    .when(Condition::Equals("job_id".into(), json!(envelope.id.to_string()))),
            )
            .await
            .map(|_| ())
    }

    async fn release(&self, envelope: &Envelope) {
        let delete = Delete::new(Self::idempotency_key(&envelope.idempotency_key))
            .when(Condition::Equals("status".into(), json!("in_progress")));
        if let Err(e) = self.store.delete(delete).await
            && !matches!(e, StoreError::ConditionFailed)
        {
            tracing::warn!(job_id = %envelope.id, error = %e, "could not release the job lease; it expires by itself");
        }
    }

    async fn record(&self, mut state: JobState) {
        let now = self.clock.now_ms();
        state.updated_at_ms = now;
        if state.status != JobStatus::Running {
            // One metric per outcome: dashboards and the DLQ alarm read these.
            Metrics::new()
                .dimension("Queue", self.queue_name.as_str())
                .property("job_id", state.id.clone())
                .property("kind", state.kind.clone())
                .metric(&format!("Jobs{}", capitalised(state.status.as_str())), 1.0, Unit::Count)
                .metric("JobAttempts", f64::from(state.attempts), Unit::Count)
                .emit();
        }
        if let Err(e) = state.save(self.store.as_ref(), now).await {
            tracing::warn!(job_id = %state.id, error = %e, "could not record the job state");
        }
    }

    async fn dead_letter(&self, message: &Message, mut state: JobState, error: String) -> anyhow::Result<()> {
        self.queue.send_to_dead_letters(&message.body, message.group_id.as_deref()).await?;
        tracing::error!(job_id = %state.id, kind = %state.kind, attempts = state.attempts, error = %error, "job dead-lettered");
        state.status = JobStatus::Dead;
        state.last_error = Some(error);
        self.record(state).await;
        Ok(())
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

enum Acquired {
    Yes,
    Completed,
    Busy,
}

#[async_trait]
impl MessageHandler for JobRunner {
    async fn handle(&self, message: &Message) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        let envelope: Envelope = match serde_json::from_str(&message.body) {
            Ok(e) => e,
            Err(e) => {
                let state = JobState {
                    id: message.id.clone(),
                    kind: "unknown".into(),
                    queue: self.queue_name.as_str().into(),
                    status: JobStatus::Dead,
                    attempts: message.receive_count,
                    last_error: None,
                    note: None,
                    enqueued_at_ms: 0,
                    updated_at_ms: now,
                };
                // Never retried: the same bytes will never decode.
                return self.dead_letter(message, state, format!("the job does not decode: {e}")).await;
            }
        };
        let span = tracing::info_span!("job", job_id = %envelope.id, kind = envelope.job.kind(), attempt = message.receive_count);
        // Instrumented, never entered across awaits: a batch's jobs run interleaved on one
        // task, and an entered span would label another job's lines.
        tracing::Instrument::instrument(self.run_enveloped(message, envelope, now), span).await
    }
}

impl JobRunner {
    /// Runs a decoded job (the module documentation's steps 2 to 4).
    async fn run_enveloped(&self, message: &Message, envelope: Envelope, now: i64) -> anyhow::Result<()> {
        match self.acquire(&envelope, &message.receipt, now).await? {
            Acquired::Completed => {
                tracing::info!("duplicate delivery of a completed job: acknowledged without running");
                return Ok(());
            }
            Acquired::Busy => anyhow::bail!("the job is running in another delivery"),
            Acquired::Yes => {}
        }
        let mut state = JobState::new(&envelope, self.queue_name, JobStatus::Running, now);
        state.attempts = message.receive_count;
        self.record(state.clone()).await;
        let result = self.handler.run(&envelope).await;
        let now = self.clock.now_ms();
        match result {
            Ok(outcome) => {
                // The effect has happened: a redelivery must find the job completed, or it
                // would run again once the lease ran out. A passing outage gets a few tries.
                let mut tries = 0;
                while let Err(e) = self.complete(&envelope, now).await {
                    tries += 1;
                    if tries == 3 || !matches!(e, StoreError::Unavailable(_)) {
                        return Err(e.into());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << tries)).await;
                }
                match outcome {
                    JobOutcome::Done => state.status = JobStatus::Succeeded,
                    JobOutcome::Skipped(note) => {
                        tracing::info!(note = %note, "job skipped");
                        state.status = JobStatus::Skipped;
                        state.note = Some(note);
                    }
                }
                self.record(state).await;
                tracing::info!("job done");
                Ok(())
            }
            Err(JobError::Permanent(e)) => {
                self.release(&envelope).await;
                self.dead_letter(message, state, format!("{e:#}")).await
            }
            Err(JobError::Retry(e)) => {
                self.release(&envelope).await;
                if message.receive_count >= self.max_attempts {
                    return self
                        .dead_letter(message, state, format!("{e:#} (after {} attempts)", message.receive_count))
                        .await;
                }
                let delay = backoff(message.receive_count);
                // At error level, so error tracking reports it (the consumer's line is a warning).
                tracing::error!(
                    job_id = %envelope.id,
                    kind = envelope.job.kind(),
                    attempt = message.receive_count,
                    error = format!("{e:#}"),
                    retry_in_s = delay.as_secs(),
                    "job attempt failed"
                );
                if let Err(ve) = self.queue.change_visibility(&message.receipt, delay).await {
                    tracing::warn!(error = %ve, "could not set the retry backoff; the queue's timeout applies");
                }
                state.status = JobStatus::Failed;
                state.last_error = Some(format!("{e:#}"));
                self.record(state).await;
                Err(e.context(format!("job failed; retrying in {} s", delay.as_secs())))
            }
        }
    }
}
