//! Stripe events: the fields Groundwork reads and which account an event is about. What an
//! event changes is [`super::apply`] (with the `stripe` feature).

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Billing;
use super::objects::CustomerRef;
use crate::id::AccountId;
use crate::keys;
use crate::store::{Item, Put, StoreError};

/// A Stripe event (the fields Groundwork reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StripeEvent {
    /// `evt_...`.
    pub id: String,
    /// `customer.subscription.updated`...
    #[serde(rename = "type")]
    pub kind: String,
    /// When Stripe created it (Unix seconds).
    pub created: i64,
    /// The object.
    pub data: EventData,
}

/// An event's payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventData {
    /// The object as of the event.
    pub object: Value,
}

impl StripeEvent {
    /// The customer the event is about, if any.
    pub fn customer(&self) -> Option<String> {
        self.object::<CustomerRef>().ok()?.customer_id()
    }

    /// The event's object, decoded as `T` (one of [`super::objects`]).
    ///
    /// # Errors
    /// [`MalformedEvent`] when it is not such an object.
    pub fn object<T: DeserializeOwned>(&self) -> Result<T, MalformedEvent> {
        T::deserialize(&self.data.object).map_err(|e| MalformedEvent(format!("{} of {}: {e}", self.kind, self.id)))
    }
}

/// An event whose object is not what its type promises (no id, an unknown status...).
#[derive(Debug, thiserror::Error)]
#[error("the event cannot be applied: {0}")]
pub struct MalformedEvent(pub String);

/// The account of a Stripe customer.
///
/// # Errors
/// When the store fails.
pub async fn account_of(s: &Billing<'_>, customer: &str) -> Result<Option<AccountId>, StoreError> {
    let item = s.store.get(&keys::stripe_customer(customer)).await?;
    Ok(item.and_then(|i| i.data.get("account_id").and_then(Value::as_str).and_then(|v| v.parse().ok())))
}

/// Records that `customer` belongs to `account` (idempotent).
///
/// # Errors
/// When the store fails.
pub async fn link_customer(s: &Billing<'_>, customer: &str, account: AccountId) -> Result<(), StoreError> {
    let item = Item::new(keys::stripe_customer(customer)).with("account_id", account.to_string());
    s.store.put(Put::new(item)).await?;
    let index = Item::new(keys::billed_account(account)).with("customer_id", customer);
    s.store.put(Put::new(index)).await.map(|_| ())
}
