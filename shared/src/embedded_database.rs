//! The embedded database: one SQLite file in the data directory, holding the embedded store's
//! items and the embedded queues' messages, opened once per process and shared by both.
//!
//! One writer, several readers, as SQLite's write-ahead log allows
//! (<https://sqlite.org/wal.html#concurrency>):
//! - Every write takes the one writing connection from a fair (first come, first served)
//!   async lock and runs on the calling task ([`Database::write`]): waiting writers hold no
//!   thread, and the store and the queues (which share the file) never meet SQLite's busy
//!   handler inside one process. Large writes run on the blocking pool instead
//!   ([`Database::write_blocking`]).
//! - Reads run on the calling task too, on one of a few read-only connections
//!   ([`Database::read`]), in parallel with each other and with the writer. A read sees every
//!   write whose call has returned (WAL readers see the last commit when their statement
//!   starts). Reads that may return many rows go to the blocking pool
//!   ([`Database::read_blocking`]).
//!
//! Handing a point read or a small write to another thread (the blocking pool, a writer
//! thread) costs more than the SQLite work itself: on the embedded store's benchmark
//! (`cargo bench -p shared --bench embedded_store`), run back to back against the blocking
//! pool behind one mutex, a `get` takes 0.08 of the time and a `put` 0.57; a dedicated
//! writer thread instead doubled a `put`'s time (waking the thread each way).
//! The write-ahead log is copied into the file by a passive checkpoint every 250 ms, from a
//! thread with its own connection, not inside a commit.
//!
//! Why not a pooling crate: the pools on offer (`r2d2_sqlite`, `deadpool-sqlite`,
//! `tokio-rusqlite`, `async-sqlite`) hand every call to another thread and do not tell readers
//! from the writer; running on the task is the point here, and it takes less code than
//! adapting a pool would.
//!
//! Durability: `synchronous = NORMAL` in WAL mode. A commit is atomic and survives the
//! process crashing; a power loss or an operating-system crash may lose the last commits
//! before the next checkpoint's sync, never corrupt the file
//! (<https://sqlite.org/pragma.html#pragma_synchronous>). This is the local stack's store;
//! production data lives in DynamoDB.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, TransactionBehavior, params};

/// How often the background checkpoint runs.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// The most read connections one database keeps.
const MAX_READERS: usize = 4;
/// How many times a connection retries a lock another process holds, about five seconds in
/// all (see [`wait_for_lock`]).
const BUSY_ATTEMPTS: u32 = 1_010;

/// A call handed to the blocking pool panicked; whatever transaction it had open was rolled
/// back.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a call to the embedded database panicked")]
pub struct Panicked;

/// A handle on an embedded database; clones share it.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file, `None` in memory.
    path: Option<PathBuf>,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    /// `None` in memory: an in-memory database is private to its one connection, so reads
    /// take the writer.
    readers: Option<Arc<Readers>>,
}

struct Readers {
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection in `idle`: holding one guarantees a connection to take.
    free: Arc<tokio::sync::Semaphore>,
}

/// A read connection taken from the pool, put back when dropped (also on a panic).
struct Lease<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
}

impl Lease<'_> {
    fn take(readers: &Readers) -> Lease<'_> {
        let conn = readers.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Lease { readers, conn }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
    }
}

/// The databases open in this process, by absolute path, so that the store and the queues
/// share one writer.
fn open_databases() -> &'static Mutex<HashMap<PathBuf, Weak<Inner>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Inner>>>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
}

