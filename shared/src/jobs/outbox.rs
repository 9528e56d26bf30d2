//! The job outbox: a job staged in the same store transaction as the change that calls for
//! it, so the two happen together or not at all (the "transactional outbox" pattern).
//!
//! A route that changes state and must set work off (an invitation and its email) used to
//! commit, then enqueue: if the enqueue failed the change was made but its work never ran,
//! and the 503 sent the client to repeat a change already made. Now it stages the job
//! ([`super::Jobs::stage`]: one more [`TxOp`] in its transaction), commits, and dispatches
//! it ([`super::Jobs::dispatch`]), which sends it to its queue and removes the staged copy;
//! a failure there is only logged. Whatever was not dispatched is sent by [`relay`], which
//! the scheduled function runs every minute for staged jobs older than [`RELAY_AFTER`].
//! A job sent twice (dispatched, and relayed while the removal failed) runs once: its
//! idempotency key is the runner's lease key.
//!
//! Staged jobs live in [`SHARDS`] partitions (`keys::staged_job`: spread by job id, so a
//! busy deployment never writes one hot partition), sorted by staging time.

use std::time::Duration;

use super::{Envelope, JobId};
use crate::clock::Clock;
use crate::config::QueueName;
use crate::queue::{Outgoing, Queues};
use crate::store::{Delete, Item, Key, Put, Query, SortKey, Store, TxOp};

/// How many partitions staged jobs are spread over.
pub const SHARDS: u32 = 8;

/// How old a staged job must be before the relay sends it: dispatch normally removes it
/// within milliseconds, and the relay must not race a request that is still running.
pub const RELAY_AFTER: Duration = Duration::from_secs(60);

/// How long a staged job is kept if nothing sends it (a safety net; the relay runs every
/// minute).
const KEEP: Duration = Duration::from_secs(7 * 86_400);

fn shard_of(id: JobId) -> u32 {
    // The ULID's last character is random: an even spread.
    id.to_string().bytes().last().map_or(0, |b| u32::from(b) % SHARDS)
}

pub(super) fn key(envelope: &Envelope) -> Key {
    crate::keys::staged_job(shard_of(envelope.id), envelope.enqueued_at_ms, envelope.id)
}

/// A job staged with a change: add [`StagedJob::op`] to the change's transaction, then
/// [`super::Jobs::dispatch`] it once the transaction committed.
#[derive(Debug, Clone)]
pub struct StagedJob {
    pub(super) envelope: Envelope,
    pub(super) body: String,
}

impl StagedJob {
    /// The write that stages the job.
    pub fn op(&self) -> TxOp {
        let keep = (self.envelope.enqueued_at_ms + i64::try_from(KEEP.as_millis()).unwrap_or(i64::MAX)) / 1000;
        let item = Item::new(key(&self.envelope))
            .with("queue", self.envelope.job.queue().as_str())
            .with("body", self.body.clone())
            .expiring_at(keep);
        TxOp::Put(Put::new(item).if_not_exists())
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.envelope.id
    }
}

/// Sends a staged job to its queue and removes the staged copy.
///
/// # Errors
/// When the queue or the store fails (the relay sends it later).
pub(super) async fn send(
    queues: &Queues,
    store: &dyn Store,
    queue: QueueName,
    envelope_key: Key,
    body: String,
) -> anyhow::Result<()> {
    queues.get(queue).send(Outgoing::new(body)).await?;
    store.delete(Delete::new(envelope_key)).await?;
    Ok(())
}

/// Sends every job staged before `now - RELAY_AFTER` that was not dispatched; returns how
/// many were sent. Run by the scheduled function (`relay-job-outbox`, every minute).
///
/// # Errors
/// When the store fails, or when a staged job could not be sent (it stays staged for the
/// next run; the error makes the scheduled function's error alarm notice a relay that keeps
/// failing, a missing queue permission for instance).
pub async fn relay(store: &dyn Store, queues: &Queues, clock: &dyn Clock) -> anyhow::Result<usize> {
    let cutoff = clock.now_ms() - i64::try_from(RELAY_AFTER.as_millis()).unwrap_or(0);
    let (mut sent, mut failed) = (0, 0);
    for shard in 0..SHARDS {
        let mut cursor = None;
        loop {
            let page = store
                .query(
                    Query::partition(crate::keys::job_outbox_partition(shard))
                        .sort(SortKey::Between("0".into(), crate::keys::staged_before(cutoff)))
                        .after(cursor),
                )
                .await?;
            for item in &page.items {
                let queue = item.data.get("queue").and_then(|q| q.as_str()).and_then(QueueName::parse);
                let body = item.data.get("body").and_then(|b| b.as_str()).map(str::to_owned);
                let (Some(queue), Some(body)) = (queue, body) else {
                    tracing::error!(key = ?item.key, "a staged job without a queue or body: dropped");
                    store.delete(Delete::new(item.key.clone())).await?;
                    continue;
                };
                match send(queues, store, queue, item.key.clone(), body).await {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(key = ?item.key, error = format!("{e:#}"), "relaying a staged job failed; next run");
                    }
                }
            }
            if page.next.is_none() {
                break;
            }
            cursor = page.next;
        }
    }
    if sent > 0 {
        tracing::info!(sent, "staged jobs relayed");
    }
    anyhow::ensure!(failed == 0, "{failed} staged jobs could not be sent ({sent} were)");
    Ok(sent)
}
