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

pub mod config;
pub mod dynamodb;
pub mod sqlite;

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

/// The most operations one transaction may hold (DynamoDB's limit).
pub const MAX_TRANSACTION_OPS: usize = 100;
/// The most items one query page may hold.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The longest key part accepted (DynamoDB allows 2048 bytes for a partition key, 1024 for
/// a sort key; one bound for both keeps the adapters in step).
pub const MAX_KEY_BYTES: usize = 1024;

/// A primary or index key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// The partition key.
    pub pk: String,
    /// The sort key.
    pub sk: String,
}

impl Key {
    /// A key from its two parts.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into() }
    }

    fn validate(&self) -> Result<(), StoreError> {
        for (name, part) in [("pk", &self.pk), ("sk", &self.sk)] {
            if part.is_empty() {
                return Err(StoreError::Invalid(format!("key part {name} is empty")));
            }
            if part.len() > MAX_KEY_BYTES {
                return Err(StoreError::Invalid(format!("key part {name} is longer than {MAX_KEY_BYTES} bytes")));
            }
        }
        Ok(())
    }
}

/// A secondary index of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// `gsi1`: the first secondary index.
    Gsi1,
    /// `gsi2`: the second secondary index.
    Gsi2,
}

/// One stored item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The primary key.
    pub key: Key,
    /// The key under [`Index::Gsi1`], if the item is indexed there.
    pub gsi1: Option<Key>,
    /// The key under [`Index::Gsi2`], if the item is indexed there.
    pub gsi2: Option<Key>,
    /// When the item stops existing, in Unix seconds.
    pub expires_at: Option<i64>,
    /// Maintained by the store; 0 for an item never stored.
    pub version: u64,
    /// The item's attributes.
    pub data: Map<String, Value>,
}

impl Item {
    /// An empty item under `key`.
    pub fn new(key: Key) -> Self {
        Self { key, gsi1: None, gsi2: None, expires_at: None, version: 0, data: Map::new() }
    }

    /// An item whose data is `record` serialized as a JSON object.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] if `record` does not serialize to a JSON object.
    pub fn from_record<T: Serialize>(key: Key, record: &T) -> Result<Self, StoreError> {
        match serde_json::to_value(record) {
            Ok(Value::Object(data)) => Ok(Self { data, ..Self::new(key) }),
            Ok(_) => Err(StoreError::Invalid("a record must serialize to a JSON object".into())),
            Err(e) => Err(StoreError::Invalid(format!("record does not serialize: {e}"))),
        }
    }

    /// The data read back as `T`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the stored data does not have `T`'s shape.
    pub fn record<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_value(Value::Object(self.data.clone()))
            .map_err(|e| StoreError::Corrupt(format!("item {}/{}: {e}", self.key.pk, self.key.sk)))
    }

    /// Sets the [`Index::Gsi1`] key.
    #[must_use]
    pub fn with_gsi1(mut self, key: Key) -> Self {
        self.gsi1 = Some(key);
        self
    }

    /// Sets the [`Index::Gsi2`] key.
    #[must_use]
    pub fn with_gsi2(mut self, key: Key) -> Self {
        self.gsi2 = Some(key);
        self
    }

    /// Sets the expiry (Unix seconds).
    #[must_use]
    pub fn expiring_at(mut self, unix_secs: i64) -> Self {
        self.expires_at = Some(unix_secs);
        self
    }

    /// Sets one attribute.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.data.insert(name.to_owned(), value.into());
        self
    }

    /// The index key for `index`.
    pub fn index_key(&self, index: Index) -> Option<&Key> {
        match index {
            Index::Gsi1 => self.gsi1.as_ref(),
            Index::Gsi2 => self.gsi2.as_ref(),
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        self.key.validate()?;
        for k in [&self.gsi1, &self.gsi2].into_iter().flatten() {
            k.validate()?;
        }
        for name in self.data.keys() {
            validate_attribute_name(name)?;
        }
        Ok(())
    }

    pub(crate) fn is_live(&self, now_secs: i64) -> bool {
        self.expires_at.is_none_or(|t| t > now_secs)
    }
}