impl Database {
    /// Opens (creating it and its directory if needed) the database file at `path`, or
    /// returns the handle this process already has on it.
    ///
    /// # Errors
    /// If the directory or the file cannot be created or opened.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).context("creating the data directory")?;
        }
        let path = std::path::absolute(path).context("resolving the database path")?;
        let mut open = open_databases().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(inner) = open.get(&path).and_then(Weak::upgrade) {
            return Ok(Self { inner });
        }
        let writer = open_connection(&path)?;
        let readers = (0..reader_count())
            .map(|_| {
                let conn = open_connection(&path)?;
                conn.execute_batch("PRAGMA query_only = ON;").context("configuring a read connection")?;
                Ok(conn)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let inner = Arc::new(Inner {
            path: Some(path.clone()),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Some(Arc::new(Readers {
                free: Arc::new(tokio::sync::Semaphore::new(readers.len())),
                idle: Mutex::new(readers),
            })),
        });
        checkpoint_in_background(&path, Arc::downgrade(&inner));
        open.retain(|_, db| db.strong_count() > 0);
        open.insert(path, Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// A database in memory, private to this handle and its clones, gone when the last is
    /// dropped (benchmarks and unit tests).
    ///
    /// # Errors
    /// If SQLite fails.
    pub fn in_memory() -> anyhow::Result<Self> {
        let conn = Connection::open_in_memory().context("opening an in-memory database")?;
        Ok(Self {
            inner: Arc::new(Inner { path: None, writer: Arc::new(tokio::sync::Mutex::new(conn)), readers: None }),
        })
    }

    /// Applies the schema steps of one component (the store, the queues) that have not run
    /// yet, in order, tracked in `schema_migrations`. Blocks until done (it runs while a
    /// component opens, which may be while others already use the database: a file is
    /// migrated on a connection of its own, which waits for the writer's transaction like
    /// another process would).
    ///
    /// # Errors
    /// If a step fails (none of the component's pending steps is then applied), or if an
    /// in-memory database is in use by a call in flight (it has a single connection).
    pub fn migrate(&self, component: &str, steps: &[&str]) -> anyhow::Result<()> {
        let applied = match &self.inner.path {
            Some(path) => apply_migrations(&mut open_connection(path)?, component, steps),
            None => {
                let mut conn = self.inner.writer.try_lock().context("the in-memory database is in use")?;
                apply_migrations(&mut conn, component, steps)
            }
        };
        applied.with_context(|| format!("migrating the embedded {component}"))
    }

    /// Runs `f` on the writing connection, on the calling task, after every write that asked
    /// before it (for small writes: a few rows). `f` opens and commits its own transaction;
    /// if it panics, the transaction is rolled back and the connection stays usable.
    pub async fn write<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut conn = self.inner.writer.lock().await;
        f(&mut conn)
    }

    /// As [`Database::write`], on the blocking pool: for writes that touch many rows.
    ///
    /// # Errors
    /// [`Panicked`] if `f` panicked.
    pub async fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<T, Panicked> {
        let mut conn = Arc::clone(&self.inner.writer).lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut conn)).await.map_err(|_| Panicked)
    }

    /// Runs `f` on a read connection, on the calling task (for reads of a few rows: a point
    /// read, a short page). Waits for a free connection if all are in use.
    pub async fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let Some(readers) = &self.inner.readers else {
            return self.write(|conn| f(conn)).await;
        };
        // Never closed, so acquiring cannot fail; one permit per connection, so one is idle.
        let _permit = readers.free.acquire().await;
        let lease = Lease::take(readers);
        match lease.conn.as_ref() {
            Some(conn) => f(conn),
            None => {
                drop(lease);
                self.write(|conn| f(conn)).await
            }
        }
    }

    /// As [`Database::read`], on the blocking pool: for reads that may return many rows.
    ///
    /// # Errors
    /// [`Panicked`] if `f` panicked.
    pub async fn read_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, Panicked> {
        let Some(readers) = &self.inner.readers else {
            return self.write_blocking(move |conn| f(conn)).await;
        };
        let readers = Arc::clone(readers);
        let permit = Arc::clone(&readers.free).acquire_owned().await.map_err(|_| Panicked)?;
        let writer = Arc::clone(&self.inner.writer);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let lease = Lease::take(&readers);
            match lease.conn.as_ref() {
                Some(conn) => f(conn),
                None => f(&writer.blocking_lock()),
            }
        })
        .await
        .map_err(|_| Panicked)
    }
}

