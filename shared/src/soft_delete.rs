//! Soft delete with a retention window, for any item: [`mark_deleted`] sets `deleted_at_ms`
//! and `purge_after_ms` and files the item under the purge index (gsi2 partition `PURGE`,
//! sorted by purge time); [`restore`] undoes it within the window; [`purge_due`] (run by the
//! scheduled purge job) deletes items whose window has passed, unless they were restored
//! in the meantime. Reads of deleted items are filtered by their owners with [`is_deleted`].
//!
//! The gsi2 index is reserved for this time-ordered marker.

use std::time::Duration;

use serde_json::json;

use crate::store::{Condition, Delete, Index, Item, Key, Query, SortKey, Store, StoreError, Update};

pub use crate::keys::PURGE_PARTITION;

/// The update that soft-deletes the item at `key` (fails with a condition error if it is
/// missing or already deleted).
pub fn mark_deleted(key: Key, now_ms: i64, retention: Duration) -> Update {
    let purge_after = now_ms + i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    let index = crate::keys::purge_index(purge_after, &key);
    Update::new(key)
        .set("deleted_at_ms", now_ms)
        .set("purge_after_ms", purge_after)
        .gsi2(Some(index))
        .when(Condition::Missing("deleted_at_ms".into()))
}

/// Like [`mark_deleted`], for the root item of a partition (an account): its purge deletes
/// every item of the partition with it.
pub fn mark_partition_deleted(key: Key, now_ms: i64, retention: Duration) -> Update {
    mark_deleted(key, now_ms, retention).set("purge_partition", true)
}

/// Whether `item` is soft-deleted.
pub fn is_deleted(item: &Item) -> bool {
    item.data.contains_key("deleted_at_ms")
}

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// There is no such item (or it was purged).
    #[error("nothing to restore")]
    NotFound,
    /// The item is not deleted.
    #[error("the item is not deleted")]
    NotDeleted,
    /// The retention window has passed; the item awaits its purge.
    #[error("the retention window has passed")]
    Expired,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Restores a soft-deleted item within its retention window; returns it.
///
/// # Errors
/// [`RestoreError`].
pub async fn restore(store: &dyn Store, key: &Key, now_ms: i64) -> Result<Item, RestoreError> {
    let item = store.get(key).await?.ok_or(RestoreError::NotFound)?;
    match store.update(restore_update(&item, now_ms)?).await {
        Ok(i) => Ok(i),
        // Restored or purged concurrently.
        Err(StoreError::ConditionFailed) => Err(RestoreError::NotDeleted),
        Err(e) => Err(e.into()),
    }
}

/// The update that restores `item` (as just read), for a transaction that changes more
/// with it: it applies only while the item is still deleted with the same purge time, so a
/// concurrent restore or purge makes the transaction fail instead.
///
/// # Errors
/// [`RestoreError::NotDeleted`] or [`RestoreError::Expired`].
pub fn restore_update(item: &Item, now_ms: i64) -> Result<Update, RestoreError> {
    let Some(purge_after) = item.data.get("purge_after_ms").and_then(serde_json::Value::as_i64) else {
        return Err(RestoreError::NotDeleted);
    };
    if purge_after <= now_ms {
        return Err(RestoreError::Expired);
    }
    Ok(Update::new(item.key.clone())
        .remove("deleted_at_ms")
        .remove("purge_after_ms")
        .gsi2(None)
        .when(Condition::Equals("purge_after_ms".into(), json!(purge_after))))
}

/// Deletes every soft-deleted item whose window ended before `now_ms`, `batch` at a time;
/// returns how many it deleted. A restore racing with it wins (the delete is conditional on
/// the item still carrying the same purge time).
///
/// # Errors
/// When the store fails.
pub async fn purge_due(store: &dyn Store, now_ms: i64, batch: u32) -> Result<usize, StoreError> {
    let mut purged = 0;
    loop {
        let q = Query::index(Index::Gsi2, PURGE_PARTITION).sort(SortKey::Lt(format!("{now_ms:013}"))).limit(batch);
        let page = store.query(q).await?;
        let mut progressed = false;
        for item in &page.items {
            let Some(purge_after) = item.data.get("purge_after_ms").and_then(serde_json::Value::as_i64) else {
                continue;
            };
            let delete =
                Delete::new(item.key.clone()).when(Condition::Equals("purge_after_ms".into(), json!(purge_after)));
            match store.delete(delete).await {
                Ok(_) => {
                    purged += 1;
                    progressed = true;
                    tracing::info!(pk = %item.key.pk, sk = %item.key.sk, "purged a soft-deleted item");
                    if item.data.get("purge_partition").and_then(serde_json::Value::as_bool) == Some(true) {
                        purged += purge_partition(store, &item.key.pk).await?;
                    }
                }
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
        if page.next.is_none() || !progressed {
            return Ok(purged);
        }
    }
}

/// Deletes every item of partition `pk` (after its root item was purged).
async fn purge_partition(store: &dyn Store, pk: &str) -> Result<usize, StoreError> {
    let mut purged = 0;
    loop {
        let page = store.query(Query::partition(pk).limit(100)).await?;
        if page.items.is_empty() {
            tracing::info!(pk, purged, "purged a deleted partition");
            return Ok(purged);
        }
        for item in &page.items {
            store.delete(Delete::new(item.key.clone())).await?;
            purged += 1;
        }
    }
}

/// How long soft-deleted records stay restorable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftDeleteConfig {
    /// `GROUNDWORK_SOFT_DELETE_RETENTION_DAYS` (default 30 days): then the purge job
    /// removes them.
    pub retention: Duration,
}

#[derive(serde::Deserialize)]
struct Vars {
    #[serde(default = "default_retention_days")]
    soft_delete_retention_days: u64,
}

fn default_retention_days() -> u64 {
    30
}

impl SoftDeleteConfig {
    /// From `GROUNDWORK_SOFT_DELETE_RETENTION_DAYS`.
    ///
    /// # Errors
    /// A malformed number.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        let v: Vars = env.area("GROUNDWORK_")?;
        Ok(Self {
            retention: Duration::from_secs(
                crate::settings::at_least("GROUNDWORK_SOFT_DELETE_RETENTION_DAYS", v.soft_delete_retention_days, 1)?
                    .saturating_mul(86_400),
            ),
        })
    }
}
