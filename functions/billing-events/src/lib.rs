//! The billing-events function: consumes the FIFO billing queue (one group per Stripe
//! customer) and applies each Stripe event with [`shared::billing::apply::apply`], then
//! records the outcome in the event's ledger entry (`applied`, `ignored`, `unmatched`,
//! `failed`). A retryable failure leaves the message for redelivery (the customer's later
//! events wait behind it); a permanent one is recorded as `failed` and acknowledged, to be
//! replayed after a fix (`cargo run -- billing replay`).

use std::sync::Arc;

use async_trait::async_trait;
use shared::billing::apply::{self, Outcome};
use shared::billing::events::StripeEvent;
use shared::billing::ledger::{self, LedgerStatus};
use shared::billing::stripe::StripeClient;
use shared::queue::consumer::{Message, MessageHandler};
use shared::services::Services;

/// Applies Stripe events.
pub struct BillingEvents {
    services: Services,
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
        match apply::apply(&s.billing(), self.stripe.as_ref(), &event).await {
            Ok(Outcome::Applied) => ledger::mark(&s.billing(), &event.id, LedgerStatus::Applied, None).await?,
            Ok(Outcome::Ignored(why)) => {
                ledger::mark(&s.billing(), &event.id, LedgerStatus::Ignored, Some(&why)).await?
            }
            Ok(Outcome::UnknownCustomer) => {
                tracing::warn!(event_id = %event.id, event_type = %event.kind, "Stripe event for a customer no account owns");
                ledger::mark(&s.billing(), &event.id, LedgerStatus::Unmatched, None).await?;
            }
            Err(e) if e.is_retryable() => {
                return Err(anyhow::Error::new(e).context(format!("Stripe event {} will be retried", event.id)));
            }
            Err(e) => {
                let why = format!("{:#}", anyhow::Error::new(e));
                tracing::error!(event_id = %event.id, reason = %why, "Stripe event failed; replay it after a fix");
                ledger::mark(&s.billing(), &event.id, LedgerStatus::Failed, Some(&why)).await?;
            }
        }
        tracing::info!(event_id = %event.id, event_type = %event.kind, "Stripe event processed");
        Ok(())
    }
}

/// The queue consumer Lambda and the local stack attach to the billing queue.
pub fn handler(services: Services) -> Arc<dyn MessageHandler> {
    let stripe = services.stripe.clone();
    Arc::new(BillingEvents { services, stripe })
}
