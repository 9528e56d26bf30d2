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
use super::{BillingState, Plans, SubscriptionStatus, derive};
use crate::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use crate::id::AccountId;
use crate::jobs::outbox::StagedJob;
use crate::keys;
use crate::store::{Item, Put, StoreError, TxOp};

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
    Ok(apply_snapshot_noting_ties(s, account, snap, as_of, source).await?.0)
}

/// As [`apply_snapshot`], and whether the state held another snapshot of the same
/// subscription stamped the same second (which `source` then decided, arbitrarily).
pub(super) async fn apply_snapshot_noting_ties(
    s: &Billing<'_>,
    account: AccountId,
    snap: &Subscription,
    as_of: i64,
    source: &str,
) -> Result<(Outcome, bool), ApplyError> {
    let item = plan_item(s, snap);
    let mut ignored = "";
    let mut tied = false;
    let change = |state: &mut BillingState| {
        tied = as_of == state.as_of
            && source != state.as_of_event
            && state.subscription_id.as_deref() == Some(snap.id.as_str());
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
        state.customer_id = state.customer_id.take().or_else(|| snap.customer.as_ref().map(|c| c.id().to_owned()));
        state.subscription_id = Some(snap.id.clone());
        state.status = Some(snap.status);
        state.plan_id = item.map(|i| i.plan.id.clone());
        state.interval = item.map(|i| i.interval);
        state.item_id = item.map(|i| i.item.id.clone());
        state.quantity = item.and_then(|i| i.item.quantity);
        let price = item.and_then(|i| i.item.price.as_ref());
        state.unit_amount = price.and_then(|p| p.unit_amount);
        state.currency = price.and_then(|p| p.currency.clone());
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
    };
    // The account's webhook endpoints hear of the new state with its commit (the outbox).
    let changed = update_state_with(s, account, true, change, |state| subscription_updated(s, account, state)).await?;
    Ok((if changed { Outcome::Applied } else { Outcome::Ignored(ignored.into()) }, tied))
}

/// The `subscription.updated` webhook message of the state a snapshot set, staged to commit
/// with it. Its id names the snapshot.
fn subscription_updated(s: &Billing<'_>, account: AccountId, state: &BillingState) -> Option<StagedJob> {
    let status = state.status?;
    let subscription = state.subscription_id.as_deref().unwrap_or_default();
    let source = crate::auth::hash_secret(&state.as_of_event);
    let id = format!("subscription-updated-{}-{}", state.as_of, &source[..24]);
    let data = json!({
        "account_id": account,
        "subscription_id": subscription,
        "plan": derive(s.plans, state).plan,
        "status": status,
        "seats": state.quantity,
    });
    let event = crate::webhooks::Event::new("subscription.updated", id, s.clock.now_ms(), data);
    match crate::webhooks::stage(&s.jobs(), account, &event) {
        Ok(job) => Some(job),
        Err(e) => {
            // Never in practice: the id and type are well-formed and the data small.
            tracing::error!(error = %e, "the subscription.updated webhook message is malformed");
            None
        }
    }
}

/// The item of `snap` that carries the plan. None or several is a catalogue or Stripe set-up
/// fault, reported (an error log line and the `BillingPlanUnresolved` metric, which an alarm
/// can watch) and never guessed from a position: with none, the state has no plan (and says
/// so in the log); with several, the highest-ranked plan counts.
fn plan_item<'a>(s: &Billing<'a>, snap: &'a Subscription) -> Option<super::objects::PlanItem<'a>> {
    let items = snap.plan_items(s.plans, s.environment);
    let problem = match items.len() {
        1 => None,
        0 if !snap.items.data.is_empty() => Some("no item's price is in the plan catalogue"),
        0 => None,
        _ => Some("several items carry a plan: the highest-ranked counts"),
    };
    if let Some(problem) = problem {
        let prices: Vec<&str> =
            snap.items.data.iter().filter_map(|i| i.price.as_ref()).map(|p| p.id.as_str()).collect();
        tracing::error!(subscription = %snap.id, ?prices, problem, "the subscription's plan is not resolved");
        crate::telemetry::metrics::Metrics::new()
            .property("subscription", snap.id.clone())
            .metric("BillingPlanUnresolved", 1.0, crate::telemetry::metrics::Unit::Count)
            .emit();
    }
    items.into_iter().max_by_key(|i| s.plans.rank(&i.plan.id))
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
    change: impl FnMut(&mut BillingState) -> Result<bool, E>,
) -> Result<bool, E> {
    update_state_with(s, account, rederive, change, |_| None).await
}