/// A condition on the current state of an item, checked atomically with a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The item exists (and has not expired).
    Exists,
    /// The item does not exist (or has expired).
    NotExists,
    /// The item exists with this version.
    VersionIs(u64),
    /// The item exists and its attribute `name` equals `value` (a string, number or bool).
    Equals(String, Value),
    /// The item exists and has no attribute `name`.
    Missing(String),
    /// Every condition holds.
    All(Vec<Condition>),
}

impl Condition {
    fn validate(&self) -> Result<(), StoreError> {
        match self {
            Self::Equals(name, value) => {
                validate_attribute_name(name)?;
                if !(value.is_string() || value.is_number() || value.is_boolean()) {
                    return Err(StoreError::Invalid(format!(
                        "condition on {name}: only strings, numbers and booleans compare"
                    )));
                }
                Ok(())
            }
            Self::Missing(name) => validate_attribute_name(name),
            Self::All(all) => all.iter().try_for_each(Self::validate),
            Self::Exists | Self::NotExists | Self::VersionIs(_) => Ok(()),
        }
    }

    /// Whether `item` (the live item, if any) satisfies the condition. Adapters that cannot
    /// push the condition to the server use this.
    pub(crate) fn holds(&self, item: Option<&Item>) -> bool {
        match self {
            Self::Exists => item.is_some(),
            Self::NotExists => item.is_none(),
            Self::VersionIs(v) => item.is_some_and(|i| i.version == *v),
            Self::Equals(name, value) => item.is_some_and(|i| i.data.get(name).is_some_and(|a| json_eq(a, value))),
            Self::Missing(name) => item.is_some_and(|i| !i.data.contains_key(name)),
            Self::All(all) => all.iter().all(|c| c.holds(item)),
        }
    }
}

/// Numbers compare by value (1 equals 1.0), as DynamoDB compares them.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// Writes a whole item.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    /// The item; its `version` is the version the write is based on.
    pub item: Item,
    /// Checked against the current item before writing.
    pub condition: Option<Condition>,
}

impl Put {
    /// An unconditional put.
    pub fn new(item: Item) -> Self {
        Self { item, condition: None }
    }

    /// Only if no live item has this key.
    #[must_use]
    pub fn if_not_exists(mut self) -> Self {
        self.condition = Some(Condition::NotExists);
        self
    }

    /// Only if the stored item still has the version this item was read at.
    #[must_use]
    pub fn if_unchanged(mut self) -> Self {
        self.condition = Some(Condition::VersionIs(self.item.version));
        self
    }

    /// Only if `condition` holds.
    #[must_use]
    pub fn when(mut self, condition: Condition) -> Self {
        self.condition = Some(condition);
        self
    }
}

/// Changes some attributes of an existing item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    /// The item to change.
    pub key: Key,
    /// Attributes to set.
    pub set: Map<String, Value>,
    /// Attributes to remove.
    pub remove: Vec<String>,
    /// Numeric attributes to add to (a missing one counts as 0).
    pub add: Vec<(String, i64)>,
    /// `Some(None)` clears the expiry, `Some(Some(t))` sets it.
    pub expires_at: Option<Option<i64>>,
    /// `Some(None)` removes the item from gsi1, `Some(Some(k))` sets its key there.
    pub gsi1: Option<Option<Key>>,
    /// `Some(None)` removes the item from gsi2, `Some(Some(k))` sets its key there.
    pub gsi2: Option<Option<Key>>,
    /// Checked against the current item before writing (the item must exist in any case).
    pub condition: Option<Condition>,
}

impl Default for Key {
    fn default() -> Self {
        Self::new("", "")
    }
}

impl Update {
    /// An update of the item under `key` that changes nothing yet.
    pub fn new(key: Key) -> Self {
        Self { key, ..Self::default() }
    }

