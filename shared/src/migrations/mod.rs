//! Versioned data migrations of the single table: numbered steps in code, each run exactly
//! once per table, in order.
//!
//! A DynamoDB table has no schema to migrate, but its items have shapes, and a new shape
//! (an index key every account now carries, a field a new feature reads) has to reach the
//! items written before it. Each such change is a [`Migration`]: code that writes the new
//! shape ships first ("expand"), then the migration brings the old items to it, then a later
//! release may stop reading the old shape ("contract"). So a migration never breaks the code
//! running beside it, and the runner can take its time.
//!
//! The runner ([`run`]):
//! - records each migration in the table when it is done (`MIGRATIONS` / `MIGRATION#<n>`,
//!   see [`crate::keys::migration`]) and never runs a done one again;
//! - holds a lock item (`MIGRATIONS` / `LOCK`) while it works, with a lease it renews at
//!   every checkpoint: a second runner finds it held and answers [`Outcome::Busy`]; a runner
//!   that crashed leaves a lease that expires, and the next runner takes over;
//! - checkpoints after every step: the migration's cursor goes into its record, in one
//!   transaction with the lease renewal (conditional on still holding the lock, so a runner
//!   whose lease was taken over stops instead of writing over its successor);
//! - on a failing step, releases the lock and leaves the record as it was at the last
//!   checkpoint: the migration is not done, and the next run resumes from the checkpoint.
//!   After a crash the steps since the last checkpoint run again, so each migration must be
//!   idempotent per item;
//! - stops cleanly at a deadline ([`Outcome::Paused`]) so a Lambda invocation ends before
//!   its timeout and the next one resumes.
//!
//! Where it runs: the local stack at start-up, before it serves; on AWS the scheduled
//! function on a direct invocation `{"action": "migrate"}`, which `infra/deploy.sh` makes
//! once the deploy (and its traffic shift) is complete, so every instance by then writes
//! the new shape (see ARCHITECTURE.md for why not a CloudFormation custom resource).

mod account_directory;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::keys;
use crate::store::{Condition, Cursor, Delete, Item, Put, Query, Store, StoreError, StoreExt, TxOp, Update};

pub use account_directory::AccountDirectory;

/// One data migration.
#[async_trait]
pub trait Migration: Send + Sync {
    /// Its number: migrations run in ascending order, each once per table. Never reused.
    fn number(&self) -> u32;

    /// What it does, in a few words (recorded with it).
    fn name(&self) -> &'static str;

    /// Does one bounded piece of the work (a page of the table, say), starting at `from`
    /// (`None` the first time), and says where the next piece starts (`None`: done). A piece
    /// must take well under [`LEASE`]. Idempotent per item: after a crash the pieces since
    /// the last checkpoint run again.
    ///
    /// # Errors
    /// When the store fails: the runner stops, and the next run resumes at the checkpoint.
    async fn step(&self, store: &dyn Store, from: Option<Cursor>) -> Result<Option<Cursor>, StoreError>;
}

/// Every migration, in order.
pub const ALL: &[&dyn Migration] = &[&AccountDirectory];

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks every run in this process to pause at its next checkpoint (as at a deadline), so
/// the lock is released rather than left to its lease: a stopping process calls it.
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

/// How long a runner's lock lasts without a checkpoint renewing it.
pub const LEASE: Duration = Duration::from_secs(60);

/// A migration's record in the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// [`Migration::number`].
    pub number: u32,
    /// [`Migration::name`].
    pub name: String,
    /// Whether it is done.
    pub done: bool,
    /// Where the next step starts (an encoded [`Cursor`]), while it is not done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Steps completed (steps redone after a crash count again).
    pub steps: u64,
    /// When a runner first started it (Unix ms).
    pub started_at_ms: i64,
    /// When it was done (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at_ms: Option<i64>,
    /// The release whose runner finished it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_by_release: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Every migration is done; `applied` are the numbers this run finished.
    Complete {
        /// Finished by this run, in order.
        applied: Vec<u32>,
    },
    /// The deadline came first: `number` is checkpointed, the lock released; run again.
    Paused {
        /// The migration in progress.
        number: u32,
        /// Finished by this run before it paused.
        applied: Vec<u32>,
    },
    /// Another runner holds the lock; try again after a while (at most [`LEASE`]).
    Busy {
        /// The other runner's id.
        holder: String,
    },
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A step failed; the migration's record is as of its last checkpoint, the lock released.
    #[error("migration {number} ({name}) failed: {source}")]
    Failed {
        /// The migration.
        number: u32,
        /// Its name.
        name: &'static str,
        /// What the step reported.
        #[source]
        source: StoreError,
    },
    /// This runner's lease ran out and another runner took the lock; it stopped without
    /// writing anything more.
    #[error("the migration lock was taken over by another runner during migration {number}")]
    LockLost {
        /// The migration in progress.
        number: u32,
    },
    /// Another runner held the lock for longer than [`run_to_completion`] waits.
    #[error("another migration runner ({holder}) holds the lock")]
    Busy {
        /// The other runner's id.
        holder: String,
    },
    /// The process asked the runs to stop ([`request_stop`]); the work is checkpointed and
    /// the lock released, and the next run resumes.
    #[error("stopped during the data migrations; the next start resumes them")]
    Stopped,
    /// Reading or writing the records failed.
    #[error("migration bookkeeping: {0}")]
    Store(#[from] StoreError),
}

