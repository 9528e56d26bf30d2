//! What each Stripe event changes, correct under any delivery order and any duplication:
//!
//! - subscription state comes from snapshots ([`super::snapshot`]): newest wins;
//! - side effects (dunning and trial emails) are claimed once ([`super::dunning`]);
//! - an event for a customer no account owns is acknowledged and reported as such.

use super::Billing;
use super::dunning::{dunning_email, trial_email};
use super::events::{MalformedEvent, StripeEvent, account_of, link_customer};
use super::objects::{CheckoutSession, Invoice, Subscription};
use super::snapshot::{apply_snapshot, apply_snapshot_noting_ties, apply_stripe_features, update_state};
use super::stripe::{StripeClient, StripeError};
use crate::id::AccountId;
use crate::queue::QueueError;
use crate::store::StoreError;

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

/// Why applying failed. [`ApplyError::is_retryable`] tells a consumer whether to leave the
/// message for redelivery or record the event as failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store failed (an outage, a write race that kept losing, corrupt data).
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// Stripe failed or refused.
    #[error("Stripe failed")]
    Stripe(#[from] StripeError),
    /// A follow-up job could not be queued.
    #[error("a follow-up job could not be queued")]
    Queue(#[from] QueueError),
    /// The event reads a subscription from Stripe, and no key is configured.
    #[error("STRIPE_SECRET_KEY is not set: the subscription cannot be read")]
    StripeNotConfigured,
    /// The object cannot be applied (no id, an unknown status).
    #[error("the event cannot be applied: {0}")]
    Malformed(String),
}

impl ApplyError {
    /// Whether applying the same event later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => !matches!(e, StoreError::Corrupt(_) | StoreError::Invalid(_)),
            Self::Stripe(e) => e.is_retryable(),
            Self::Queue(_) | Self::StripeNotConfigured => true,
            Self::Malformed(_) => false,
        }
    }
}

impl From<MalformedEvent> for ApplyError {
    fn from(e: MalformedEvent) -> Self {
        Self::Malformed(e.0)
    }
}

/// Applies `event`.
///
/// # Errors
/// [`ApplyError`].
pub async fn apply(s: &Billing<'_>, stripe: Option<&StripeClient>, event: &StripeEvent) -> Result<Outcome, ApplyError> {
    // The account: by the customer's mapping, else (checkout) by the reference we set.
    let mut account = match event.customer() {
        Some(c) => account_of(s, &c).await?,
        None => None,
    };
    if account.is_none() && event.kind == "checkout.session.completed" {
        let session: CheckoutSession = event.object()?;
        let reference =
            session.client_reference_id.as_deref().or(session.metadata.get("account_id").map(String::as_str));
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
            event_snapshot(s, stripe, account, &event.object()?, event).await
        }
        "customer.subscription.trial_will_end" => {
            let subscription: Subscription = event.object()?;
            let outcome = event_snapshot(s, stripe, account, &subscription, event).await?;
            trial_email(s, account, &subscription).await?;
            Ok(outcome)
        }
        "checkout.session.completed" => {
            let session: CheckoutSession = event.object()?;
            let Some(sub) = session.subscription else {
                return Ok(Outcome::Ignored("a checkout without a subscription".into()));
            };
            match stripe {
                Some(client) => {
                    let snapshot = client.subscription(sub.id()).await?;
                    apply_snapshot(s, account, &snapshot, event.created, &event.id).await
                }
                None => Err(ApplyError::StripeNotConfigured),
            }
        }
        "invoice.paid" | "invoice.payment_failed" | "invoice.payment_action_required" => {
            let invoice: Invoice = event.object()?;
            if event.kind != "invoice.paid" {
                dunning_email(s, account, &invoice, &event.kind).await?;
            }
            // The invoice changes the subscription's status: take Stripe's current one.
            match (invoice.subscription_id(), stripe) {
                (Some(sub), Some(client)) => {
                    let snapshot = client.subscription(sub).await?;
                    apply_snapshot(s, account, &snapshot, event.created, &event.id).await
                }
                _ => Ok(Outcome::Applied),
            }
        }
        "entitlements.active_entitlement_summary.updated" => apply_stripe_features(s, account, event).await,
        "customer.updated" => {
            let customer = event.customer();
            update_state(s, account, false, |state| {
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

/// Applies the subscription snapshot an event carries. Stripe stamps events to the second
/// (`created`), delivers them in no guaranteed order, and its ids carry no order
/// (<https://docs.stripe.com/webhooks#event-ordering>), so two different snapshots of one
/// subscription stamped the same second cannot be ordered from the events. Then the
/// subscription is read from Stripe and applied as of the read, over whatever the id
/// decided. Without a Stripe key the event id breaks the tie: every replica agrees, but the
/// pick is arbitrary, and a warning says so.
async fn event_snapshot(
    s: &Billing<'_>,
    stripe: Option<&StripeClient>,
    account: AccountId,
    snap: &Subscription,
    event: &StripeEvent,
) -> Result<Outcome, ApplyError> {
    // The tie is noticed in the state's own read-modify-write: no extra read per event.
    let (outcome, tied) = apply_snapshot_noting_ties(s, account, snap, event.created, &event.id).await?;
    if !tied {
        return Ok(outcome);
    }
    let Some(client) = stripe else {
        tracing::warn!(
            event_id = %event.id, subscription = %snap.id,
            "two snapshots of one second and no STRIPE_SECRET_KEY to settle them: the event id decided"
        );
        return Ok(outcome);
    };
    let current = client.subscription(&snap.id).await?;
    let source = format!("fetch:{}", s.clock.now_ms());
    apply_snapshot(s, account, &current, s.clock.now_secs().max(event.created), &source).await
}
