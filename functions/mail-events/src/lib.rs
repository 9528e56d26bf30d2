//! The mail-events function: consumes SES bounce and complaint notifications (SNS → SQS)
//! and adds permanently bounced and complaining addresses to the suppression list.
//! Idempotent by construction: suppressing an address twice keeps the first record.

use std::sync::Arc;

use async_trait::async_trait;
use shared::config::QueueName;
use shared::mail::{events, suppression};
use shared::queue::consumer::{Message, MessageHandler};
use shared::services::Services;

/// Applies one notification.
pub struct MailEvents {
    services: Services,
}

#[async_trait]
impl MessageHandler for MailEvents {
    async fn handle(&self, message: &Message) -> anyhow::Result<()> {
        let now = self.services.clock.now_ms();
        let suppressions = match events::suppressions(&message.body, now) {
            Ok(s) => s,
            Err(e) => {
                // The same bytes will never parse: park them for a person to look at.
                tracing::error!(message_id = %message.id, error = %e, "unreadable mail event dead-lettered");
                let queue = self.services.queues.get(QueueName::MailEvents);
                return queue
                    .send_to_dead_letters(&message.body, message.group_id.as_deref())
                    .await
                    .map_err(Into::into);
            }
        };
        for s in &suppressions {
            suppression::suppress(self.services.store.as_ref(), s).await?;
            tracing::info!(domain = s.email.domain(), reason = ?s.reason, "address suppressed");
        }
        Ok(())
    }
}

/// The queue consumer Lambda and the local stack attach to the mail-events queue.
pub fn handler(services: Services) -> Arc<dyn MessageHandler> {
    Arc::new(MailEvents { services })
}