/// Every migration's record, by number.
///
/// # Errors
/// When the store fails.
pub async fn records(store: &dyn Store) -> Result<Vec<MigrationRecord>, StoreError> {
    let items = store.query_all(Query::partition(keys::MIGRATIONS).begins_with(keys::MIGRATION_PREFIX)).await?;
    items.iter().map(Item::record).collect()
}

/// Runs every migration of `migrations` not yet done, in ascending number, as runner `runner`
/// (any unique id: the release and a random part), stopping at `deadline_ms` (Unix ms) if
/// given. When all are done already, it costs one query and takes no lock.
///
/// # Errors
/// [`MigrationError`]; whatever happens, the records stay consistent and a later run
/// resumes.
pub async fn run(
    store: &dyn Store,
    clock: &dyn Clock,
    migrations: &[&dyn Migration],
    runner: &str,
    deadline_ms: Option<i64>,
) -> Result<Outcome, MigrationError> {
    let mut ordered = migrations.to_vec();
    ordered.sort_by_key(|m| m.number());
    let done = |records: &[MigrationRecord], n: u32| records.iter().any(|r| r.number == n && r.done);
    let recorded = records(store).await?;
    if ordered.iter().all(|m| done(&recorded, m.number())) {
        return Ok(Outcome::Complete { applied: Vec::new() });
    }
    if let Some(holder) = acquire(store, clock, runner).await? {
        return Ok(Outcome::Busy { holder });
    }
    let result = run_locked(store, clock, &ordered, runner, deadline_ms).await;
    if matches!(result, Err(MigrationError::LockLost { .. })) {
        return result;
    }
    match release(store, runner).await {
        // The lease ends by itself; the run's own error says more than the release's.
        Err(e) if result.is_err() => {
            tracing::warn!(error = %e, "the migration lock was not released; its lease will end");
            result
        }
        Err(e) => Err(e.into()),
        Ok(()) => result,
    }
}

async fn run_locked(
    store: &dyn Store,
    clock: &dyn Clock,
    ordered: &[&dyn Migration],
    runner: &str,
    deadline_ms: Option<i64>,
) -> Result<Outcome, MigrationError> {
    // Read again under the lock: the previous holder may have finished some meanwhile.
    let recorded = records(store).await?;
    let mut applied = Vec::new();
    for migration in ordered {
        let number = migration.number();
        let mut record = match recorded.iter().find(|r| r.number == number) {
            Some(r) if r.done => continue,
            Some(r) => r.clone(),
            None => MigrationRecord {
                number,
                name: migration.name().to_owned(),
                done: false,
                cursor: None,
                steps: 0,
                started_at_ms: clock.now_ms(),
                done_at_ms: None,
                done_by_release: None,
            },
        };
        tracing::info!(
            migration = number,
            name = migration.name(),
            resumed = record.cursor.is_some(),
            "migration started"
        );
        loop {
            if deadline_ms.is_some_and(|d| clock.now_ms() >= d) || stop_requested() {
                checkpoint(store, clock, runner, &record).await.map_err(|e| lock_lost(e, number))?;
                tracing::info!(migration = number, steps = record.steps, "migration paused at a checkpoint");
                return Ok(Outcome::Paused { number, applied });
            }
            let from = record.cursor.as_deref().map(Cursor::decode).transpose()?;
            let next = migration.step(store, from).await.map_err(|source| {
                tracing::error!(migration = number, error = %source, "migration step failed");
                MigrationError::Failed { number, name: migration.name(), source }
            })?;
            record.steps += 1;
            record.cursor = next.as_ref().map(Cursor::encode);
            if next.is_none() {
                record.done = true;
                record.done_at_ms = Some(clock.now_ms());
                record.done_by_release = Some(crate::RELEASE.to_owned());
            }
            checkpoint(store, clock, runner, &record).await.map_err(|e| lock_lost(e, number))?;
            if record.done {
                break;
            }
        }
        tracing::info!(migration = number, steps = record.steps, "migration done");
        applied.push(number);
    }
    Ok(Outcome::Complete { applied })
}

