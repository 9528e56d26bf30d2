//! How transactional email leaves the system, and its sender.

use crate::secret::Secret;
use crate::settings::ConfigError;
use crate::settings::Env;

/// How transactional email leaves the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailBackend {
    /// `.eml` files in `<data dir>/outbox/` (the local default).
    Outbox,
    /// Amazon SES v2 (the default on Lambda), with an optional configuration set.
    Ses {
        /// `GROUNDWORK_SES_CONFIGURATION_SET`: where SES sends bounce/complaint events.
        configuration_set: Option<String>,
    },
    /// An SMTP relay.
    Smtp {
        /// `GROUNDWORK_SMTP_URL`: `smtps://user:pass@host:465`, `smtp://user:pass@host:587`
        /// (STARTTLS required) or `smtp://host:port?tls=none` (loopback relays only).
        url: Secret<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Outbox,
    Ses,
    Smtp,
}

crate::choices!(Kind { "outbox" => Outbox, "ses" => Ses, "smtp" => Smtp });

/// The mail settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    /// `GROUNDWORK_MAIL`: `outbox`, `ses` or `smtp` (default `ses` on Lambda, else `outbox`).
    pub backend: MailBackend,
    /// `GROUNDWORK_MAIL_FROM`: the sender of every email (defaults only for the outbox; the
    /// email-dispatch function refuses to start without it on `ses` and `smtp`).
    pub from: Option<String>,
    /// `GROUNDWORK_SMOKE_MAIL_DOMAIN`: email to this domain is kept for the smoke suite, not
    /// sent (see [`super::smoke_mailbox`]); refused in production.
    pub smoke_domain: Option<String>,
}

impl MailConfig {
    /// The sender the outbox uses when none is set.
    pub const OUTBOX_FROM: &'static str = "Groundwork <no-reply@localhost>";

    /// From `GROUNDWORK_MAIL`, `GROUNDWORK_SMTP_URL`, `GROUNDWORK_SES_CONFIGURATION_SET` and
    /// `GROUNDWORK_MAIL_FROM`.
    ///
    /// # Errors
    /// An unknown backend; `smtp` without its URL.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = if env.on_lambda { Kind::Ses } else { Kind::Outbox };
        let backend = match env.choice("GROUNDWORK_MAIL", default)? {
            Kind::Outbox => MailBackend::Outbox,
            Kind::Ses => MailBackend::Ses { configuration_set: env.get("GROUNDWORK_SES_CONFIGURATION_SET") },
            Kind::Smtp => MailBackend::Smtp {
                url: Secret::new(env.get("GROUNDWORK_SMTP_URL").ok_or_else(|| ConfigError::Missing {
                    var: "GROUNDWORK_SMTP_URL".into(),
                    why: "GROUNDWORK_MAIL=smtp needs the relay's URL",
                })?),
            },
        };
        let from = env
            .get("GROUNDWORK_MAIL_FROM")
            .or_else(|| (backend == MailBackend::Outbox).then(|| Self::OUTBOX_FROM.into()));
        if let Some(sender) = &from
            && sender.parse::<lettre::message::Mailbox>().is_err()
        {
            return Err(ConfigError::Invalid {
                var: "GROUNDWORK_MAIL_FROM".into(),
                value: sender.chars().take(200).collect(),
                reason: "expected a sender such as `Acme <no-reply@acme.com>`".into(),
            });
        }
        let smoke_domain = env.get("GROUNDWORK_SMOKE_MAIL_DOMAIN").map(|d| d.to_ascii_lowercase());
        if let Some(domain) = &smoke_domain
            && super::EmailAddress::parse(&format!("smoke@{domain}")).is_err()
        {
            return Err(ConfigError::Invalid {
                var: "GROUNDWORK_SMOKE_MAIL_DOMAIN".into(),
                value: domain.chars().take(200).collect(),
                reason: "expected a domain such as `smoke.acme.com`".into(),
            });
        }
        Ok(Self { backend, from, smoke_domain })
    }
}
