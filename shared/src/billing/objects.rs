//! The Stripe objects Groundwork reads, as small tolerant types of its own: only the fields
//! it uses, each optional or defaulted where Stripe has moved or dropped it between API
//! versions (a subscription's `current_period_end` moved to its items in 2025-03-31.basil;
//! an invoice's `subscription` moved under `parent.subscription_details`), so a webhook
//! from an endpoint pinned to another version still decodes. Unknown fields are ignored.
//! A subscription status Groundwork does not know fails to decode, loudly: it is never
//! guessed at (see [`super::SubscriptionStatus`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SubscriptionStatus;

/// An id, or the object it names when the request asked Stripe to expand it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Expandable {
    /// The id alone.
    Id(String),
    /// The expanded object (only its id is read).
    Object {
        /// The object's id.
        id: String,
    },
}

impl Expandable {
    /// The id, expanded or not.
    pub fn id(&self) -> &str {
        match self {
            Self::Id(id) | Self::Object { id } => id,
        }
    }
}

/// A page of a list (`{"object": "list", "data": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct List<T> {
    /// The objects.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

/// A created object of which only the id matters (a customer).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Created {
    /// Its id.
    pub id: String,
}

/// A Checkout or customer portal session: where to send the browser.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RedirectSession {
    /// The page's URL.
    pub url: Option<String>,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// `sub_...`.
    pub id: String,
    /// Its status.
    pub status: SubscriptionStatus,
    /// Its customer.
    pub customer: Option<Expandable>,
    /// Its items (Groundwork's plans have one).
    #[serde(default = "empty_items")]
    pub items: List<SubscriptionItem>,
    /// Whether it ends at the period end.
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// When it is set to end (Unix seconds).
    pub cancel_at: Option<i64>,
    /// The period's end, on API versions before 2025-03-31 (Unix seconds).
    pub current_period_end: Option<i64>,
    /// The trial's end (Unix seconds).
    pub trial_end: Option<i64>,
    /// When it was created (Unix seconds).
    #[serde(default)]
    pub created: i64,
}

fn empty_items() -> List<SubscriptionItem> {
    List { data: Vec::new() }
}

/// The subscription item that carries the plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanItem<'a> {
    /// The item.
    pub item: &'a SubscriptionItem,
    /// The plan its price stands for.
    pub plan: &'a super::Plan,
    /// Monthly or yearly.
    pub interval: super::Interval,
}

impl Subscription {
    /// Every item whose price is in the catalogue, wherever it is in the list: a
    /// subscription may carry add-ons (a metered price, extra storage) before or after the
    /// plan's item, so no position is assumed.
    pub fn plan_items<'a>(&'a self, plans: &'a super::Plans, environment: &str) -> Vec<PlanItem<'a>> {
        self.items
            .data
            .iter()
            .filter_map(|item| {
                let (plan, interval) = plans.by_price(environment, &item.price.as_ref()?.id)?;
                Some(PlanItem { item, plan, interval })
            })
            .collect()
    }

    /// The current period's end, wherever this API version puts it (on the items since
    /// 2025-03-31, where every item of a subscription shares the period).
    pub fn period_end(&self) -> Option<i64> {
        self.items.data.iter().find_map(|i| i.current_period_end).or(self.current_period_end)
    }
}

/// A subscription item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubscriptionItem {
    /// `si_...`.
    pub id: String,
    /// Its price.
    pub price: Option<Price>,
    /// Its quantity (seats).
    pub quantity: Option<u64>,
    /// The period's end, from API version 2025-03-31 on (Unix seconds).
    pub current_period_end: Option<i64>,
}

/// A price (its id, and its amount for the account's MRR).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Price {
    /// `price_...`.
    pub id: String,
    /// The amount per unit and interval, in the currency's minor unit (cents); absent for
    /// tiered or metered prices.
    #[serde(default)]
    pub unit_amount: Option<i64>,
    /// The currency (ISO 4217, lower case).
    #[serde(default)]
    pub currency: Option<String>,
}

/// A subscription schedule, as created from a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubscriptionSchedule {
    /// `sub_sched_...`.
    pub id: String,
    /// Its phases, the current one first.
    #[serde(default)]
    pub phases: Vec<SchedulePhase>,
}

/// A phase of a subscription schedule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SchedulePhase {
    /// When it starts (Unix seconds).
    pub start_date: Option<i64>,
    /// When it ends (Unix seconds).
    pub end_date: Option<i64>,
    /// Its items.
    #[serde(default)]
    pub items: Vec<PhaseItem>,
}

/// An item of a schedule phase.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhaseItem {
    /// Its price.
    pub price: Option<Expandable>,
    /// Its quantity (none for a metered price).
    pub quantity: Option<u64>,
}

/// An invoice (dunning reads these).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Invoice {
    /// `in_...`.
    pub id: Option<String>,
    /// The amount due, in the currency's smallest unit.
    #[serde(default)]
    pub amount_due: i64,
    /// ISO currency code, lower case.
    pub currency: Option<String>,
    /// Its subscription, on API versions before 2025-03-31.
    pub subscription: Option<Expandable>,
    /// Where it comes from, from API version 2025-03-31 on.
    pub parent: Option<InvoiceParent>,
}

impl Invoice {
    /// Its subscription, wherever this API version puts it.
    pub fn subscription_id(&self) -> Option<&str> {
        self.subscription
            .as_ref()
            .or_else(|| self.parent.as_ref()?.subscription_details.as_ref()?.subscription.as_ref())
            .map(Expandable::id)
    }
}

/// The parent of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InvoiceParent {
    /// Set when a subscription billed it.
    pub subscription_details: Option<SubscriptionDetails>,
}

/// The subscription an invoice bills.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubscriptionDetails {
    /// Its id.
    pub subscription: Option<Expandable>,
}

/// A completed Checkout session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    /// The account it was started for (we set it).
    pub client_reference_id: Option<String>,
    /// Its metadata (we set `account_id` too).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The subscription it created, if any.
    pub subscription: Option<Expandable>,
}

/// The summary of a customer's active Stripe entitlements.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EntitlementSummary {
    /// The active entitlements.
    #[serde(default = "empty_entitlements")]
    pub entitlements: List<ActiveEntitlement>,
}

fn empty_entitlements() -> List<ActiveEntitlement> {
    List { data: Vec::new() }
}

/// An active entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ActiveEntitlement {
    /// The feature's lookup key.
    pub lookup_key: Option<String>,
}

/// What every event object says of its customer: a customer object is one; others name one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CustomerRef {
    /// The object type (`customer`, `subscription`, `invoice`...).
    pub object: Option<String>,
    /// The object's id.
    pub id: Option<String>,
    /// The customer it belongs to.
    pub customer: Option<Expandable>,
}

impl CustomerRef {
    /// The customer's id.
    pub fn customer_id(&self) -> Option<String> {
        if self.object.as_deref() == Some("customer") {
            return self.id.clone();
        }
        self.customer.as_ref().map(|c| c.id().to_owned())
    }
}
