//! Product events: what a customer did in the product (`project.created`), recorded under
//! the account's partition for the customer-success layer to read (adoption per account,
//! time to first value). An event is one more put in the transaction of the change it
//! describes ([`ProductEvent::op`]): it costs the request no extra round trip, and it exists
//! exactly when the change does. Events expire after [`RETENTION`], go with the account's
//! data into its export, and with its partition on erasure.
//!
//! Names are `noun.verb` in lower case (as PostHog and Segment recommend: object, then past
//! tense action); properties are a small flat map of scalars, never personal data (ids only).

pub mod posthog;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{AccountId, UserId};
use crate::store::{Item, Put, StoreError, TxOp};

/// How long an event is kept (13 months: a year-on-year comparison stays possible).
pub const RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);
/// The most properties an event carries.
pub const MAX_PROPERTIES: usize = 20;

/// The lifecycle events Groundwork's own flows record, which a customer-success view reads;
/// no client may send them (`POST /accounts/{id}/events` refuses these names).
pub const LIFECYCLE: &[&str] = &[
    // An account was created (by its first owner).
    "account.created",
    // Someone was invited (`role`).
    "member.invited",
    // Someone joined (`role`, `via`: invitation, domain, sso, scim).
    "member.joined",
    // A subscription began its trial (`plan`).
    "trial.started",
    // A subscription became paid (`plan`, `from_trial`).
    "subscription.converted",
    // The plan changed (`from`, `to`).
    "plan.changed",
    // A payment failed: the subscription is past due or unpaid (`status`).
    "payment.failed",
    // The subscription was cancelled (`at_period_end`).
    "subscription.cancelled",
    // A feature behind a flag was used (`flag`), recorded once per account, flag and day.
    "feature.used",
    // A plan limit passed the upgrade threshold (`limit`, `used`, `allowed`), once a month.
    "upgrade.suggested",
];

/// One product event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductEvent {
    /// `noun.verb`.
    pub name: String,
    /// The account it happened in.
    pub account_id: AccountId,
    /// Who did it, when a person did.
    pub user_id: Option<UserId>,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Scalars only.
    pub properties: Map<String, Value>,
}

/// Why an event was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("product event: {0}")]
pub struct InvalidEvent(pub String);

fn valid_name(name: &str) -> bool {
    let mut parts = name.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    };
    name.len() <= 64 && ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

impl ProductEvent {
    /// An event named `name` in `account`, by `user`, at `at_ms`.
    ///
    /// # Errors
    /// A name that is not `noun.verb` in lower-case ASCII, at most 64 bytes.
    pub fn new(name: &str, account_id: AccountId, user_id: Option<UserId>, at_ms: i64) -> Result<Self, InvalidEvent> {
        if !valid_name(name) {
            if name.len() > 64 {
                return Err(InvalidEvent(format!("a name is at most 64 bytes; this one has {}", name.len())));
            }
            return Err(InvalidEvent(format!("{name:?} is not noun.verb in lower case")));
        }
        Ok(Self { name: name.to_owned(), account_id, user_id, at_ms, properties: Map::new() })
    }

    /// Adds a property.
    ///
    /// # Errors
    /// A value that is not a string, number or boolean, or more than [`MAX_PROPERTIES`].
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Result<Self, InvalidEvent> {
        let value = value.into();
        if !(value.is_string() || value.is_number() || value.is_boolean()) {
            return Err(InvalidEvent(format!("property {key}: only strings, numbers and booleans")));
        }
        self.properties.insert(key.to_owned(), value);
        if self.properties.len() > MAX_PROPERTIES {
            return Err(InvalidEvent(format!("at most {MAX_PROPERTIES} properties")));
        }
        Ok(self)
    }

    /// The put that records the event: add it to the transaction of the change it describes.
    ///
    /// # Errors
    /// When the event does not serialize.
    pub fn op(&self) -> Result<TxOp, StoreError> {
        let key = crate::keys::product_event(self.account_id, self.at_ms, ulid::Ulid::new());
        Ok(TxOp::Put(self.put(key)?.if_not_exists()))
    }

    /// As [`ProductEvent::op`], for an event that may be recorded twice (a retried request, a
    /// redelivered message): the event's key comes from `id`, unique to the occurrence, so
    /// the second write lands on the first.
    ///
    /// # Errors
    /// When the event does not serialize.
    pub fn op_once(&self, id: &str) -> Result<TxOp, StoreError> {
        let digest = crate::auth::hash_secret(&format!("{}#{id}", self.name));
        let key = crate::keys::product_event(self.account_id, self.at_ms, &digest[..32]);
        Ok(TxOp::Put(self.put(key)?))
    }

