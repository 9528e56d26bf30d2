//! Applying Stripe events, correct under any delivery order and any duplication.
//!
//! - Subscription state comes from subscription snapshots (the event's object, or one
//!   fetched from Stripe), each stamped with the time Stripe produced it (the event's
//!   `created`; the fetch time for a fetched one). A snapshot older than the state's replaces
//!   nothing; an equal time is broken by event id, so every order ends in the same state.
//! - Side effects (dunning and trial emails) are claimed once by a marker item
//!   (`BILLING_EFFECT#<key>`) written with a not-exists condition before the email is queued.
//! - Entitlement changes are recorded in the account's audit log only when the derived
//!   entitlements differ from those stored with the state, in the same conditional write.
//! - An event for a customer no account owns is acknowledged and reported as such.

use serde::Deserialize;
use serde_json::{Value, json};

use super::stripe::{StripeClient, StripeError};
use super::{BillingState, Interval, Plans, SubscriptionStatus, customer_key, customers_index, derive, state_key};
use crate::id::AccountId;
use crate::jobs::{Job, enqueue_with_key};
use crate::mail::EmailAddress;
use crate::mail::templates::Email;
use crate::services::Services;
use crate::store::{Item, Key, Put, StoreError};
use crate::tenancy::{self, Role};

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
        let o = &self.data.object;
        let c = if o["object"] == "customer" { &o["id"] } else { &o["customer"] };
        c.as_str().or_else(|| c["id"].as_str()).map(str::to_owned)
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is in the state (or was already).
    Applied,
    /// Nothing to do (an event type Groundwork does not act on, or a stale snapshot).
    Ignored(String),
    /// No account owns its customer.
    UnknownCustomer,
}

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Retry later (store or Stripe unavailable, a write race).
    #[error("retryable: {0}")]
    Retry(String),
    /// The event cannot be applied (an unknown status, a malformed object).
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        Self::Retry(e.to_string())
    }
}

impl From<StripeError> for ApplyError {
    fn from(e: StripeError) -> Self {
        match e {
            StripeError::Unavailable(m) => Self::Retry(m),
            StripeError::Rejected { status, message } => Self::Permanent(format!("Stripe said {status}: {message}")),
        }
    }
}

/// The account of a Stripe customer.
///
/// # Errors
/// When the store fails.
pub async fn account_of(s: &Services, customer: &str) -> Result<Option<AccountId>, StoreError> {
    let item = s.store.get(&customer_key(customer)).await?;
    Ok(item.and_then(|i| i.data.get("account_id").and_then(Value::as_str).and_then(|v| v.parse().ok())))
}

/// Records that `customer` belongs to `account` (idempotent).
///
/// # Errors
/// When the store fails.
pub async fn link_customer(s: &Services, customer: &str, account: AccountId) -> Result<(), StoreError> {
    let item = Item::new(customer_key(customer)).with("account_id", account.to_string());
    s.store.put(Put::new(item)).await?;
    let index = Item::new(customers_index(account)).with("customer_id", customer);
    s.store.put(Put::new(index)).await.map(|_| ())
}

