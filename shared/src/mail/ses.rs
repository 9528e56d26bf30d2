//! Amazon SES v2: `SendEmail` with simple content (subject, text, HTML), the configuration
//! set that routes bounce and complaint events to the suppression consumer, and the template
//! name as a message tag.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};

use super::{MailError, Mailer, OutgoingEmail};

/// The SES adapter of [`Mailer`].
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    configuration_set: Option<String>,
}

impl SesMailer {
    /// A mailer using `client`, tagging sends with `configuration_set` when given.
    pub fn new(client: Client, configuration_set: Option<String>) -> Self {
        Self { client, configuration_set }
    }
}

fn content(text: &str) -> Result<Content, MailError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| MailError::Rejected(e.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    fn name(&self) -> &'static str {
        "ses"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(Body::builder().text(content(&email.text)?).html(content(&email.html)?).build())
            .build();
        let tag = MessageTag::builder()
            .name("template")
            .value(&email.template)
            .build()
            .map_err(|e| MailError::Rejected(e.to_string()))?;
        let out = self
            .client
            .send_email()
            .from_email_address(&email.from)
            .destination(Destination::builder().to_addresses(email.to.as_str()).build())
            .content(EmailContent::builder().simple(message).build())
            .set_configuration_set_name(self.configuration_set.clone())
            .email_tags(tag)
            .send()
            .await;
        match out {
            Ok(o) => Ok(o.message_id.unwrap_or_default()),
            Err(e) => match e.code() {
                // SES refuses these for good; retrying only repeats the refusal.
                Some(
                    "MessageRejected"
                    | "MailFromDomainNotVerifiedException"
                    | "BadRequestException"
                    | "AccountSuspendedException"
                    | "NotFoundException",
                ) => Err(MailError::Rejected(e.message().unwrap_or("rejected by SES").to_owned())),
                _ => Err(MailError::Unavailable(anyhow::Error::new(e).context("SES SendEmail failed"))),
            },
        }
    }
}
