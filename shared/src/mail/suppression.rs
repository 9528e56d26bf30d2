//! The suppression list: addresses that bounced for good or complained. Sending to them
//! hurts the sender's reputation, so the dispatcher skips them (and records the skip).

use serde::{Deserialize, Serialize};

use super::EmailAddress;
use crate::store::{Item, Key, Put, Store, StoreError, StoreExt as _};

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A permanent (hard) bounce.
    Bounce,
    /// The recipient marked a message as spam.
    Complaint,
}

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The address.
    pub email: EmailAddress,
    /// Why.
    pub reason: Reason,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
    /// The provider's description (bounce subtype, feedback type).
    pub detail: String,
}

fn key(email: &EmailAddress) -> Key {
    crate::keys::suppression(email)
}

/// Whether `email` is suppressed.
///
/// # Errors
/// When the store fails.
pub async fn is_suppressed(store: &dyn Store, email: &EmailAddress) -> Result<bool, StoreError> {
    Ok(store.get(&key(email)).await?.is_some())
}

/// The suppression of `email`, if any.
///
/// # Errors
/// When the store fails.
pub async fn get(store: &dyn Store, email: &EmailAddress) -> Result<Option<Suppression>, StoreError> {
    store.get_record(&key(email)).await
}

/// Suppresses `email`. Idempotent: a second event for the same address keeps the first.
///
/// # Errors
/// When the store fails.
pub async fn suppress(store: &dyn Store, s: &Suppression) -> Result<(), StoreError> {
    match store.put(Put::new(Item::from_record(key(&s.email), s)?).if_not_exists()).await {
        Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}