/// Applies `event`.
///
/// # Errors
/// [`ApplyError`].
pub async fn apply(
    s: &Services,
    plans: &Plans,
    stripe: Option<&StripeClient>,
    event: &StripeEvent,
) -> Result<Outcome, ApplyError> {
    let object = &event.data.object;
    // The account: by the customer's mapping, else (checkout) by the reference we set.
    let mut account = match event.customer() {
        Some(c) => account_of(s, &c).await?,
        None => None,
    };
    if account.is_none() && event.kind == "checkout.session.completed" {
        let reference = object["client_reference_id"].as_str().or_else(|| object["metadata"]["account_id"].as_str());
        if let (Some(a), Some(c)) = (reference.and_then(|r| r.parse::<AccountId>().ok()), event.customer()) {
            link_customer(s, &c, a).await?;
            account = Some(a);
        }
    }
    let Some(account) = account else { return Ok(Outcome::UnknownCustomer) };
    match event.kind.as_str() {
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "customer.subscription.pending_update_applied" => {
            apply_snapshot(s, plans, account, object, event.created, &event.id).await
        }
        "customer.subscription.trial_will_end" => {
            let outcome = apply_snapshot(s, plans, account, object, event.created, &event.id).await?;
            trial_email(s, account, object).await?;
            Ok(outcome)
        }
        "checkout.session.completed" => {
            let Some(sub) = object["subscription"].as_str() else {
                return Ok(Outcome::Ignored("a checkout without a subscription".into()));
            };
            match stripe {
                Some(client) => {
                    let snapshot = client.subscription(sub).await?;
                    apply_snapshot(s, plans, account, &snapshot, event.created, &event.id).await
                }
                None => Err(ApplyError::Retry("STRIPE_SECRET_KEY is not set: cannot read the subscription".into())),
            }
        }
        "invoice.paid" | "invoice.payment_failed" | "invoice.payment_action_required" => {
            if event.kind != "invoice.paid" {
                dunning_email(s, account, object, &event.kind).await?;
            }
            // The invoice changes the subscription's status: take Stripe's current one.
            match (invoice_subscription(object), stripe) {
                (Some(sub), Some(client)) => {
                    let snapshot = client.subscription(&sub).await?;
                    apply_snapshot(s, plans, account, &snapshot, event.created, &event.id).await
                }
                _ => Ok(Outcome::Applied),
            }
        }
        "entitlements.active_entitlement_summary.updated" => apply_stripe_features(s, plans, account, event).await,
        "customer.updated" => {
            let customer = event.customer();
            update_state(s, account, None, |state| {
                let missing = state.customer_id.is_none();
                if missing {
                    state.customer_id.clone_from(&customer);
                }
                Ok::<_, ApplyError>(missing)
            })
            .await?;
            Ok(Outcome::Applied)
        }
        other => {
            tracing::info!(event_type = other, event_id = %event.id, "Stripe event type not acted on");
            Ok(Outcome::Ignored(format!("{other} is not acted on")))
        }
    }
}

fn invoice_subscription(invoice: &Value) -> Option<String> {
    invoice["subscription"]
        .as_str()
        .or_else(|| invoice["parent"]["subscription_details"]["subscription"].as_str())
        .map(str::to_owned)
}

/// A subscription snapshot, read.
struct Snapshot {
    id: String,
    status: SubscriptionStatus,
    price: Option<String>,
    item_id: Option<String>,
    quantity: Option<u64>,
    cancel_at_period_end: bool,
    cancel_at: Option<i64>,
    current_period_end: Option<i64>,
    trial_end: Option<i64>,
}

fn read_snapshot(sub: &Value) -> Result<Snapshot, ApplyError> {
    let id = sub["id"].as_str().ok_or_else(|| ApplyError::Permanent("a subscription without an id".into()))?;
    let status: SubscriptionStatus = serde_json::from_value(sub["status"].clone())
        .map_err(|_| ApplyError::Permanent(format!("subscription {id}: unknown status {}", sub["status"])))?;
    let item = &sub["items"]["data"][0];
    Ok(Snapshot {
        id: id.to_owned(),
        status,
        price: item["price"]["id"].as_str().map(str::to_owned),
        item_id: item["id"].as_str().map(str::to_owned),
        quantity: item["quantity"].as_u64(),
        cancel_at_period_end: sub["cancel_at_period_end"].as_bool().unwrap_or(false),
        cancel_at: sub["cancel_at"].as_i64(),
        current_period_end: item["current_period_end"].as_i64().or_else(|| sub["current_period_end"].as_i64()),
        trial_end: sub["trial_end"].as_i64(),
    })
}

