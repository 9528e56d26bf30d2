//! The embedded store: one SQLite table in a file under the data directory.
//!
//! SQLite is chosen over redb because the port is relational at heart (range queries over
//! a primary key and two secondary indexes, multi-row atomic transactions) and SQLite gives
//! exactly that with covering B-tree indexes, a write-ahead log for crash safety, and a file
//! any developer can open with the `sqlite3` shell to look at their local data.
//!
//! Every read is a key or index search: the schema has the primary key `(pk, sk)` and one
//! partial index per GSI, and a test checks the query plans contain no table scan.
//!
//! Connections, the writer thread, checkpoints and durability: [`crate::embedded_database`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::{Map, Value};

use super::{
    Condition, Delete, Index, Item, Key, Page, Put, Query, Scan, SortKey, Store, StoreError, TxOp, Update,
    prefix_successor, validate_put, validate_transaction,
};
use crate::clock::Clock;
use crate::embedded_database::{Database, Panicked};

/// The schema, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &["CREATE TABLE items (
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        gsi1pk TEXT, gsi1sk TEXT,
        gsi2pk TEXT, gsi2sk TEXT,
        expires_at INTEGER,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (pk, sk)
    ) WITHOUT ROWID;
    CREATE INDEX items_gsi1 ON items (gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
    CREATE INDEX items_gsi2 ON items (gsi2pk, gsi2sk, pk, sk) WHERE gsi2pk IS NOT NULL;
    CREATE INDEX items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;"];

const COLUMNS: &str = "pk, sk, gsi1pk, gsi1sk, gsi2pk, gsi2sk, expires_at, version, data";

fn unavailable(e: impl std::error::Error + Send + Sync + 'static, what: &str) -> StoreError {
    StoreError::Unavailable(anyhow::Error::new(e).context(format!("embedded store: {what}")))
}

/// The embedded adapter of [`Store`], on the process's [`Database`] for its file: writes
/// on the database's writer thread, reads inline on a read connection.
#[derive(Clone)]
pub struct SqliteStore {
    db: Database,
    clock: Arc<dyn Clock>,
}

/// The largest page read on the calling task; larger ones go to the blocking pool.
const INLINE_PAGE: u32 = 100;
/// The most operations of a transaction written on the calling task; larger ones go to the
/// blocking pool.
const INLINE_OPS: usize = 8;

impl SqliteStore {
    /// Opens the store in the database file at `path`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the file cannot be opened or migrated.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let db = Database::open(path).map_err(|e| StoreError::Unavailable(e.context("embedded store")))?;
        Self::on(db, clock)
    }

    /// A store in memory, gone when dropped (benchmarks and unit tests).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if SQLite fails.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let db = Database::in_memory().map_err(|e| StoreError::Unavailable(e.context("embedded store")))?;
        Self::on(db, clock)
    }

    fn on(db: Database, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        db.migrate("items", MIGRATIONS).map_err(StoreError::Unavailable)?;
        Ok(Self { db, clock })
    }

    /// A write: on the calling task when small, on the blocking pool when it may touch
    /// many rows (see [`crate::embedded_database`]).
    async fn write<T: Send + 'static>(
        &self,
        large: bool,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if large { self.db.write_blocking(f).await.map_err(panicked)? } else { self.db.write(f).await }
    }
}

fn panicked(e: Panicked) -> StoreError {
    StoreError::Unavailable(anyhow::Error::new(e).context("embedded store"))
}

fn read_item(conn: &Connection, key: &Key, now: i64) -> Result<Option<Item>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM items WHERE pk = ?1 AND sk = ?2"))
        .and_then(|mut st| st.query_row(params![key.pk, key.sk], row_to_item).optional())
        .map_err(|e| unavailable(e, "reading an item"))?
        .transpose()
        .map(|item| item.filter(|i| i.is_live(now)))
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Item, StoreError>> {
    let index = |p: Option<String>, s: Option<String>| p.zip(s).map(|(pk, sk)| Key { pk, sk });
    let data: String = row.get(8)?;
    let version: i64 = row.get(7)?;
    let key = Key { pk: row.get(0)?, sk: row.get(1)? };
    let gsi1 = index(row.get(2)?, row.get(3)?);
    let gsi2 = index(row.get(4)?, row.get(5)?);
    let expires_at: Option<i64> = row.get(6)?;
    Ok(match serde_json::from_str::<Map<String, Value>>(&data) {
        Ok(data) => Ok(Item { key, gsi1, gsi2, expires_at, version: u64::try_from(version).unwrap_or(0), data }),
        Err(e) => Err(StoreError::Corrupt(format!("item {}/{}: {e}", key.pk, key.sk))),
    })
}