fn reader_count() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from).clamp(2, MAX_READERS)
}

/// Opens a connection with the settings every connection to the file uses: write-ahead log,
/// `synchronous = NORMAL`, a busy handler for locks held by other processes, and checkpoints
/// left to [`checkpoint_in_background`] (a commit checkpoints only if the log passes 10,000
/// pages, about 40 MB, which the background checkpoints keep it far below).
fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).context("opening the database")?;
    conn.busy_handler(Some(wait_for_lock)).context("setting the busy handler")?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 10000;",
    )
    .context("configuring the database")?;
    Ok(conn)
}

/// SQLite's busy handler, called when another process (a second local stack on the same
/// data directory, a `sqlite3` shell) holds the lock a statement needs; `attempt` counts from
/// 0. Naps start at 20 µs and double up to 5 ms: a commit holds the lock for tens of
/// microseconds, and SQLite's own `busy_timeout` naps start at a millisecond. Gives up (the
/// statement fails with `SQLITE_BUSY`) after about five seconds.
fn wait_for_lock(attempt: i32) -> bool {
    let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    if attempt >= BUSY_ATTEMPTS {
        return false;
    }
    std::thread::sleep(Duration::from_micros((20_u64 << attempt.min(8)).min(5_000)));
    true
}

/// Copies the write-ahead log into the database file every [`CHECKPOINT_INTERVAL`], from a
/// thread with its own connection, for as long as `owner` lives.
///
/// SQLite's default checkpoints run inside a commit, every 1,000 pages: the committing
/// request then waits for the copy and its sync (milliseconds), and every write queued
/// behind it waits too. A passive checkpoint on another connection blocks neither readers
/// nor writers (<https://sqlite.org/wal.html#ckpt>), so commits stay short.
fn checkpoint_in_background(path: &Path, owner: Weak<Inner>) {
    let path = path.to_owned();
    let started = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        let Ok(conn) = open_connection(&path) else { return };
        while owner.strong_count() > 0 {
            std::thread::sleep(CHECKPOINT_INTERVAL);
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "a background checkpoint did not run; the next one will");
            }
        }
    });
    if let Err(e) = started {
        // Commits still checkpoint past the log's limit.
        tracing::warn!(error = %e, "the background checkpoint thread did not start");
    }
}

/// The steps of SQLite's plan for `sql` with `params` (`EXPLAIN QUERY PLAN`'s detail
/// column), for the tests that check a statement searches an index.
#[cfg(test)]
pub(crate) fn query_plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
    let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("the statement prepares");
    st.query_map(params, |r| r.get::<_, String>(3)).expect("the plan reads").map(|step| step.expect("a step")).collect()
}