/// Applies a subscription snapshot taken at `as_of` (Stripe time) by `source`.
///
/// # Errors
/// [`ApplyError`].
pub async fn apply_snapshot(
    s: &Services,
    plans: &Plans,
    account: AccountId,
    sub: &Value,
    as_of: i64,
    source: &str,
) -> Result<Outcome, ApplyError> {
    let snap = read_snapshot(sub)?;
    let mut ignored = "";
    let changed = update_state(s, account, Some(plans), |state| {
        let newer = (as_of, source) > (state.as_of, state.as_of_event.as_str());
        if !newer {
            ignored = "a snapshot no newer than the state";
            return Ok(false);
        }
        // Another subscription than the current one replaces it only if it is live or the
        // current one is not (an old, ended subscription never displaces a live one).
        let other = state.subscription_id.as_deref().is_some_and(|id| id != snap.id);
        if other && !snap.status.grants_plan() && state.status.is_some_and(SubscriptionStatus::grants_plan) {
            ignored = "an ended subscription other than the live one";
            return Ok(false);
        }
        let plan = snap.price.as_deref().and_then(|p| plans.by_price(&s.config.environment, p));
        if snap.price.is_some() && plan.is_none() {
            tracing::warn!(subscription = %snap.id, "the subscription's price is not in the plan catalogue");
        }
        state.customer_id = state.customer_id.take().or_else(|| sub["customer"].as_str().map(str::to_owned));
        state.subscription_id = Some(snap.id.clone());
        state.status = Some(snap.status);
        state.plan_id = plan.map(|(p, _)| p.id.clone());
        state.interval = plan.map(|(_, i): (_, Interval)| i);
        state.item_id = snap.item_id.clone();
        state.quantity = snap.quantity;
        state.cancel_at_period_end = snap.cancel_at_period_end;
        state.cancel_at = snap.cancel_at;
        state.current_period_end = snap.current_period_end;
        state.trial_end = snap.trial_end;
        // A scheduled downgrade that has happened (or a different subscription) is no longer pending.
        if state.pending_plan_id.is_some() && (state.plan_id == state.pending_plan_id || other) {
            state.pending_plan_id = None;
            state.pending_interval = None;
        }
        state.as_of = as_of;
        state.as_of_event = source.to_owned();
        Ok::<_, ApplyError>(true)
    })
    .await?;
    Ok(if changed { Outcome::Applied } else { Outcome::Ignored(ignored.into()) })
}

/// Changes an account's billing state under its optimistic lock, reading it again and
/// retrying when another writer got there first. `change` returns false to leave the state
/// as it is. With `plans`, the entitlements are derived again (and a change of them audited).
///
/// # Errors
/// The closure's errors; store failures, including a state that keeps changing.
pub async fn update_state<E: From<StoreError>>(
    s: &Services,
    account: AccountId,
    plans: Option<&Plans>,
    mut change: impl FnMut(&mut BillingState) -> Result<bool, E>,
) -> Result<bool, E> {
    for _ in 0..5 {
        let (mut state, version) = super::state(s.store.as_ref(), account).await?;
        if !change(&mut state)? {
            return Ok(false);
        }
        match save(s, account, &state, version, plans).await {
            Ok(()) => return Ok(true),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("the billing state of {account} kept changing")).into())
}

/// Writes `state` over `version`, deriving entitlements when `plans` is given and auditing a
/// change of them.
async fn save(
    s: &Services,
    account: AccountId,
    state: &BillingState,
    version: u64,
    plans: Option<&Plans>,
) -> Result<(), StoreError> {
    let mut state = state.clone();
    let before = state.entitlements.clone();
    if let Some(plans) = plans {
        state.entitlements = Some(derive_with_stripe(plans, &state));
    }
    let mut item = Item::from_record(state_key(account), &state)?;
    item.version = version;
    let put = if version == 0 { Put::new(item).if_not_exists() } else { Put::new(item).if_unchanged() };
    s.store.put(put).await.map_err(|e| if e.is_condition_failure() { StoreError::ConditionFailed } else { e })?;
    if state.entitlements != before {
        let detail = json!({
            "from": before.as_ref().map(|e| e.plan.clone()),
            "to": state.entitlements.as_ref().map(|e| e.plan.clone()),
            "status": state.status,
        });
        let origin = crate::audit::Origin::default();
        if let Err(e) = tenancy::record(s, account, None, "billing.entitlements_changed", None, origin, detail).await {
            tracing::warn!(error = %e, "could not audit an entitlement change");
        }
    }
    Ok(())
}