fn write_item(conn: &Connection, item: &Item) -> Result<(), StoreError> {
    let data = serde_json::to_string(&item.data).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let version = i64::try_from(item.version).map_err(|_| StoreError::Invalid("version overflow".into()))?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO items ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut st| {
        st.execute(params![
            item.key.pk,
            item.key.sk,
            item.gsi1.as_ref().map(|k| &k.pk),
            item.gsi1.as_ref().map(|k| &k.sk),
            item.gsi2.as_ref().map(|k| &k.pk),
            item.gsi2.as_ref().map(|k| &k.sk),
            item.expires_at,
            version,
            data,
        ])
    })
    .map_err(|e| unavailable(e, "writing an item"))?;
    Ok(())
}

fn delete_row(conn: &Connection, key: &Key) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut st| st.execute(params![key.pk, key.sk]))
        .map_err(|e| unavailable(e, "deleting an item"))?;
    Ok(())
}

fn check(condition: Option<&Condition>, current: Option<&Item>) -> bool {
    condition.is_none_or(|c| c.holds(current))
}

/// The write an operation makes once its condition holds.
enum Write {
    Item(Item),
    Remove(Key),
    Nothing,
}

fn plan(op: &TxOp, current: Option<&Item>) -> Result<Option<Write>, StoreError> {
    Ok(match op {
        TxOp::Put(p) => check(p.condition.as_ref(), current).then(|| {
            let mut item = p.item.clone();
            item.version += 1;
            Write::Item(item)
        }),
        TxOp::Update(u) => match current {
            Some(cur) if check(u.condition.as_ref(), Some(cur)) => {
                let mut item = cur.clone();
                u.apply_to(&mut item)?;
                Some(Write::Item(item))
            }
            _ => None,
        },
        TxOp::Delete(d) => check(d.condition.as_ref(), current).then(|| Write::Remove(d.key.clone())),
        TxOp::Check(_, c) => c.holds(current).then_some(Write::Nothing),
    })
}

fn apply(conn: &Connection, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Item(item) => write_item(conn, item),
        Write::Remove(key) => delete_row(conn, key),
        Write::Nothing => Ok(()),
    }
}

/// Runs `ops` in one SQLite transaction; returns the written items in op order.
fn run_ops(conn: &mut Connection, ops: &[TxOp], now: i64) -> Result<Vec<Option<Item>>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| unavailable(e, "starting a transaction"))?;
    let mut writes = Vec::with_capacity(ops.len());
    let mut failed = Vec::new();
    let mut previous = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let current = read_item(&tx, op.key(), now)?;
        match plan(op, current.as_ref())? {
            Some(w) => writes.push(w),
            None => failed.push(i),
        }
        previous.push(current);
    }
    if !failed.is_empty() {
        // Dropping `tx` rolls back; nothing was written yet anyway.
        return Err(StoreError::TransactionCanceled { failed });
    }
    for w in &writes {
        apply(&tx, w)?;
    }
    tx.commit().map_err(|e| unavailable(e, "committing"))?;
    Ok(writes
        .into_iter()
        .zip(previous)
        .map(|(w, prev)| match w {
            Write::Item(item) => Some(item),
            Write::Remove(_) => prev,
            Write::Nothing => None,
        })
        .collect())
}