/// Applies the steps of `component` not yet recorded in `schema_migrations`, in one
/// transaction.
///
/// # Errors
/// If SQLite refuses a step.
pub(crate) fn apply_migrations(conn: &mut Connection, component: &str, steps: &[&str]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, step INTEGER NOT NULL, \
         PRIMARY KEY (component, step))",
    )?;
    let applied: i64 =
        tx.query_row("SELECT COUNT(*) FROM schema_migrations WHERE component = ?1", [component], |r| r.get(0))?;
    for (step, sql) in steps.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (component, step) VALUES (?1, ?2)",
            params![component, i64::try_from(step).unwrap_or(i64::MAX)],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[&str] = &["CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"];

    fn open(dir: &tempfile::TempDir) -> Database {
        let db = Database::open(&dir.path().join("nested").join("db.sqlite3")).unwrap();
        db.migrate("t", STEPS).unwrap();
        db
    }

    async fn count(db: &Database) -> i64 {
        db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap()).await
    }

    /// Starts a write of row 1 that stays mid-transaction until the returned sender sends.
    async fn hold_a_write(
        db: &Database,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<Result<(), Panicked>>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, writing) = tokio::sync::oneshot::channel();
        let writer = db.clone();
        let write = tokio::spawn(async move {
            writer
                .write_blocking(move |c| {
                    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
                    tx.execute("INSERT INTO t (k, v) VALUES (1, 'x')", []).unwrap();
                    started.send(()).unwrap();
                    held.recv().unwrap();
                    tx.commit().unwrap();
                })
                .await
        });
        writing.await.unwrap();
        (release, write)
    }

    #[tokio::test]
    async fn one_database_per_file_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(&dir);
        let b = Database::open(&dir.path().join("nested/./db.sqlite3")).unwrap();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        // Migrating twice applies each step once.
        b.migrate("t", STEPS).unwrap();
        drop((a, b));
        let c = open(&dir);
        assert_eq!(count(&c).await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_component_opening_while_a_write_is_in_flight_migrates_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let (release, write) = hold_a_write(&db).await;
        let opener = db.clone();
        let migrated = std::thread::spawn(move || opener.migrate("u", &["CREATE TABLE u (k INTEGER PRIMARY KEY)"]));
        std::thread::sleep(Duration::from_millis(50));
        release.send(()).unwrap();
        migrated.join().unwrap().expect("migrated once the write committed");
        write.await.unwrap().unwrap();
        let tables: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('t', 'u')", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!((tables, count(&db).await), (2, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_read_sees_the_writes_that_returned() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let tasks: Vec<_> = (0..64_i64)
            .map(|k| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.write(|c| c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k]).unwrap()).await;
                    let seen: i64 = db
                        .read(|c| c.query_row("SELECT COUNT(*) FROM t WHERE k = ?1", [k], |r| r.get(0)).unwrap())
                        .await;
                    assert_eq!(seen, 1, "row {k} written but not read back");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(count(&db).await, 64);
        let many = db.read_blocking(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap());
        assert_eq!(many.await.unwrap(), 64);
        let written = db.write_blocking(|c| c.execute("DELETE FROM t WHERE k >= 32", []).unwrap());
        assert_eq!(written.await.unwrap(), 32);
        assert_eq!(count(&db).await, 32);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let (release, write) = hold_a_write(&db).await;
        // The writer is mid-transaction; a read answers from the last commit meanwhile.
        let read = tokio::time::timeout(Duration::from_secs(10), count(&db)).await;
        release.send(()).unwrap();
        assert_eq!(read.expect("a read waited for the writer"), 0);
        write.await.unwrap().unwrap();
        assert_eq!(count(&db).await, 1);
    }

    #[tokio::test]
    async fn a_write_that_panics_is_rolled_back_and_the_writer_goes_on() {
        let db = Database::in_memory().unwrap();
        db.migrate("t", STEPS).unwrap();
        let panicking = db.clone();
        let failed = tokio::spawn(async move {
            panicking
                .write(|c| {
                    let tx = c.transaction().unwrap();
                    tx.execute("INSERT INTO t (k, v) VALUES (1, 'x')", []).unwrap();
                    panic!("a bug in a write");
                })
                .await;
        })
        .await;
        assert!(failed.is_err());
        let failed = db.write_blocking(|c| {
            let tx = c.transaction().unwrap();
            tx.execute("INSERT INTO t (k, v) VALUES (3, 'z')", []).unwrap();
            panic!("a bug in a large write");
        });
        assert!(matches!(failed.await, Err(Panicked)));
        db.write(|c| c.execute("INSERT INTO t (k, v) VALUES (2, 'y')", []).unwrap()).await;
        let keys: Vec<i64> = db
            .read(|c| {
                let mut st = c.prepare("SELECT k FROM t").unwrap();
                st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
            })
            .await;
        assert_eq!(keys, [2]);
    }

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_about_five_seconds() {
        let naps: u64 = (0..BUSY_ATTEMPTS).map(|a| (20_u64 << a.min(8)).min(5_000)).sum();
        assert!((4_900_000..=5_100_000).contains(&naps), "{naps} µs");
        assert!(wait_for_lock(0));
        assert!(!wait_for_lock(i32::try_from(BUSY_ATTEMPTS).unwrap()));
    }
}
