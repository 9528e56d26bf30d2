//! Keys and items: what the table holds.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::write::validate_attribute_name;
use super::*;

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

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
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

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
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

impl Default for Key {
    fn default() -> Self {
        Self::new("", "")
    }
}
