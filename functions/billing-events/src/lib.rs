//! The billing-events function: consumes the FIFO billing queue (one group per Stripe
//! customer) and applies each Stripe event with [`shared::billing::events::apply`], then
//! records the outcome in the event's ledger entry (`applied`, `ignored`, `unmatched`,
//! `failed`). A retryable failure leaves the message for redelivery (the customer's later
//! events wait behind it); a permanent one is recorded as `failed` and acknowledged, to be
//! replayed after a fix (`cargo run -- billing replay`).

use std::sync::Arc;

use async_trait::async_trait;
use shared::billing::Plans;
use shared::billing::events::{self, ApplyError, Outcome, StripeEvent};
use shared::billing::stripe::StripeClient;
use shared::queue::consumer::{Message, MessageHandler};
use shared::services::Services;

/// Applies Stripe events.
pub struct BillingEvents {
    services: Services,
    plans: &'static Plans,
    stripe: Option<StripeClient>,
}

#[async_trait]
impl MessageHandler for BillingEvents {
    async fn handle(&self, message: &Message) -> anyhow::Result<()> {
        let s = &self.services;
        let event: StripeEvent = match serde_json::from_str(&message.body) {
            Ok(e) => e,
            Err(e) => {
                // The receiver only queues what parsed; this is not retryable.
                tracing::error!(error = %e, message_id = %message.id, "a billing message that is not a Stripe event");
                return Ok(());
            }
        };
        match events::apply(s, self.plans, self.stripe.as_ref(), &event).await {
            Ok(Outcome::Applied) => events::mark(s, &event.id, "applied", None).await?,
            Ok(Outcome::Ignored(why)) => events::mark(s, &event.id, "ignored", Some(&why)).await?,
            Ok(Outcome::UnknownCustomer) => {
                tracing::warn!(event_id = %event.id, event_type = %event.kind, "Stripe event for a customer no account owns");
                events::mark(s, &event.id, "unmatched", None).await?;
            }
            Err(ApplyError::Permanent(why)) => {
                tracing::error!(event_id = %event.id, reason = %why, "Stripe event failed; replay it after a fix");
                events::mark(s, &event.id, "failed", Some(&why)).await?;
            }
            Err(ApplyError::Retry(why)) => anyhow::bail!("Stripe event {} will be retried: {why}", event.id),
        }
        tracing::info!(event_id = %event.id, event_type = %event.kind, "Stripe event processed");
        Ok(())
    }
}

/// The queue consumer Lambda and the local stack attach to the billing queue.
///
/// # Errors
/// When the plan catalogue does not load.
pub fn handler(services: Services) -> anyhow::Result<Arc<dyn MessageHandler>> {
    let plans = Plans::load(&services.config)?;
    let stripe = services.stripe.clone();
    Ok(Arc::new(BillingEvents { services, plans, stripe }))
}