    /// Sets attribute `name`.
    #[must_use]
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set.insert(name.to_owned(), value.into());
        self
    }

    /// Removes attribute `name`.
    #[must_use]
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_owned());
        self
    }

    /// Adds `delta` to numeric attribute `name`.
    #[must_use]
    pub fn add(mut self, name: &str, delta: i64) -> Self {
        self.add.push((name.to_owned(), delta));
        self
    }

    /// Sets or clears the expiry.
    #[must_use]
    pub fn expires_at(mut self, unix_secs: Option<i64>) -> Self {
        self.expires_at = Some(unix_secs);
        self
    }

    /// Sets or clears the gsi1 key.
    #[must_use]
    pub fn gsi1(mut self, key: Option<Key>) -> Self {
        self.gsi1 = Some(key);
        self
    }

    /// Sets or clears the gsi2 key.
    #[must_use]
    pub fn gsi2(mut self, key: Option<Key>) -> Self {
        self.gsi2 = Some(key);
        self
    }

    /// Only if `condition` holds.
    #[must_use]
    pub fn when(mut self, condition: Condition) -> Self {
        self.condition = Some(condition);
        self
    }

    fn validate(&self) -> Result<(), StoreError> {
        self.key.validate()?;
        let mut seen = std::collections::HashSet::new();
        let names = self.set.keys().chain(self.remove.iter()).chain(self.add.iter().map(|(n, _)| n));
        for name in names {
            validate_attribute_name(name)?;
            if !seen.insert(name) {
                return Err(StoreError::Invalid(format!("attribute {name} is changed twice in one update")));
            }
        }
        for k in [&self.gsi1, &self.gsi2].into_iter().flatten().flatten() {
            k.validate()?;
        }
        if let Some(c) = &self.condition {
            c.validate()?;
        }
        Ok(())
    }

    /// Applies the update to `item` in memory (for adapters that write whole items).
    pub(crate) fn apply_to(&self, item: &mut Item) -> Result<(), StoreError> {
        for (k, v) in &self.set {
            item.data.insert(k.clone(), v.clone());
        }
        for k in &self.remove {
            item.data.remove(k);
        }
        for (k, delta) in &self.add {
            let current = match item.data.get(k) {
                None => 0,
                Some(Value::Number(n)) => {
                    n.as_i64().ok_or_else(|| StoreError::Invalid(format!("attribute {k} is not an integer")))?
                }
                Some(_) => return Err(StoreError::Invalid(format!("attribute {k} is not a number"))),
            };
            let next = current
                .checked_add(*delta)
                .ok_or_else(|| StoreError::Invalid(format!("attribute {k} would overflow")))?;
            item.data.insert(k.clone(), next.into());
        }
        if let Some(e) = self.expires_at {
            item.expires_at = e;
        }
        if let Some(k) = &self.gsi1 {
            item.gsi1.clone_from(k);
        }
        if let Some(k) = &self.gsi2 {
            item.gsi2.clone_from(k);
        }
        item.version += 1;
        Ok(())
    }
}

/// Removes an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// The item to remove.
    pub key: Key,
    /// Checked against the current item before removing.
    pub condition: Option<Condition>,
}

impl Delete {
    /// An unconditional delete.
    pub fn new(key: Key) -> Self {
        Self { key, condition: None }
    }

    /// Only if `condition` holds.
    #[must_use]
    pub fn when(mut self, condition: Condition) -> Self {
        self.condition = Some(condition);
        self
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOp {
    /// Write an item.
    Put(Put),
    /// Change an item.
    Update(Update),
    /// Remove an item.
    Delete(Delete),
    /// Require a condition on an item without writing it.
    Check(Key, Condition),
}

impl TxOp {
    /// The key the operation touches.
    pub fn key(&self) -> &Key {
        match self {
            Self::Put(p) => &p.item.key,
            Self::Update(u) => &u.key,
            Self::Delete(d) => &d.key,
            Self::Check(k, _) => k,
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        match self {
            Self::Put(p) => validate_put(p),
            Self::Update(u) => u.validate(),
            Self::Delete(d) => {
                d.key.validate()?;
                d.condition.as_ref().map_or(Ok(()), Condition::validate)
            }
            Self::Check(k, c) => {
                k.validate()?;
                c.validate()
            }
        }
    }
}

pub(crate) fn validate_put(p: &Put) -> Result<(), StoreError> {
    p.item.validate()?;
    p.condition.as_ref().map_or(Ok(()), Condition::validate)
}

pub(crate) fn validate_transaction(ops: &[TxOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
        return Err(StoreError::Invalid(format!("a transaction holds 1 to {MAX_TRANSACTION_OPS} operations")));
    }
    let mut keys = std::collections::HashSet::new();
    for op in ops {
        op.validate()?;
        if !keys.insert(op.key()) {
            return Err(StoreError::Invalid(format!(
                "key {}/{} appears twice in one transaction",
                op.key().pk,
                op.key().sk
            )));
        }
    }
    Ok(())
}

fn validate_attribute_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 255 {
        return Err(StoreError::Invalid(format!("attribute name {name:?} must be 1 to 255 bytes")));
    }
    Ok(())
}

/// Which sort keys a query selects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Every item of the partition.
    #[default]
    All,
    /// Sort keys that start with this prefix.
    BeginsWith(String),
    /// Sort keys between the two bounds, both included.
    Between(String, String),
    /// Sort keys equal to this one.
    Eq(String),
    /// Sort keys before this one.
    Lt(String),
    /// Sort keys up to this one.
    Le(String),
    /// Sort keys after this one.
    Gt(String),
    /// Sort keys from this one.
    Ge(String),
}

/// A query over one partition of the table or of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `None` for the table itself.
    pub index: Option<Index>,
    /// The partition key value.
    pub partition: String,
    /// Which sort keys.
    pub sort: SortKey,
    /// Largest sort key first.
    pub descending: bool,
    /// The most items in the page (1 to [`MAX_PAGE_SIZE`]).
    pub limit: u32,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
}