fn single(result: Result<Vec<Option<Item>>, StoreError>) -> Result<Option<Item>, StoreError> {
    match result {
        Ok(mut items) => Ok(items.pop().flatten()),
        Err(StoreError::TransactionCanceled { .. }) => Err(StoreError::ConditionFailed),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl crate::store::ExpirySweep for SqliteStore {
    /// Physically removes expired items (reads already skip them); returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if SQLite fails.
    async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_secs();
        self.write(true, move |conn| {
            conn.execute("DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?1", [now])
                .map_err(|e| unavailable(e, "sweeping expired items"))
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        key.validate()?;
        let now = self.clock.now_secs();
        self.db.read(|conn| read_item(conn, key, now)).await
    }

    async fn put(&self, put: Put) -> Result<Item, StoreError> {
        validate_put(&put)?;
        let now = self.clock.now_secs();
        self.write(false, move |conn| single(run_ops(conn, &[TxOp::Put(put)], now)))
            .await?
            .ok_or(StoreError::ConditionFailed)
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        update.validate()?;
        let now = self.clock.now_secs();
        self.write(false, move |conn| single(run_ops(conn, &[TxOp::Update(update)], now)))
            .await?
            .ok_or(StoreError::ConditionFailed)
    }

    async fn delete(&self, delete: Delete) -> Result<Option<Item>, StoreError> {
        delete.key.validate()?;
        if let Some(c) = &delete.condition {
            c.validate()?;
        }
        let now = self.clock.now_secs();
        self.write(false, move |conn| single(run_ops(conn, &[TxOp::Delete(delete)], now))).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        query.validate()?;
        let now = self.clock.now_secs();
        if query.limit <= INLINE_PAGE {
            self.db.read(|conn| run_query(conn, &query, now)).await
        } else {
            self.db.read_blocking(move |conn| run_query(conn, &query, now)).await.map_err(panicked)?
        }
    }

    async fn scan(&self, scan: Scan) -> Result<Page, StoreError> {
        scan.validate()?;
        let now = self.clock.now_secs();
        self.db.read_blocking(move |conn| run_scan(conn, &scan, now)).await.map_err(panicked)?
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        let now = self.clock.now_secs();
        self.write(ops.len() > INLINE_OPS, move |conn| run_ops(conn, &ops, now).map(|_| ())).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(|e| unavailable(e, "ping"))).await
    }
}

/// The SQL and parameters of a query (also used by the query-plan test).
fn query_sql(q: &Query, now: i64) -> (String, Vec<SqlValue>) {
    let (pcol, scol) = match q.index {
        None => ("pk", "sk"),
        Some(Index::Gsi1) => ("gsi1pk", "gsi1sk"),
        Some(Index::Gsi2) => ("gsi2pk", "gsi2sk"),
    };
    let mut sql = format!("SELECT {COLUMNS} FROM items WHERE {pcol} = ?");
    let mut args: Vec<SqlValue> = vec![q.partition.clone().into()];
    let mut bound = |op: &str, v: &str, sql: &mut String| {
        sql.push_str(&format!(" AND {scol} {op} ?"));
        args.push(v.to_owned().into());
    };
    match &q.sort {
        SortKey::All => {}
        SortKey::BeginsWith(p) => {
            bound(">=", p, &mut sql);
            if let Some(upper) = prefix_successor(p) {
                bound("<", &upper, &mut sql);
            }
        }
        SortKey::Between(a, b) => {
            bound(">=", a, &mut sql);
            bound("<=", b, &mut sql);
        }
        SortKey::Eq(v) => bound("=", v, &mut sql),
        SortKey::Lt(v) => bound("<", v, &mut sql),
        SortKey::Le(v) => bound("<=", v, &mut sql),
        SortKey::Gt(v) => bound(">", v, &mut sql),
        SortKey::Ge(v) => bound(">=", v, &mut sql),
    }
    let dir = if q.descending { "DESC" } else { "ASC" };
    let cmp = if q.descending { "<" } else { ">" };
    if let Some(c) = &q.cursor {
        let p = &c.position;
        match (&q.index, &p.index) {
            (Some(_), Some(ik)) => {
                sql.push_str(&format!(" AND ({scol}, pk, sk) {cmp} (?, ?, ?)"));
                args.extend([ik.sk.clone().into(), p.pk.clone().into(), p.sk.clone().into()]);
            }
            _ => {
                sql.push_str(&format!(" AND sk {cmp} ?"));
                args.push(p.sk.clone().into());
            }
        }
    }
    sql.push_str(" AND (expires_at IS NULL OR expires_at > ?)");
    args.push(now.into());
    if q.index.is_some() {
        sql.push_str(&format!(" ORDER BY {scol} {dir}, pk {dir}, sk {dir}"));
    } else {
        sql.push_str(&format!(" ORDER BY sk {dir}"));
    }
    sql.push_str(" LIMIT ?");
    args.push(i64::from(q.limit + 1).into());
    (sql, args)
}

fn run_query(conn: &Connection, q: &Query, now: i64) -> Result<Page, StoreError> {
    let (sql, args) = query_sql(q, now);
    let mut st = conn.prepare_cached(&sql).map_err(|e| unavailable(e, "preparing a query"))?;
    let rows = st.query_map(rusqlite::params_from_iter(args), row_to_item).map_err(|e| unavailable(e, "querying"))?;
    Ok(Page::from_overfetch(collect_rows(rows)?, q.limit, q.index))
}

fn collect_rows(
    rows: impl Iterator<Item = rusqlite::Result<Result<Item, StoreError>>>,
) -> Result<Vec<Item>, StoreError> {
    rows.map(|row| row.map_err(|e| unavailable(e, "reading a row"))?).collect()
}

/// A page of the table in key order, after the cursor's key.
fn run_scan(conn: &Connection, scan: &Scan, now: i64) -> Result<Page, StoreError> {
    // Two statements rather than `?1 IS NULL OR ...`, which would hide the key range from
    // the planner.
    let live = "(expires_at IS NULL OR expires_at > ?)";
    let (sql, mut args): (String, Vec<SqlValue>) = match &scan.cursor {
        None => (format!("SELECT {COLUMNS} FROM items WHERE {live} ORDER BY pk, sk LIMIT ?"), vec![now.into()]),
        Some(c) => (
            format!("SELECT {COLUMNS} FROM items WHERE (pk, sk) > (?, ?) AND {live} ORDER BY pk, sk LIMIT ?"),
            vec![c.position.pk.clone().into(), c.position.sk.clone().into(), now.into()],
        ),
    };
    args.push(i64::from(scan.limit + 1).into());
    let mut st = conn.prepare_cached(&sql).map_err(|e| unavailable(e, "preparing a scan"))?;
    let rows = st.query_map(rusqlite::params_from_iter(args), row_to_item).map_err(|e| unavailable(e, "scanning"))?;
    Ok(Page::from_overfetch(collect_rows(rows)?, scan.limit, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Cursor;

    #[test]
    fn every_query_shape_is_an_index_search() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::embedded_database::apply_migrations(&mut conn, "items", MIGRATIONS).unwrap();
        let cursor_item = Item::new(Key::new("p", "s")).with_gsi1(Key::new("i", "j")).with_gsi2(Key::new("k", "l"));
        let sorts = [
            SortKey::All,
            SortKey::BeginsWith("a".into()),
            SortKey::Between("a".into(), "b".into()),
            SortKey::Eq("a".into()),
            SortKey::Lt("a".into()),
            SortKey::Ge("a".into()),
        ];
        for index in [None, Some(Index::Gsi1), Some(Index::Gsi2)] {
            for sort in &sorts {
                for descending in [false, true] {
                    for cursor in [None, Some(Cursor::after_item(&cursor_item, index))] {
                        let q =
                            Query { index, partition: "p".into(), sort: sort.clone(), descending, limit: 10, cursor };
                        let (sql, args) = query_sql(&q, 0);
                        let plan = crate::embedded_database::query_plan(&conn, &sql, rusqlite::params_from_iter(args));
                        assert!(
                            plan.iter().all(|line| !line.starts_with("SCAN")),
                            "{index:?} {sort:?} desc={descending}: {plan:?}"
                        );
                        assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "sorts in memory: {plan:?}");
                    }
                }
            }
        }
    }
}