/// Runs every migration to the end, waiting (up to twice [`LEASE`], in one-second naps)
/// while another runner holds the lock: what the local stack does before it serves. Returns
/// the numbers this call applied.
///
/// # Errors
/// As [`run`]; [`MigrationError::Busy`] if the other runner still holds the lock;
/// [`MigrationError::Stopped`] after [`request_stop`].
pub async fn run_to_completion(
    store: &dyn Store,
    clock: &dyn Clock,
    migrations: &[&dyn Migration],
) -> Result<Vec<u32>, MigrationError> {
    let runner = runner_id();
    let mut waited = Duration::ZERO;
    loop {
        match run(store, clock, migrations, &runner, None).await? {
            Outcome::Complete { applied } => return Ok(applied),
            Outcome::Busy { .. } if stop_requested() => return Err(MigrationError::Stopped),
            Outcome::Busy { holder } if waited < 2 * LEASE => {
                tracing::info!(holder, "waiting for another migration runner");
                tokio::time::sleep(Duration::from_secs(1)).await;
                waited += Duration::from_secs(1);
            }
            Outcome::Busy { holder } => return Err(MigrationError::Busy { holder }),
            Outcome::Paused { .. } if stop_requested() => return Err(MigrationError::Stopped),
            // Without a deadline a run pauses only when asked to stop.
            Outcome::Paused { .. } => {}
        }
    }
}

/// A checkpoint's failure: its condition is the lock, so a condition failure means another
/// runner has it.
fn lock_lost(e: StoreError, number: u32) -> MigrationError {
    if e.is_condition_failure() { MigrationError::LockLost { number } } else { MigrationError::Store(e) }
}

/// Takes the lock, or names who holds it.
async fn acquire(store: &dyn Store, clock: &dyn Clock, runner: &str) -> Result<Option<String>, StoreError> {
    let lock = Item::new(keys::migration_lock())
        .with("runner", runner)
        .with("acquired_at_ms", clock.now_ms())
        .expiring_at(lease_end(clock));
    match store.put(Put::new(lock).if_not_exists()).await {
        Ok(_) => Ok(None),
        Err(e) if e.is_condition_failure() => {
            let holder = store.get(&keys::migration_lock()).await?;
            let holder = holder.and_then(|i| i.data.get("runner").and_then(|r| r.as_str()).map(str::to_owned));
            Ok(Some(holder.unwrap_or_else(|| "a runner whose lease just ended".into())))
        }
        Err(e) => Err(e),
    }
}

/// Writes the record and renews the lease, only while `runner` holds the lock.
async fn checkpoint(
    store: &dyn Store,
    clock: &dyn Clock,
    runner: &str,
    record: &MigrationRecord,
) -> Result<(), StoreError> {
    let renew = Update::new(keys::migration_lock())
        .expires_at(Some(lease_end(clock)))
        .when(Condition::Equals("runner".into(), runner.into()));
    let put = Put::new(Item::from_record(keys::migration(record.number), record)?);
    store.transact(vec![TxOp::Update(renew), TxOp::Put(put)]).await
}

async fn release(store: &dyn Store, runner: &str) -> Result<(), StoreError> {
    let delete = Delete::new(keys::migration_lock()).when(Condition::Equals("runner".into(), runner.into()));
    match store.delete(delete).await {
        Err(e) if e.is_condition_failure() => Ok(()),
        other => other.map(|_| ()),
    }
}

fn lease_end(clock: &dyn Clock) -> i64 {
    clock.now_secs() + i64::try_from(LEASE.as_secs()).unwrap_or(i64::MAX)
}

/// A fresh runner id: the release and a random part.
pub fn runner_id() -> String {
    format!("{}/{}", crate::RELEASE, ulid::Ulid::new())
}
