//! Transactional email: typed templates ([`templates`]), the [`Mailer`] port, the
//! suppression list fed by bounces and complaints ([`suppression`], [`events`]) and the DNS
//! records a sending domain needs ([`dns`]).
//!
//! Email is only ever sent from a background job (the `email-dispatch` function), never on
//! the request path: handlers enqueue a [`crate::jobs::Job::SendEmail`]. So rendering
//! (`render`) and the three adapters (`ses::SesMailer`, `smtp::SmtpMailer`,
//! `outbox::OutboxMailer`, built by `mailer`) come with the `mail` feature, which only
//! that function (and the local stack) enables.

pub mod config;
pub mod dns;
pub mod events;
#[cfg(feature = "mail")]
pub mod outbox;
#[cfg(feature = "mail")]
pub mod render;
#[cfg(feature = "mail")]
pub mod ses;
pub mod smoke_mailbox;
#[cfg(feature = "mail")]
pub mod smtp;
pub mod suppression;
pub mod templates;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The longest address accepted (RFC 5321's path limit).
pub const MAX_ADDRESS_LEN: usize = 254;

/// A syntactically valid email address, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

/// The error for a string that is not an email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address")]
pub struct InvalidEmail;

impl EmailAddress {
    /// Parses an address into its one canonical form, so one mailbox is one address at
    /// every entry point (sign-up, login, reset, invitations, SSO, rent-auth): trimmed; the
    /// domain mapped by UTS #46 (the `idna` crate) to its ASCII form, the form mail
    /// providers such as SES accept (`bücher.example` is `xn--bcher-kva.example`); the local
    /// part in Unicode Normalization Form C (RFC 6532, section 3.1) and lower-cased, as
    /// before (providers treat local parts without regard to case).
    ///
    /// # Errors
    /// [`InvalidEmail`] for anything that is not a plain `local@domain` address.
    pub fn parse(s: &str) -> Result<Self, InvalidEmail> {
        let (local, domain) = s.trim().rsplit_once('@').ok_or(InvalidEmail)?;
        let domain = idna::domain_to_ascii(domain).map_err(|_| InvalidEmail)?;
        let local = icu_normalizer::ComposingNormalizer::new_nfc().normalize(local).to_lowercase();
        let s = format!("{local}@{domain}");
        if local.is_empty() || s.is_empty() || s.len() > MAX_ADDRESS_LEN || s.contains(['<', '>', ' ', ',']) {
            return Err(InvalidEmail);
        }
        let address: lettre::Address = s.parse().map_err(|_| InvalidEmail)?;
        // A domain needs a dot: `user@localhost` is not deliverable from a SaaS; a domain
        // literal (`user@[127.0.0.1]`) names a host, not a mail domain; and no top-level
        // domain is all digits (RFC 3696 section 2), so `user@10.0.0.1` is hopeless too.
        let tld = address.domain().trim_end_matches('.').rsplit('.').next().unwrap_or_default();
        if !address.domain().contains('.')
            || address.domain().starts_with('[')
            || tld.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(InvalidEmail);
        }
        Ok(Self(s))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A rendered email, ready for a [`Mailer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The sender, possibly with a display name (`Acme <no-reply@acme.com>`).
    pub from: String,
    /// The recipient.
    pub to: EmailAddress,
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// The template's name, as a tag (SES) or header (SMTP, outbox).
    pub template: String,
    /// The job that sends it (a header, for tracing a message back to its job).
    pub job_id: String,
}

impl OutgoingEmail {
    /// The message as MIME (multipart/alternative), as the SMTP adapter sends it: each part
    /// in the transfer encoding a mail server accepts (quoted-printable for long lines).
    ///
    /// # Errors
    /// [`MailError::Rejected`] if the sender or recipient does not form a valid header.
    pub fn to_mime(&self) -> Result<lettre::Message, MailError> {
        self.build_mime(false)
    }

    /// The message as a person reads it in a file: the same MIME, with each part's text
    /// exactly as rendered (`Content-Transfer-Encoding: binary`), so links can be copied.
    ///
    /// # Errors
    /// As [`OutgoingEmail::to_mime`].
    pub fn to_readable_mime(&self) -> Result<lettre::Message, MailError> {
        self.build_mime(true)
    }

    fn build_mime(&self, readable: bool) -> Result<lettre::Message, MailError> {
        use lettre::message::header::{ContentType, HeaderName, HeaderValue};
        use lettre::message::{Mailbox, MultiPart};
        let from: Mailbox = self.from.parse().map_err(|e| MailError::Rejected(format!("sender: {e}")))?;
        let to: Mailbox = self.to.as_str().parse().map_err(|e| MailError::Rejected(format!("recipient: {e}")))?;
        let mut builder = lettre::Message::builder().from(from).to(to).subject(&self.subject);
        for (name, value) in [("X-Groundwork-Template", &self.template), ("X-Groundwork-Job", &self.job_id)] {
            builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), value.clone()));
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, &self.text, readable))
                    .singlepart(part(ContentType::TEXT_HTML, &self.html, readable)),
            )
            .map_err(|e| MailError::Rejected(format!("building the message: {e}")))
    }
}

/// A body part: as written (`binary`) for files, or in the encoding lettre picks for the wire.
fn part(kind: lettre::message::header::ContentType, body: &str, readable: bool) -> lettre::message::SinglePart {
    use lettre::message::{Body, SinglePart, header::ContentTransferEncoding};
    let body = if readable {
        Body::new_with_encoding(body.to_owned(), ContentTransferEncoding::Binary).unwrap_or_else(Body::new)
    } else {
        Body::new(body.to_owned())
    };
    SinglePart::builder().header(kind).body(body)
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The provider refused this message for good (bad address, unverified sender...):
    /// retrying cannot help.
    #[error("the message was rejected: {0}")]
    Rejected(String),
    /// The provider could not be reached or throttled us: retry later.
    #[error("the mail provider is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Sends one email.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// The adapter's name, for logs (`ses`, `smtp`, `outbox`).
    fn name(&self) -> &'static str;

    /// Sends `email`; returns the provider's id for it.
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError>;
}

/// The mailer `config` asks for: the outbox under `data_dir`, SES (with the process's AWS
/// configuration `sdk`), or SMTP.
///
/// # Errors
/// SES without an AWS configuration; an SMTP URL the transport refuses.
#[cfg(feature = "mail")]
pub fn mailer(
    config: &config::MailConfig,
    data_dir: &std::path::Path,
    sdk: Option<&aws_config::SdkConfig>,
) -> anyhow::Result<std::sync::Arc<dyn Mailer>> {
    use std::sync::Arc;
    Ok(match &config.backend {
        config::MailBackend::Outbox => Arc::new(outbox::OutboxMailer::new(data_dir.join("outbox"))),
        config::MailBackend::Ses { configuration_set } => {
            let sdk = sdk.ok_or_else(|| anyhow::anyhow!("GROUNDWORK_MAIL=ses needs AWS configuration"))?;
            Arc::new(ses::SesMailer::new(aws_sdk_sesv2::Client::new(sdk), configuration_set.clone()))
        }
        config::MailBackend::Smtp { url } => Arc::new(smtp::SmtpMailer::from_url(url)?),
    })
}

/// [`mailer`], keeping the mail to the smoke domain in `store` when one is configured (see
/// [`smoke_mailbox`]).
///
/// # Errors
/// As [`mailer`].
#[cfg(feature = "mail")]
pub fn mailer_with_smoke_mailbox(
    config: &config::MailConfig,
    data_dir: &std::path::Path,
    sdk: Option<&aws_config::SdkConfig>,
    store: std::sync::Arc<dyn crate::store::Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<std::sync::Arc<dyn Mailer>> {
    let inner = mailer(config, data_dir, sdk)?;
    Ok(match &config.smoke_domain {
        Some(domain) => {
            std::sync::Arc::new(smoke_mailbox::SmokeMailbox { inner, domain: domain.clone(), store, clock })
        }
        None => inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_validated_and_normalised() {
        assert_eq!(EmailAddress::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        assert_eq!(EmailAddress::parse("a.b+tag@sub.example.org").unwrap().domain(), "sub.example.org");
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "Ada <ada@example.com>",
            "a@b.c, d@e.f",
            "a b@c.d",
            "a@[127.0.0.1]",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(EmailAddress::parse(&long).is_err());
    }

    #[test]
    fn one_mailbox_is_one_address_however_its_domain_and_local_part_are_written() {
        let ascii = EmailAddress::parse("zoe@xn--bcher-kva.example").unwrap();
        for form in
            ["zoe@bücher.example", "Zoe@BÜCHER.example", "zoe@xn--bcher-kva.EXAMPLE", "zoe@bu\u{308}cher.example"]
        {
            assert_eq!(EmailAddress::parse(form).unwrap(), ascii, "{form}");
        }
        assert_eq!(ascii.domain(), "xn--bcher-kva.example", "the form SES accepts");
        // A decomposed local part is composed (NFC): é written as e + combining acute.
        let composed = EmailAddress::parse("r\u{e9}my@example.com").unwrap();
        assert_eq!(EmailAddress::parse("re\u{301}my@example.com").unwrap(), composed);
        assert_eq!(EmailAddress::parse("R\u{c9}MY@example.com").unwrap(), composed);
        // A domain that UTS #46 refuses is no address.
        assert!(EmailAddress::parse("a@exa_mple..com").is_err());
    }

    #[test]
    fn mime_has_both_parts_and_tracing_headers() {
        let email = OutgoingEmail {
            from: "Acme <no-reply@acme.test>".into(),
            to: EmailAddress::parse("ada@example.com").unwrap(),
            subject: "Hello".into(),
            text: "plain body".into(),
            html: "<p>html body</p>".into(),
            template: "welcome".into(),
            job_id: "01J".into(),
        };
        let raw = String::from_utf8(email.to_mime().unwrap().formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("plain body"));
        assert!(raw.contains("<p>html body</p>"));
        assert!(raw.contains("X-Groundwork-Template: welcome"));
    }
}
