//! Reads by key range: queries on the table and its indexes, pages and opaque cursors.

use base64::Engine as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::*;

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
        check_limit(self.limit)?;
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

/// A read of the whole table, page by page, in an order the adapter chooses (key order on
/// SQLite, hash order on DynamoDB): for migrations and other whole-table passes, never for a
/// request (it reads every item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The most items in the page (1 to [`MAX_PAGE_SIZE`]).
    pub limit: u32,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
}

impl Scan {
    /// The first page of at most `limit` items.
    pub fn new(limit: u32) -> Self {
        Self { limit, cursor: None }
    }

    /// Continues after `cursor`.
    #[must_use]
    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.cursor = cursor;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_limit(self.limit)?;
        if self.cursor.as_ref().is_some_and(|c| c.position.index.is_some()) {
            return Err(StoreError::Invalid("the cursor belongs to another query".into()));
        }
        Ok(())
    }
}

fn check_limit(limit: u32) -> Result<(), StoreError> {
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(StoreError::Invalid(format!("limit must be 1 to {MAX_PAGE_SIZE}")));
    }
    Ok(())
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
    /// The page of `limit` items from `items`, read one past the limit (as adapters do, so
    /// that a page ending the range says so): the extra item only tells that a next page
    /// exists, whose cursor is the last item kept (its `index` key too, for index queries).
    pub(crate) fn from_overfetch(mut items: Vec<Item>, limit: u32, index: Option<Index>) -> Self {
        let limit = limit as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| Cursor::after_item(i, index))
        } else {
            None
        };
        Self { items, next }
    }

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

/// The smallest string greater than every string starting with `prefix`, if any: the
/// exclusive upper bound of a `begins_with` range in byte (UTF-8) order.
#[cfg(feature = "embedded")]
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
