//! The embedded queue: durable queues in the embedded SQLite database, with the semantics of
//! SQS (visibility timeout, receive counts, dead-letter after too many receives, FIFO groups
//! and five-minute deduplication), so the local stack behaves as the cloud does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;

use super::{Outgoing, Queue, QueueError, Received, validate_max};
use crate::clock::Clock;
use crate::embedded_database::Database;
use crate::id::MessageId;

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE queue_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        body TEXT NOT NULL,
        group_id TEXT,
        sent_at INTEGER NOT NULL,
        visible_at INTEGER NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt TEXT
    );
    CREATE INDEX queue_messages_order ON queue_messages (queue, seq);
    CREATE INDEX queue_messages_group ON queue_messages (queue, group_id, visible_at) WHERE group_id IS NOT NULL;
    CREATE UNIQUE INDEX queue_messages_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
    CREATE TABLE queue_dedup (
        queue TEXT NOT NULL,
        dedup_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (queue, dedup_id)
    ) WITHOUT ROWID;",
    // Every FIFO send forgets the expired deduplication ids; without this index that scanned
    // every id of the queue's last five minutes, so a burst of sends grew quadratically.
    "CREATE INDEX queue_dedup_expiry ON queue_dedup (queue, expires_at);",
];

/// Forgets a queue's (`?1`) deduplication ids expired at `?2`, on every FIFO send.
const FORGET_EXPIRED_DEDUP_IDS: &str = "DELETE FROM queue_dedup WHERE queue = ?1 AND expires_at <= ?2";

/// How long a FIFO deduplication id is remembered (as in SQS).
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// How many visible candidates one receive looks at.
const SCAN: i64 = 100;

/// How one queue behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// How long a received message stays hidden.
    pub visibility_timeout: Duration,
    /// After this many receives without an ack, the next receive moves it to the DLQ.
    pub max_receives: u32,
    /// FIFO ordering and deduplication.
    pub fifo: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { visibility_timeout: Duration::from_secs(60), max_receives: 5, fifo: false }
    }
}

/// The embedded queues; hands out [`EmbeddedQueue`]s that share the process's [`Database`]
/// for its file (and so its writer, with the embedded store).
#[derive(Clone)]
pub struct QueueDb {
    db: Database,
    sent: Arc<Notify>,
    clock: Arc<dyn Clock>,
}

impl QueueDb {
    /// Opens (creating if needed) the queue tables in the database at `path`.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] if the database cannot be opened or migrated.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, QueueError> {
        Self::on(Database::open(path).map_err(QueueError::Unavailable)?, clock)
    }

    /// Queues in memory, gone when dropped (benchmarks and unit tests).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] if SQLite fails.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Result<Self, QueueError> {
        Self::on(Database::in_memory().map_err(QueueError::Unavailable)?, clock)
    }

    fn on(db: Database, clock: Arc<dyn Clock>) -> Result<Self, QueueError> {
        db.migrate("queues", MIGRATIONS).map_err(QueueError::Unavailable)?;
        Ok(Self { db, sent: Arc::new(Notify::new()), clock })
    }

    /// The queue `name` (its dead letters live under `name` + `-dlq`).
    pub fn queue(&self, name: &str, settings: QueueSettings) -> EmbeddedQueue {
        EmbeddedQueue { db: self.clone(), name: name.into(), dlq: format!("{name}-dlq").into(), settings }
    }

    /// A write, on the calling task: every queue operation touches a few rows (a receive at
    /// most [`SCAN`]).
    async fn run<T>(&self, f: impl FnOnce(&mut Connection, i64) -> Result<T, QueueError>) -> Result<T, QueueError> {
        let now = self.clock.now_ms();
        self.db.write(|conn| f(conn, now)).await
    }

    async fn read<T>(&self, f: impl FnOnce(&Connection, i64) -> Result<T, QueueError>) -> Result<T, QueueError> {
        let now = self.clock.now_ms();
        self.db.read(|conn| f(conn, now)).await
    }
}

