//! The email-dispatch function: consumes the email queue, renders each
//! [`Job::SendEmail`](shared::jobs::Job::SendEmail) and sends it through the configured
//! [`Mailer`](shared::mail::Mailer) (SES on AWS, SMTP, or the local outbox). Suppressed
//! recipients are skipped and recorded, never retried; a provider's refusal is permanent
//! (dead-lettered at once); an outage is retried with backoff by the job runner.

use std::sync::Arc;

use async_trait::async_trait;
use shared::config::QueueName;
use shared::jobs::{Envelope, Job, JobError, JobHandler, JobOutcome};
use shared::mail::render::{Branding, render};
use shared::mail::{MailError, Mailer, OutgoingEmail, suppression};
use shared::queue::consumer::MessageHandler;
use shared::services::Services;
use shared::telemetry::metrics::{Metrics, Unit};

/// Carries out `SendEmail` jobs.
pub struct EmailDispatch {
    services: Services,
    mailer: Arc<dyn Mailer>,
    branding: Branding,
    from: String,
}

impl EmailDispatch {
    /// The handler over `services`.
    ///
    /// # Errors
    /// When no sender address is configured (`GROUNDWORK_MAIL_FROM`), or the mailer
    /// `GROUNDWORK_MAIL` asks for cannot be built.
    pub fn new(services: Services) -> anyhow::Result<Self> {
        let mailer = shared::mail::mailer_with_smoke_mailbox(
            &services.config.mail,
            &services.config.data_dir,
            services.aws.as_ref(),
            services.store.clone(),
            services.clock.clone(),
        )?;
        let from = services.config.mail.from.clone().ok_or_else(|| {
            anyhow::anyhow!("missing environment variable GROUNDWORK_MAIL_FROM: email-dispatch needs a verified sender")
        })?;
        let branding =
            Branding { name: services.config.server.app_name.clone(), url: services.config.server.app_url.clone() };
        Ok(Self { services, mailer, branding, from })
    }
}

#[async_trait]
impl JobHandler for EmailDispatch {
    async fn run(&self, envelope: &Envelope) -> Result<JobOutcome, JobError> {
        let Job::SendEmail { to, email } = &envelope.job else {
            return Err(JobError::Permanent(anyhow::anyhow!("{} is not an email job", envelope.job.kind())));
        };
        let store = self.services.store.as_ref();
        if let Some(s) = suppression::get(store, to).await.map_err(|e| JobError::Retry(e.into()))? {
            return Ok(JobOutcome::Skipped(format!("recipient suppressed ({:?}: {})", s.reason, s.detail)));
        }
        let rendered = render(email, &self.branding).map_err(|e| JobError::Permanent(e.into()))?;
        let outgoing = OutgoingEmail {
            from: self.from.clone(),
            to: to.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            template: email.template_name().to_owned(),
            job_id: envelope.id.to_string(),
        };
        match self.mailer.send(&outgoing).await {
            Ok(provider_id) => {
                // Sends per hour, per function: the mail-spike alarm reads it.
                Metrics::new()
                    .property("template", email.template_name())
                    .metric("EmailsSent", 1.0, Unit::Count)
                    .emit();
                tracing::info!(
                    mailer = self.mailer.name(),
                    template = email.template_name(),
                    provider_id = %provider_id,
                    "email sent"
                );
                Ok(JobOutcome::Done)
            }
            Err(MailError::Rejected(why)) => Err(JobError::Permanent(anyhow::anyhow!("rejected: {why}"))),
            Err(MailError::Unavailable(e)) => Err(JobError::Retry(e)),
        }
    }
}

/// The queue consumer Lambda and the local stack attach to the email queue.
///
/// # Errors
/// As [`EmailDispatch::new`].
pub fn handler(services: Services) -> anyhow::Result<Arc<dyn MessageHandler>> {
    let dispatch = Arc::new(EmailDispatch::new(services.clone())?);
    Ok(Arc::new(services.job_runner(QueueName::Email, dispatch)))
}