impl Query {
    /// Every item of partition `pk` of the table, ascending, 100 at a time.
    pub fn partition(pk: impl Into<String>) -> Self {
        Self { index: None, partition: pk.into(), sort: SortKey::All, descending: false, limit: 100, cursor: None }
    }

    /// Every item of partition `pk` of `index`.
    pub fn index(index: Index, pk: impl Into<String>) -> Self {
        Self { index: Some(index), ..Self::partition(pk) }
    }

    /// Restricts the sort keys.
    #[must_use]
    pub fn sort(mut self, sort: SortKey) -> Self {
        self.sort = sort;
        self
    }

    /// Sort keys starting with `prefix`.
    #[must_use]
    pub fn begins_with(self, prefix: impl Into<String>) -> Self {
        self.sort(SortKey::BeginsWith(prefix.into()))
    }

    /// Largest sort key first.
    #[must_use]
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// At most `limit` items.
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continues after `cursor`.
    #[must_use]
    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.cursor = cursor;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.limit == 0 || self.limit > MAX_PAGE_SIZE {
            return Err(StoreError::Invalid(format!("limit must be 1 to {MAX_PAGE_SIZE}")));
        }
        if self.partition.is_empty() {
            return Err(StoreError::Invalid("the partition key is empty".into()));
        }
        if let Some(c) = &self.cursor
            && (c.position.index.is_some() != self.index.is_some())
        {
            return Err(StoreError::Invalid("the cursor belongs to another query".into()));
        }
        Ok(())
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The items, in sort-key order.
    pub items: Vec<Item>,
    /// Where the next page starts; `None` when there are no more items.
    pub next: Option<Cursor>,
}

impl Page {
    /// The items read back as `T`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if an item does not have `T`'s shape.
    pub fn records<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.items.iter().map(Item::record).collect()
    }
}

/// An opaque position in a query, safe to hand to clients (it holds only keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) position: Position,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    pub(crate) pk: String,
    pub(crate) sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<Key>,
}

impl Cursor {
    pub(crate) fn after_item(item: &Item, index: Option<Index>) -> Self {
        let index = index.and_then(|i| item.index_key(i).cloned());
        Self { position: Position { pk: item.key.pk.clone(), sk: item.key.sk.clone(), index } }
    }

    /// The cursor as an opaque URL-safe string.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(&self.position).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses a cursor from [`Cursor::encode`].
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for anything that is not such a cursor.
    pub fn decode(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Invalid("the cursor is not valid".into());
        if s.len() > 4 * MAX_KEY_BYTES * 2 {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let position: Position = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        Ok(Self { position })
    }
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition did not hold; nothing was written.
    #[error("the condition of the write did not hold")]
    ConditionFailed,
    /// A transaction was cancelled; nothing was written. `failed` lists the positions of the
    /// operations whose condition did not hold (empty if it was cancelled for a conflict).
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
}

impl<S: Store + ?Sized> StoreExt for S {}

/// The smallest string greater than every string starting with `prefix`, if any: the
/// exclusive upper bound of a `begins_with` range in byte (UTF-8) order.
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

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