fn unavailable(e: rusqlite::Error) -> QueueError {
    QueueError::Unavailable(anyhow::Error::new(e).context("embedded queue"))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The embedded adapter of [`Queue`].
#[derive(Clone)]
pub struct EmbeddedQueue {
    db: QueueDb,
    name: Arc<str>,
    dlq: Arc<str>,
    settings: QueueSettings,
}

impl EmbeddedQueue {
    /// Messages waiting or in flight (for operators and tests).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] if SQLite fails.
    pub async fn depth(&self) -> Result<u64, QueueError> {
        let name = self.name.clone();
        self.db
            .read(move |conn, _| {
                conn.query_row("SELECT COUNT(*) FROM queue_messages WHERE queue = ?1", [&*name], |r| r.get::<_, i64>(0))
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .map_err(unavailable)
            })
            .await
    }

    async fn any_visible(&self) -> Result<bool, QueueError> {
        let name = self.name.clone();
        self.db
            .read(move |conn, now| {
                conn.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue = ?1 AND visible_at <= ?2)",
                )
                .and_then(|mut st| st.query_row(params![&*name, now], |r| r.get(0)))
                .map_err(unavailable)
            })
            .await
    }

    fn try_receive(&self, max: u32) -> impl FnOnce(&mut Connection, i64) -> Result<Vec<Received>, QueueError> + use<> {
        let (name, dlq, settings) = (self.name.clone(), self.dlq.clone(), self.settings);
        move |conn, now| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
            let candidates: Vec<(i64, String, String, Option<String>, i64)> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT seq, id, body, group_id, receive_count FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?3",
                    )
                    .map_err(unavailable)?;
                st.query_map(params![&*name, now, SCAN], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?
            };
            let mut out = Vec::new();
            let mut blocked_groups = std::collections::HashSet::new();
            let mut batch_groups = std::collections::HashSet::new();
            for (seq, id, body, group_id, count) in candidates {
                if out.len() >= max as usize {
                    break;
                }
                if settings.fifo
                    && let Some(g) = &group_id
                {
                    if blocked_groups.contains(g) {
                        continue;
                    }
                    if !batch_groups.contains(g) {
                        let in_flight: bool = tx
                            .prepare_cached(
                                "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue = ?1 AND group_id = ?2
                                 AND receipt IS NOT NULL AND visible_at > ?3)",
                            )
                            .and_then(|mut st| st.query_row(params![&*name, g, now], |r| r.get(0)))
                            .map_err(unavailable)?;
                        if in_flight {
                            blocked_groups.insert(g.clone());
                            continue;
                        }
                    }
                }
                if count >= i64::from(settings.max_receives) {
                    tx.execute(
                        "UPDATE queue_messages SET queue = ?1, receive_count = 0, visible_at = ?2, receipt = NULL WHERE seq = ?3",
                        params![&*dlq, now, seq],
                    )
                    .map_err(unavailable)?;
                    tracing::warn!(queue = %name, message_id = %id, receives = count, "message moved to the dead-letter queue");
                    continue;
                }
                let receipt = MessageId::new().to_string();
                tx.execute(
                    "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?1, receipt = ?2 WHERE seq = ?3",
                    params![now + ms(settings.visibility_timeout), receipt, seq],
                )
                .map_err(unavailable)?;
                if let Some(g) = &group_id {
                    batch_groups.insert(g.clone());
                }
                out.push(Received {
                    id,
                    receipt,
                    body,
                    receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                    group_id,
                });
            }
            tx.commit().map_err(unavailable)?;
            Ok(out)
        }
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_fifo(&self) -> bool {
        self.settings.fifo
    }

    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        message.validate(self.settings.fifo)?;
        let name = self.name.clone();
        let id = self
            .db
            .run(move |conn, now| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
                if let Some(dedup) = &message.dedup_id {
                    let existing: Option<String> = tx
                        .query_row(
                            "SELECT message_id FROM queue_dedup WHERE queue = ?1 AND dedup_id = ?2 AND expires_at > ?3",
                            params![&*name, dedup, now],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(unavailable)?;
                    if let Some(id) = existing {
                        return Ok(id);
                    }
                }
                let id = MessageId::new().to_string();
                tx.execute(
                    "INSERT INTO queue_messages (id, queue, body, group_id, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, &*name, message.body, message.group_id, now, now + ms(message.delay)],
                )
                .map_err(unavailable)?;
                if let Some(dedup) = &message.dedup_id {
                    tx.execute(FORGET_EXPIRED_DEDUP_IDS, params![&*name, now])
                        .map_err(unavailable)?;
                    tx.execute(
                        "INSERT OR REPLACE INTO queue_dedup (queue, dedup_id, message_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        params![&*name, dedup, id, now + DEDUP_WINDOW_MS],
                    )
                    .map_err(unavailable)?;
                }
                tx.commit().map_err(unavailable)?;
                Ok(id)
            })
            .await?;
        self.db.sent.notify_waiters();
        Ok(id)
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Received>, QueueError> {
        validate_max(max)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.db.sent.notified();
            // Polls find nothing most of the time: look on a read connection first, so an
            // idle consumer never queues behind the writer.
            let got = if self.any_visible().await? { self.db.run(self.try_receive(max)).await? } else { Vec::new() };
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Wake on a send, or poll for messages whose delay or visibility ran out.
            let nap = (deadline - now).min(Duration::from_millis(100));
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let (name, receipt) = (self.name.clone(), receipt.to_owned());
        // As in SQS, acking with a receipt that is no longer current succeeds without effect.
        self.db
            .run(move |conn, _| {
                conn.execute("DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2", params![&*name, receipt])
                    .map(|_| ())
                    .map_err(unavailable)
            })
            .await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        if timeout > Duration::from_secs(12 * 3600) {
            return Err(QueueError::Invalid("visibility timeout is at most 12 hours".into()));
        }
        let (name, receipt) = (self.name.clone(), receipt.to_owned());
        let changed = self
            .db
            .run(move |conn, now| {
                conn.execute(
                    "UPDATE queue_messages SET visible_at = ?1 WHERE queue = ?2 AND receipt = ?3 AND visible_at > ?4",
                    params![now + ms(timeout), &*name, receipt, now],
                )
                .map_err(unavailable)
            })
            .await?;
        if changed == 0 {
            return Err(QueueError::StaleReceipt);
        }
        if timeout.is_zero() {
            self.db.sent.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<Received>, QueueError> {
        validate_max(max)?;
        let dlq = self.dlq.clone();
        self.db
            .read(move |conn, _| {
                let mut st = conn
                    .prepare_cached(
                        "SELECT id, body, group_id FROM queue_messages WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(unavailable)?;
                st.query_map(params![&*dlq, max], |r| {
                    Ok(Received {
                        id: r.get(0)?,
                        receipt: String::new(),
                        body: r.get(1)?,
                        receive_count: 0,
                        group_id: r.get(2)?,
                    })
                })
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)
            })
            .await
    }

    async fn redrive(&self, max: u32) -> Result<u32, QueueError> {
        let (name, dlq) = (self.name.clone(), self.dlq.clone());
        let moved = self
            .db
            .run(move |conn, now| {
                conn.execute(
                    "UPDATE queue_messages SET queue = ?1, receive_count = 0, visible_at = ?2, receipt = NULL
                     WHERE seq IN (SELECT seq FROM queue_messages WHERE queue = ?3 ORDER BY seq LIMIT ?4)",
                    params![&*name, now, &*dlq, max],
                )
                .map_err(unavailable)
            })
            .await?;
        if moved > 0 {
            self.db.sent.notify_waiters();
        }
        Ok(u32::try_from(moved).unwrap_or(u32::MAX))
    }

    async fn backlog(&self) -> Result<super::Backlog, QueueError> {
        let (name, dlq) = (self.name.clone(), self.dlq.clone());
        self.db
            .read(move |conn, _| {
                let count = |queue: &str| {
                    conn.query_row("SELECT COUNT(*) FROM queue_messages WHERE queue = ?1", [queue], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .map_err(unavailable)
                };
                Ok(super::Backlog { messages: count(&name)?, dead_letters: count(&dlq)? })
            })
            .await
    }

    async fn send_to_dead_letters(&self, body: &str, group_id: Option<&str>) -> Result<(), QueueError> {
        let (dlq, body, group) = (self.dlq.clone(), body.to_owned(), group_id.map(str::to_owned));
        self.db
            .run(move |conn, now| {
                conn.execute(
                    "INSERT INTO queue_messages (id, queue, body, group_id, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![MessageId::new().to_string(), &*dlq, body, group, now],
                )
                .map(|_| ())
                .map_err(unavailable)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_expired_deduplication_ids_searches_an_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::embedded_database::apply_migrations(&mut conn, "queues", MIGRATIONS).unwrap();
        let plan = crate::embedded_database::query_plan(&conn, FORGET_EXPIRED_DEDUP_IDS, params!["q", 0]);
        assert!(plan.iter().any(|step| step.contains("INDEX queue_dedup_expiry (queue=? AND expires_at")), "{plan:?}");
    }
}
