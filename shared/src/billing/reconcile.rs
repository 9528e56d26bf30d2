//! Repairing drift against Stripe: the scheduled reconciliation, and the cancellation of a
//! deleted account's subscription.

use serde_json::{Value, json};

use super::Billing;
use super::SubscriptionStatus;
use super::apply::ApplyError;
use super::snapshot::apply_snapshot;
use super::stripe::StripeClient;
use crate::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use crate::id::AccountId;
use crate::keys;
use crate::tenancy;

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
    s: &Billing<'_>,
    stripe: &StripeClient,
    account: AccountId,
) -> Result<bool, ApplyError> {
    let marker = keys::pending_cancellation(account);
    if s.store.get(&marker).await?.is_none() {
        return Ok(false);
    }
    let deleted = tenancy::load_account(s.store, account).await?.is_none_or(|(a, _)| a.deleted_at_ms.is_some());
    let (state, _) = super::state(s.store, account).await?;
    let mut cancelled = false;
    if deleted
        && let (Some(sub), Some(status)) = (&state.subscription_id, state.status)
        && status.grants_plan()
        && !state.cancel_at_period_end
    {
        let snapshot = stripe.cancel_at_period_end(sub, true, &format!("account-deleted-{sub}")).await?;
        let now = s.clock.now_secs();
        apply_snapshot(s, account, &snapshot, now, &format!("account-deleted:{}", s.clock.now_ms())).await?;
        let event = NewEvent::new(Actor::System, AuditAction::BillingCancelledWithAccount, Origin::default())
            .detail(json!({"subscription": sub}));
        s.audit(AuditStream::Account(account), event).await?;
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
pub async fn reconcile(s: &Billing<'_>, stripe: &StripeClient) -> Result<Vec<Repair>, ApplyError> {
    use crate::store::StoreExt as _;
    // Deleted accounts whose cancellation has not happened yet (a failed job).
    for item in s.store.query_all(crate::store::Query::partition(keys::PENDING_CANCELLATIONS)).await? {
        if let Ok(account) = item.key.sk.parse::<AccountId>() {
            cancel_for_deleted(s, stripe, account).await?;
        }
    }
    let accounts = s.store.query_all(crate::store::Query::partition(keys::BILLED_ACCOUNTS)).await?;
    let mut repairs = Vec::new();
    for item in accounts {
        let Ok(account) = item.key.sk.parse::<AccountId>() else { continue };
        let Some(customer) = item.data.get("customer_id").and_then(Value::as_str) else { continue };
        let subs = stripe.subscriptions(customer).await?;
        // The live one if any, else the newest.
        let current = subs
            .iter()
            .filter(|sub| sub.status.grants_plan())
            .max_by_key(|sub| sub.created)
            .or_else(|| subs.iter().max_by_key(|sub| sub.created));
        let Some(current) = current else { continue };
        let (before, _) = super::state(s.store, account).await?;
        let now = s.clock.now_secs();
        apply_snapshot(s, account, current, now, &format!("reconcile:{}", s.clock.now_ms())).await?;
        let (after, _) = super::state(s.store, account).await?;
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
