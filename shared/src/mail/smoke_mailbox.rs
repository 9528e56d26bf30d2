//! The smoke mailbox: for the end-to-end smoke suite (`infra/smoke.py`) against a deployed
//! preview or staging stack, whose sign-up and invitation links arrive by email.
//!
//! With `GROUNDWORK_SMOKE_MAIL_DOMAIN` set (refused in production), email to an address at
//! that domain is not sent: email-dispatch keeps it in the table for an hour
//! (`SMOKE_MAIL#<address>`), and the operator reads it back with `GET /ops/smoke-mail`.
//! Every other address is mailed as usual. Pick a domain you own and do not receive mail
//! at (`smoke.acme.com`): nothing is ever sent to it.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::store::{Item, Query, Store, StoreError};

/// How long a kept message stays readable.
pub const KEEP_SECS: i64 = 3600;

/// A message kept for the smoke suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SmokeMessage {
    /// The recipient.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The template it came from.
    pub template: String,
    /// When it was kept (Unix ms).
    pub received_at_ms: i64,
}

/// The messages kept for `address`, newest first (at most 20).
///
/// # Errors
/// When the store fails.
pub async fn messages(store: &dyn Store, address: &str) -> Result<Vec<SmokeMessage>, StoreError> {
    let page = store.query(Query::partition(keys::smoke_mailbox(address)).descending().limit(20)).await?;
    page.items.iter().map(Item::record).collect()
}

#[cfg(feature = "mail")]
pub use capture::SmokeMailbox;

#[cfg(feature = "mail")]
mod capture {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::{KEEP_SECS, SmokeMessage};
    use crate::clock::Clock;
    use crate::keys;
    use crate::mail::{MailError, Mailer, OutgoingEmail};
    use crate::store::{Item, Put, Store};

    /// A mailer that keeps the messages to one domain in the table and hands the rest to
    /// the real one.
    pub struct SmokeMailbox {
        /// The mailer of every other address.
        pub inner: Arc<dyn Mailer>,
        /// The domain whose mail is kept.
        pub domain: String,
        /// Where it is kept.
        pub store: Arc<dyn Store>,
        /// The time.
        pub clock: Arc<dyn Clock>,
    }

    #[async_trait]
    impl Mailer for SmokeMailbox {
        fn name(&self) -> &'static str {
            self.inner.name()
        }

        async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
            if email.to.domain() != self.domain {
                return self.inner.send(email).await;
            }
            let now = self.clock.now_ms();
            let message = SmokeMessage {
                to: email.to.as_str().to_owned(),
                subject: email.subject.clone(),
                text: email.text.clone(),
                template: email.template.clone(),
                received_at_ms: now,
            };
            // Keyed by its job (a ULID, so in sending order): a redelivery writes the same item.
            let key = keys::smoke_mail(email.to.as_str(), &email.job_id);
            let item = Item::from_record(key, &message)
                .map_err(|e| MailError::Unavailable(e.into()))?
                .expiring_at(now / 1000 + KEEP_SECS);
            self.store.put(Put::new(item)).await.map_err(|e| MailError::Unavailable(e.into()))?;
            tracing::info!(template = %email.template, "email kept in the smoke mailbox, not sent");
            Ok(format!("smoke-{}", email.job_id))
        }
    }
}