/// As [`update_state`], with the job `stage` makes of the new state committed in the same
/// transaction and dispatched after it (the job outbox).
async fn update_state_with<E: From<StoreError>>(
    s: &Billing<'_>,
    account: AccountId,
    rederive: bool,
    mut change: impl FnMut(&mut BillingState) -> Result<bool, E>,
    stage: impl Fn(&BillingState) -> Option<StagedJob>,
) -> Result<bool, E> {
    for _ in 0..5 {
        let (mut state, version) = super::state(s.store, account).await?;
        let before = state.clone();
        if !change(&mut state)? {
            return Ok(false);
        }
        let job = stage(&state);
        let events = lifecycle_events(account, &before, &state)?;
        match save(s, account, &state, version, rederive, job.as_ref(), events).await {
            Ok(()) => {
                if let Some(job) = job {
                    s.jobs().dispatch(job).await;
                }
                return Ok(true);
            }
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("the billing state of {account} kept changing")).into())
}

/// The product events of a change of the billing state (trial started, converted, plan
/// changed, payment failed, cancelled), each keyed by the change's source, so a change
/// applied again records nothing new; timed by Stripe's clock (`as_of`).
///
/// # Errors
/// Never in practice (the names and properties are Groundwork's own).
fn lifecycle_events(account: AccountId, before: &BillingState, after: &BillingState) -> Result<Vec<TxOp>, StoreError> {
    use SubscriptionStatus::{Active, Canceled, PastDue, Trialing, Unpaid};
    let mut out = Vec::new();
    let at_ms = after.as_of.saturating_mul(1000);
    let once = after.as_of_event.as_str();
    let plan = json!(after.plan_id);
    let mut event = |name: &'static str, properties: &[(&str, serde_json::Value)]| -> Result<(), StoreError> {
        out.push(crate::product_events::lifecycle(name, account, None, at_ms, properties, Some(once))?);
        Ok(())
    };
    let (was, is) = (before.status, after.status);
    if is == Some(Trialing) && was != Some(Trialing) {
        event("trial.started", &[("plan", plan.clone())])?;
    }
    // Paying for the first time: from a trial or from nothing, not back from a failed payment.
    if is == Some(Active) && !matches!(was, Some(Active | PastDue | Unpaid)) {
        event("subscription.converted", &[("plan", plan.clone()), ("from_trial", json!(was == Some(Trialing)))])?;
    }
    if let (Some(from), Some(to)) = (&before.plan_id, &after.plan_id)
        && from != to
        && before.subscription_id == after.subscription_id
    {
        event("plan.changed", &[("from", json!(from)), ("to", json!(to))])?;
    }
    if matches!(is, Some(PastDue | Unpaid)) && !matches!(was, Some(PastDue | Unpaid)) {
        event("payment.failed", &[("status", json!(is))])?;
    }
    let scheduled = after.cancel_at_period_end && !before.cancel_at_period_end;
    let ended = is == Some(Canceled) && was != Some(Canceled) && !before.cancel_at_period_end;
    if scheduled || ended {
        event("subscription.cancelled", &[("at_period_end", json!(scheduled))])?;
    }
    Ok(out)
}

/// Writes `state` over `version` (with `job`'s outbox copy and the product `events` in the
/// same transaction), deriving entitlements when `rederive` is set and auditing a change of
/// them.
async fn save(
    s: &Billing<'_>,
    account: AccountId,
    state: &BillingState,
    version: u64,
    rederive: bool,
    job: Option<&StagedJob>,
    events: Vec<TxOp>,
) -> Result<(), StoreError> {
    let mut state = state.clone();
    let before = state.entitlements.clone();
    if rederive {
        state.entitlements = Some(derive_with_stripe(s.plans, &state));
    }
    let mut item = Item::from_record(keys::billing_state(account), &state)?;
    item.version = version;
    let put = if version == 0 { Put::new(item).if_not_exists() } else { Put::new(item).if_unchanged() };
    let written = match (job, events.is_empty()) {
        (None, true) => s.store.put(put).await.map(|_| ()),
        (job, _) => {
            let mut ops = vec![TxOp::Put(put)];
            ops.extend(job.map(StagedJob::op));
            ops.extend(events);
            s.store.transact(ops).await
        }
    };
    written.map_err(|e| if e.is_condition_failure() { StoreError::ConditionFailed } else { e })?;
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
