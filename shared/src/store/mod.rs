//! The storage port: a narrow, item-level interface over the single-table model.
//!
//! An [`Item`] has a primary [`Key`] (partition `pk`, sort `sk`), up to two secondary index
//! keys, an optional expiry, a version maintained by the store, and a JSON object of data.
//! Two adapters implement [`Store`] and are held to one contract suite:
//! [`dynamodb::DynamoStore`] (production) and [`sqlite::SqliteStore`] (embedded, local default).
//!
//! Semantics every adapter keeps:
//! - An item whose `expires_at` (Unix seconds) is at or before now does not exist: `get` and
//!   `query` skip it, `Exists` is false and `NotExists` is true for it.
//! - `put` stores `item.version + 1`, so a read-modify-write with
//!   [`Condition::VersionIs`] of the read version is an optimistic lock; `update` adds one.
//! - `update` applies only to an existing item (otherwise [`StoreError::ConditionFailed`]).
//! - `transact` applies all of its operations or none; at most [`MAX_TRANSACTION_OPS`], and
//!   no two on the same key.
//! - Pages hold at most `limit` items; `next` is the opaque cursor of the following page
//!   (which may turn out empty).
//! - A [`Scan`] visits every live item exactly once when it is not written meanwhile; an
//!   item written during the pass may be seen or not (the next pass sees it).

pub mod config;
pub mod dynamodb;
mod item;
mod query;
#[cfg(feature = "embedded")]
pub mod sqlite;
mod write;

pub use item::{Index, Item, Key};
#[cfg(feature = "embedded")]
pub(crate) use query::prefix_successor;
pub use query::{Cursor, Page, Query, Scan, SortKey};
pub use write::{Condition, Delete, Put, TxOp, Update};
pub(crate) use write::{validate_put, validate_transaction};

use async_trait::async_trait;
use serde::de::DeserializeOwned;

/// The most operations one transaction may hold (DynamoDB's limit).
pub const MAX_TRANSACTION_OPS: usize = 100;
/// The most items one query page may hold.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The longest key part accepted (DynamoDB allows 2048 bytes for a partition key, 1024 for
/// a sort key; one bound for both keeps the adapters in step).
pub const MAX_KEY_BYTES: usize = 1024;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition did not hold; nothing was written.
    #[error("the condition of the write did not hold")]
    ConditionFailed,
    /// A transaction was cancelled because a condition did not hold; nothing was written.
    /// `failed` lists the positions of the operations whose condition did not hold (never
    /// empty: a cancellation for a conflict or throttling is [`StoreError::Unavailable`]).
    #[error("the transaction was cancelled (failed operations: {failed:?})")]
    TransactionCanceled {
        /// Positions of operations whose condition failed.
        failed: Vec<usize>,
    },
    /// The request itself is malformed (a caller's bug or a bad cursor).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Stored data does not have the expected shape.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store could not be reached or failed; retrying later may work.
    #[error("the store is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl StoreError {
    /// Whether the failure is a condition (single write or transaction) that did not hold.
    pub fn is_condition_failure(&self) -> bool {
        matches!(self, Self::ConditionFailed | Self::TransactionCanceled { .. })
    }
}

/// Physically removes expired items, for a store that does not expire them by itself (the
/// embedded one; DynamoDB's TTL deletes them within days, and reads skip them meanwhile).
#[async_trait]
pub trait ExpirySweep: Send + Sync + 'static {
    /// Removes the items whose expiry has passed; returns how many.
    ///
    /// # Errors
    /// When the store fails.
    async fn sweep_expired(&self) -> Result<usize, StoreError>;
}

/// The storage port. See the module documentation for the semantics every adapter keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The live item under `key`, if any.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Writes `put.item` if its condition holds; returns the item as stored.
    async fn put(&self, put: Put) -> Result<Item, StoreError>;

    /// Changes an existing item if the condition holds; returns the item as stored.
    async fn update(&self, update: Update) -> Result<Item, StoreError>;

    /// Removes an item if the condition holds; returns the live item it removed, if any.
    async fn delete(&self, delete: Delete) -> Result<Option<Item>, StoreError>;

    /// One page of a partition of the table or an index.
    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// One page of the whole table (see [`Scan`]).
    async fn scan(&self, scan: Scan) -> Result<Page, StoreError>;

    /// Applies every operation or none.
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError>;

    /// Checks that the store is reachable (for `/health`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Helpers over any [`Store`].
#[async_trait]
pub trait StoreExt: Store {
    /// The record under `key`, if any.
    async fn get_record<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        self.get(key).await?.map(|i| i.record()).transpose()
    }

    /// Every item of a query, following cursors (for bounded partitions only).
    async fn query_all(&self, query: Query) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut q = query;
        loop {
            let page = self.query(q.clone()).await?;
            out.extend(page.items);
            match page.next {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// One page of `query`'s items that `keep` accepts: full (`query.limit` items) unless
    /// the query ends, however many it passes over, and a cursor right after the last item
    /// returned. For lists that leave some items out (soft-deleted ones), so a client never
    /// sees a short or empty page before the end.
    async fn query_kept<F>(&self, query: Query, keep: F) -> Result<Page, StoreError>
    where
        F: for<'a> Fn(&'a Item) -> bool + Send,
    {
        let want = (query.limit as usize).max(1);
        let index = query.index;
        let mut q = query;
        let mut items = Vec::with_capacity(want);
        loop {
            let page = self.query(q.clone()).await?;
            let mut rest = page.items.into_iter();
            for item in rest.by_ref() {
                if keep(&item) {
                    items.push(item);
                    if items.len() == want {
                        break;
                    }
                }
            }
            // Full: the next page starts after the last item returned (the rest of this
            // page, if any, comes again), unless nothing is left at all.
            if items.len() == want {
                let more = rest.next().is_some() || page.next.is_some();
                let next = more.then(|| items.last().map(|i| Cursor::after_item(i, index))).flatten();
                return Ok(Page { items, next });
            }
            match page.next {
                Some(c) => q.cursor = Some(c),
                None => return Ok(Page { items, next: None }),
            }
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let item = Item::new(Key::new("a", "b")).with_gsi1(Key::new("x", "y"));
        let c = Cursor::after_item(&item, Some(Index::Gsi1));
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("!!!").is_err());
        assert!(Cursor::decode("e30").is_err()); // "{}"
    }

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }

    #[test]
    fn conditions_evaluate_like_dynamodb() {
        let item = Item::new(Key::new("p", "s")).with("n", 1).with("s", "x");
        let live = Some(&item);
        assert!(Condition::Equals("n".into(), serde_json::json!(1.0)).holds(live));
        assert!(!Condition::Equals("s".into(), serde_json::json!("y")).holds(live));
        assert!(Condition::Missing("z".into()).holds(live));
        assert!(!Condition::Missing("z".into()).holds(None));
        assert!(Condition::NotExists.holds(None));
        assert!(Condition::All(vec![Condition::Exists, Condition::VersionIs(0)]).holds(live));
    }

    #[test]
    fn transactions_reject_duplicate_keys_and_bad_sizes() {
        let k = Key::new("p", "s");
        let op = || TxOp::Check(k.clone(), Condition::Exists);
        assert!(validate_transaction(&[]).is_err());
        assert!(validate_transaction(&[op(), op()]).is_err());
        assert!(validate_transaction(&[op()]).is_ok());
    }

    #[test]
    fn update_rejects_touching_an_attribute_twice() {
        let u = Update::new(Key::new("p", "s")).set("a", 1).remove("a");
        assert!(u.validate().is_err());
    }
}
