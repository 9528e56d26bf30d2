//! Writes: conditions, puts, updates, deletes and transactions, and their validation.

use serde_json::{Map, Value};

use super::*;

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
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
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
    #[cfg(feature = "embedded")]
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
#[cfg(feature = "embedded")]
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

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
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
    #[cfg(feature = "embedded")]
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

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
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

pub(crate) fn validate_attribute_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 255 {
        return Err(StoreError::Invalid(format!("attribute name {name:?} must be 1 to 255 bytes")));
    }
    Ok(())
}