    /// The write of an event that happens once per `id`, sorted at `key_ms` (a feature's
    /// first use in a day: keyed by the day, timed when it happened): the first writer's
    /// stays, and a second write fails its condition.
    ///
    /// # Errors
    /// When the event does not serialize.
    pub fn put_first(&self, id: &str, key_ms: i64) -> Result<Put, StoreError> {
        Ok(self.put(self.key_once(id, key_ms))?.if_not_exists())
    }

    /// The key of the occurrence `id`, sorted at `key_ms`.
    pub fn key_once(&self, id: &str, key_ms: i64) -> crate::store::Key {
        let digest = crate::auth::hash_secret(&format!("{}#{id}", self.name));
        crate::keys::product_event(self.account_id, key_ms, &digest[..32])
    }

    fn put(&self, key: crate::store::Key) -> Result<Put, StoreError> {
        let expires = (self.at_ms + i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX)) / 1000;
        // Pending forwarding (a sparse index the forwarder drains; `posthog`): the write of
        // the event is its outbox entry, so an event is never recorded but not forwarded.
        let pending = crate::keys::product_event_pending(shard(self.account_id), self.at_ms, self.account_id, &key.sk);
        Ok(Put::new(Item::from_record(key, self)?.with_gsi1(pending).expiring_at(expires)))
    }
}

/// How many partitions the pending-forwarding index spreads over.
pub const FORWARD_SHARDS: u8 = 8;

/// The pending-forwarding partition of an account's events (stable per account, so an
/// account's events are forwarded in order).
pub fn shard(account: AccountId) -> u8 {
    let digest = crate::auth::hash_secret(&account.to_string());
    u8::from_str_radix(&digest[..2], 16).unwrap_or(0) % FORWARD_SHARDS
}

/// The write that records one of Groundwork's [`LIFECYCLE`] events, for the transaction of
/// the change it describes; `once` makes it idempotent ([`ProductEvent::op_once`]).
///
/// # Errors
/// When the event does not serialize; a name outside [`LIFECYCLE`] or a property that is not
/// a scalar is a bug, reported as [`StoreError::Invalid`].
pub fn lifecycle(
    name: &'static str,
    account: AccountId,
    user: Option<UserId>,
    at_ms: i64,
    properties: &[(&str, Value)],
    once: Option<&str>,
) -> Result<TxOp, StoreError> {
    let invalid = |e: InvalidEvent| StoreError::Invalid(e.to_string());
    if !LIFECYCLE.contains(&name) {
        return Err(StoreError::Invalid(format!("{name} is not a lifecycle event")));
    }
    let mut event = ProductEvent::new(name, account, user, at_ms).map_err(invalid)?;
    for (key, value) in properties {
        event = event.with(key, value.clone()).map_err(invalid)?;
    }
    match once {
        Some(id) => event.op_once(id),
        None => event.op(),
    }
}

/// The newest events of `account`, newest first, at most `limit`.
///
/// # Errors
/// When the store fails or an event does not decode.
pub async fn recent(
    store: &dyn crate::store::Store,
    account: AccountId,
    limit: u32,
) -> Result<Vec<ProductEvent>, StoreError> {
    let query = crate::store::Query::partition(crate::keys::account_partition(account))
        .begins_with(crate::keys::PRODUCT_EVENT_PREFIX)
        .descending()
        .limit(limit);
    store.query(query).await?.items.iter().map(Item::record).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_noun_dot_verb_and_properties_scalars() {
        let account = AccountId::new();
        for good in ["project.created", "invoice.paid_late", "a1.b2"] {
            assert!(ProductEvent::new(good, account, None, 0).is_ok(), "{good}");
        }
        for bad in ["project", "Project.created", "project.created.now", ".created", "project.", "pro ject.x"] {
            assert!(ProductEvent::new(bad, account, None, 0).is_err(), "{bad}");
        }
        let event = ProductEvent::new("project.created", account, None, 0).unwrap();
        assert!(event.clone().with("plan", "team").unwrap().with("count", 3).is_ok());
        assert!(event.with("nested", serde_json::json!({"a": 1})).is_err());
    }
}