fn derive_with_stripe(plans: &Plans, state: &BillingState) -> super::Entitlements {
    let mut e = derive(plans, state);
    if let Some(extra) = &state.stripe_features {
        e.features.extend(extra.iter().cloned());
    }
    e
}

async fn apply_stripe_features(
    s: &Services,
    plans: &Plans,
    account: AccountId,
    event: &StripeEvent,
) -> Result<Outcome, ApplyError> {
    let keys: std::collections::BTreeSet<String> = event.data.object["entitlements"]["data"]
        .as_array()
        .map(|list| list.iter().filter_map(|e| e["lookup_key"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let changed = update_state(s, account, Some(plans), |state| {
        if (event.created, event.id.as_str()) <= (state.stripe_features_as_of, state.stripe_features_event.as_str()) {
            return Ok::<_, ApplyError>(false);
        }
        state.stripe_features = Some(keys.clone());
        state.stripe_features_as_of = event.created;
        state.stripe_features_event = event.id.clone();
        Ok(true)
    })
    .await?;
    Ok(if changed { Outcome::Applied } else { Outcome::Ignored("older entitlements".into()) })
}

/// Claims the one-time side effect `key`: true the first time only.
///
/// # Errors
/// When the store fails.
pub async fn claim_effect(s: &Services, key: &str) -> Result<bool, StoreError> {
    let marker = Item::new(Key::new(format!("BILLING_EFFECT#{key}"), "EFFECT")).with("at_ms", s.clock.now_ms());
    match s.store.put(Put::new(marker).if_not_exists()).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_condition_failure() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The addresses of an account's owners and billing members.
async fn billing_contacts(s: &Services, account: AccountId) -> Result<Vec<EmailAddress>, StoreError> {
    let mut out = Vec::new();
    for m in tenancy::members(s.store.as_ref(), account).await? {
        if matches!(m.role, Role::Owner | Role::Billing)
            && let Some(u) = tenancy::user_summary(s.store.as_ref(), m.user_id).await?
            && let Ok(e) = EmailAddress::parse(&u.email)
        {
            out.push(e);
        }
    }
    Ok(out)
}

fn billing_link(s: &Services, account: AccountId) -> String {
    format!("{}/accounts/{account}/billing", s.config.app_url)
}

async fn account_name(s: &Services, account: AccountId) -> Result<String, StoreError> {
    Ok(tenancy::load_account(s.store.as_ref(), account).await?.map_or_else(|| "your account".into(), |(a, _)| a.name))
}

async fn dunning_email(s: &Services, account: AccountId, invoice: &Value, kind: &str) -> Result<(), ApplyError> {
    let Some(invoice_id) = invoice["id"].as_str() else { return Ok(()) };
    if !claim_effect(s, &format!("{kind}:{invoice_id}")).await? {
        return Ok(());
    }
    let cents = invoice["amount_due"].as_i64().unwrap_or(0);
    let currency = invoice["currency"].as_str().unwrap_or("usd").to_ascii_uppercase();
    let amount = format!("{}.{:02} {currency}", cents / 100, cents % 100);
    let name = account_name(s, account).await?;
    for to in billing_contacts(s, account).await? {
        let email =
            Email::PaymentFailed { account_name: name.clone(), amount: amount.clone(), link: billing_link(s, account) };
        let key = format!("{kind}:{invoice_id}:{to}");
        enqueue_with_key(s, Job::SendEmail { to, email }, crate::jobs::JobId::new(), key)
            .await
            .map_err(|e| ApplyError::Retry(e.to_string()))?;
    }
    Ok(())
}

async fn trial_email(s: &Services, account: AccountId, sub: &Value) -> Result<(), ApplyError> {
    let (Some(id), Some(trial_end)) = (sub["id"].as_str(), sub["trial_end"].as_i64()) else { return Ok(()) };
    if !claim_effect(s, &format!("trial_will_end:{id}:{trial_end}")).await? {
        return Ok(());
    }
    let name = account_name(s, account).await?;
    let (state, _) = super::state(s.store.as_ref(), account).await?;
    let plan_name = state.plan_id.unwrap_or_else(|| "your plan".into());
    let day = trial_end / 86_400;
    let trial_ends_on = format!("{} (UTC)", civil_date(day));
    for to in billing_contacts(s, account).await? {
        let email = Email::TrialEnding {
            account_name: name.clone(),
            plan_name: plan_name.clone(),
            trial_ends_on: trial_ends_on.clone(),
            link: billing_link(s, account),
        };
        let key = format!("trial_will_end:{id}:{trial_end}:{to}");
        enqueue_with_key(s, Job::SendEmail { to, email }, crate::jobs::JobId::new(), key)
            .await
            .map_err(|e| ApplyError::Retry(e.to_string()))?;
    }
    Ok(())
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (proleptic Gregorian).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(20_819), "2027-01-01");
        assert_eq!(super::civil_date(11_016), "2000-02-29");
    }
}

/// The ledger entry of a Stripe event (written by the webhook receiver).
pub fn ledger_key(event_id: &str) -> Key {
    Key::new(format!("STRIPE_EVENT#{event_id}"), "EVENT")
}

/// The index of ledger events that failed (for the replay command).
pub const FAILED_INDEX: &str = "STRIPE_EVENTS#failed";

/// Records what became of a ledger event.
///
/// # Errors
/// When the store fails.
pub async fn mark(s: &Services, event_id: &str, status: &str, note: Option<&str>) -> Result<(), StoreError> {
    let mut update = crate::store::Update::new(ledger_key(event_id))
        .set("status", status)
        .set("processed_at_ms", s.clock.now_ms())
        .when(crate::store::Condition::Exists);
    if let Some(n) = note {
        update = update.set("note", n);
    }
    update = update.gsi1((status == "failed").then(|| Key::new(FAILED_INDEX, event_id)));
    match s.store.update(update).await {
        Ok(_) => Ok(()),
        // Not recorded by the receiver (a replay from elsewhere): nothing to mark.
        Err(e) if e.is_condition_failure() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Queues every failed ledger event again (after a fix); returns how many.
///
/// # Errors
/// When the store or the queue fails.
pub async fn replay_failed(s: &Services) -> anyhow::Result<usize> {
    use crate::store::StoreExt as _;
    let items = s.store.query_all(crate::store::Query::index(crate::store::Index::Gsi1, FAILED_INDEX)).await?;
    let mut replayed = 0;
    for item in items {
        let Some(payload) = item.data.get("payload").and_then(Value::as_str) else { continue };
        let event: StripeEvent = serde_json::from_str(payload)?;
        let group = event.customer().unwrap_or_else(|| "no-customer".into());
        let dedup = format!("replay-{}-{}", event.id, s.clock.now_ms());
        let message = crate::queue::Outgoing::new(payload).fifo(group, dedup);
        s.queues.get(crate::config::QueueName::Billing).send(message).await?;
        mark(s, &event.id, "queued", Some("replayed")).await?;
        tracing::info!(event_id = %event.id, "failed Stripe event queued again");
        replayed += 1;
    }
    Ok(replayed)
}

/// A drift found and repaired by reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The account.
    pub account: AccountId,
    /// The status before and after.
    pub status: (Option<SubscriptionStatus>, Option<SubscriptionStatus>),
    /// The plan before and after.
    pub plan: (Option<String>, Option<String>),
}

/// For a deleted account awaiting it (`BILLING#PENDING_CANCELLATION`): cancels its live
/// subscription at the period end (so a restore within the period can resume it) and clears
/// the marker; a marker of a restored account is just cleared. Returns whether a
/// subscription was cancelled.
///
/// # Errors
/// When the store or Stripe fails.
pub async fn cancel_for_deleted(
    s: &Services,
    plans: &Plans,
    stripe: &StripeClient,
    account: AccountId,
) -> Result<bool, ApplyError> {
    let marker = tenancy::pending_cancellation_key(account);
    if s.store.get(&marker).await?.is_none() {
        return Ok(false);
    }
    let deleted =
        tenancy::load_account(s.store.as_ref(), account).await?.is_none_or(|(a, _)| a.deleted_at_ms.is_some());
    let (state, _) = super::state(s.store.as_ref(), account).await?;
    let mut cancelled = false;
    if deleted
        && let (Some(sub), Some(status)) = (&state.subscription_id, state.status)
        && status.grants_plan()
        && !state.cancel_at_period_end
    {
        let form = vec![super::stripe::field("cancel_at_period_end", true)];
        let snapshot =
            stripe.post(&format!("/v1/subscriptions/{sub}"), &form, &format!("account-deleted-{sub}")).await?;
        let now = s.clock.now_secs();
        apply_snapshot(s, plans, account, &snapshot, now, &format!("account-deleted:{}", s.clock.now_ms())).await?;
        let origin = crate::audit::Origin::default();
        let detail = json!({"subscription": sub});
        tenancy::record(s, account, None, "billing.cancelled_with_account", None, origin, detail)
            .await
            .map_err(|e| ApplyError::Retry(e.to_string()))?;
        cancelled = true;
    }
    s.store.delete(crate::store::Delete::new(marker)).await?;
    Ok(cancelled)
}

/// For every account with a Stripe customer, reads its subscriptions from Stripe and
/// applies the current one as the newest snapshot; returns the repairs (each also logged).
///
/// # Errors
/// When the store or Stripe fails.
pub async fn reconcile(s: &Services, plans: &Plans, stripe: &StripeClient) -> anyhow::Result<Vec<Repair>> {
    use crate::store::StoreExt as _;
    // Deleted accounts whose cancellation has not happened yet (a failed job).
    for item in s.store.query_all(crate::store::Query::partition("BILLING#PENDING_CANCELLATION")).await? {
        if let Ok(account) = item.key.sk.parse::<AccountId>() {
            cancel_for_deleted(s, plans, stripe, account).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let accounts = s.store.query_all(crate::store::Query::partition("BILLING#CUSTOMERS")).await?;
    let mut repairs = Vec::new();
    for item in accounts {
        let Ok(account) = item.key.sk.parse::<AccountId>() else { continue };
        let Some(customer) = item.data.get("customer_id").and_then(Value::as_str) else { continue };
        let subs = stripe.subscriptions(customer).await?;
        // The live one if any, else the newest.
        let current = subs
            .iter()
            .filter(|sub| {
                serde_json::from_value::<SubscriptionStatus>(sub["status"].clone())
                    .is_ok_and(SubscriptionStatus::grants_plan)
            })
            .max_by_key(|sub| sub["created"].as_i64())
            .or_else(|| subs.iter().max_by_key(|sub| sub["created"].as_i64()));
        let Some(current) = current else { continue };
        let (before, _) = super::state(s.store.as_ref(), account).await?;
        let now = s.clock.now_secs();
        apply_snapshot(s, plans, account, current, now, &format!("reconcile:{}", s.clock.now_ms()))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (after, _) = super::state(s.store.as_ref(), account).await?;
        if (before.status, &before.plan_id, &before.subscription_id)
            != (after.status, &after.plan_id, &after.subscription_id)
        {
            tracing::warn!(
                account_id = %account, before = ?before.status, after = ?after.status,
                plan_before = ?before.plan_id, plan_after = ?after.plan_id,
                "billing drift repaired from Stripe"
            );
            repairs.push(Repair {
                account,
                status: (before.status, after.status),
                plan: (before.plan_id, after.plan_id),
            });
        }
    }
    Ok(repairs)
}
