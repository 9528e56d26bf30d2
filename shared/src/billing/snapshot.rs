//! Subscription snapshots and the account's billing state.
//!
//! Subscription state comes from subscription snapshots (an event's object, or one fetched
//! from Stripe), each stamped with the time Stripe produced it (the event's `created`; the
//! fetch time for a fetched one). A snapshot older than the state's replaces nothing; an
//! equal time is broken by event id, so every order ends in the same state. Entitlement
//! changes are recorded in the account's audit log only when the derived entitlements differ
//! from those stored with the state.

use serde_json::json;

use super::Billing;
use super::apply::{ApplyError, Outcome};
use super::events::StripeEvent;
use super::objects::{EntitlementSummary, Subscription};
use super::{BillingState, Interval, Plans, SubscriptionStatus, derive};
use crate::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use crate::id::AccountId;
use crate::keys;
use crate::store::{Item, Put, StoreError};

/// Applies a subscription snapshot taken at `as_of` (Stripe time) by `source`.
///
/// # Errors
/// [`ApplyError`].
pub async fn apply_snapshot(
    s: &Billing<'_>,
    account: AccountId,
    snap: &Subscription,
    as_of: i64,
    source: &str,
) -> Result<Outcome, ApplyError> {
    let item = snap.item();
    let price = item.and_then(|i| i.price.as_ref()).map(|p| p.id.as_str());
    let mut ignored = "";
    let plans = s.plans;
    let changed = update_state(s, account, true, |state| {
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
        let plan = price.and_then(|p| plans.by_price(s.environment, p));
        if price.is_some() && plan.is_none() {
            tracing::warn!(subscription = %snap.id, "the subscription's price is not in the plan catalogue");
        }
        state.customer_id = state.customer_id.take().or_else(|| snap.customer.as_ref().map(|c| c.id().to_owned()));
        state.subscription_id = Some(snap.id.clone());
        state.status = Some(snap.status);
        state.plan_id = plan.map(|(p, _)| p.id.clone());
        state.interval = plan.map(|(_, i): (_, Interval)| i);
        state.item_id = item.map(|i| i.id.clone());
        state.quantity = item.and_then(|i| i.quantity);
        state.cancel_at_period_end = snap.cancel_at_period_end;
        state.cancel_at = snap.cancel_at;
        state.current_period_end = snap.period_end();
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
/// as it is. With `rederive`, the entitlements are derived again from the catalogue (and a
/// change of them audited).
///
/// # Errors
/// The closure's errors; store failures, including a state that keeps changing.
pub async fn update_state<E: From<StoreError>>(
    s: &Billing<'_>,
    account: AccountId,
    rederive: bool,
    mut change: impl FnMut(&mut BillingState) -> Result<bool, E>,
) -> Result<bool, E> {
    for _ in 0..5 {
        let (mut state, version) = super::state(s.store, account).await?;
        if !change(&mut state)? {
            return Ok(false);
        }
        match save(s, account, &state, version, rederive).await {
            Ok(()) => return Ok(true),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("the billing state of {account} kept changing")).into())
}

/// Writes `state` over `version`, deriving entitlements when `rederive` is set and auditing a
/// change of them.
async fn save(
    s: &Billing<'_>,
    account: AccountId,
    state: &BillingState,
    version: u64,
    rederive: bool,
) -> Result<(), StoreError> {
    let mut state = state.clone();
    let before = state.entitlements.clone();
    if rederive {
        state.entitlements = Some(derive_with_stripe(s.plans, &state));
    }
    let mut item = Item::from_record(keys::billing_state(account), &state)?;
    item.version = version;
    let put = if version == 0 { Put::new(item).if_not_exists() } else { Put::new(item).if_unchanged() };
    s.store.put(put).await.map_err(|e| if e.is_condition_failure() { StoreError::ConditionFailed } else { e })?;
    if state.entitlements != before {
        let detail = json!({
            "from": before.as_ref().map(|e| e.plan.clone()),
            "to": state.entitlements.as_ref().map(|e| e.plan.clone()),
            "status": state.status,
        });
        let event =
            NewEvent::new(Actor::System, AuditAction::BillingEntitlementsChanged, Origin::default()).detail(detail);
        if let Err(e) = s.audit(AuditStream::Account(account), event).await {
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

pub(super) async fn apply_stripe_features(
    s: &Billing<'_>,
    account: AccountId,
    event: &StripeEvent,
) -> Result<Outcome, ApplyError> {
    let summary: EntitlementSummary = event.object()?;
    let keys: std::collections::BTreeSet<String> =
        summary.entitlements.data.into_iter().filter_map(|e| e.lookup_key).collect();
    let changed = update_state(s, account, true, |state| {
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
