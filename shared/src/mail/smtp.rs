//! SMTP, the portable option (any relay: Postmark, Mailgun, SendGrid, your own). TLS is
//! required unless the URL says `?tls=none`, which is meant for loopback relays only.

use async_trait::async_trait;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{MailError, Mailer, OutgoingEmail};
use crate::secret::Secret;

/// The SMTP adapter of [`Mailer`].
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpMailer")
    }
}

impl SmtpMailer {
    /// A mailer for the relay at `url`: `smtps://user:pass@host:465` (implicit TLS),
    /// `smtp://user:pass@host:587` (STARTTLS, required) or `smtp://host:port?tls=none`.
    ///
    /// # Errors
    /// If the URL does not parse (the message never repeats the URL: it holds a password).
    pub fn from_url(url: &Secret<String>) -> anyhow::Result<Self> {
        let url = effective_url(url.expose())?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|_| anyhow::anyhow!("GROUNDWORK_SMTP_URL is not a valid smtp:// or smtps:// URL"))?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        Ok(Self { transport })
    }
}

/// Makes TLS the default: `smtp://` without a `tls` parameter requires STARTTLS, and
/// `tls=none` (plain text) is accepted only for a loopback relay.
fn effective_url(url: &str) -> anyhow::Result<String> {
    let bad = || anyhow::anyhow!("GROUNDWORK_SMTP_URL is not a valid smtp:// or smtps:// URL");
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (scheme, rest) = base.split_once("://").ok_or_else(bad)?;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h).split('/').next().unwrap_or("");
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h).trim_matches(['[', ']']);
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let tls = params.iter().find_map(|p| p.strip_prefix("tls=")).map(str::to_owned);
    match (scheme, tls.as_deref()) {
        ("smtps", _) | ("smtp", Some("required" | "opportunistic")) => Ok(url.to_owned()),
        ("smtp", None) => {
            params.push("tls=required");
            Ok(format!("{base}?{}", params.join("&")))
        }
        ("smtp", Some("none")) if ["127.0.0.1", "localhost", "::1"].contains(&host) => {
            params.retain(|p| !p.starts_with("tls="));
            Ok(if params.is_empty() { base.to_owned() } else { format!("{base}?{}", params.join("&")) })
        }
        ("smtp", Some("none")) => anyhow::bail!("GROUNDWORK_SMTP_URL: tls=none is allowed for a loopback relay only"),
        _ => Err(bad()),
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let message = email.to_mime()?;
        match self.transport.send(message).await {
            Ok(response) => Ok(response.message().collect::<Vec<_>>().join(" ")),
            Err(e) if e.is_permanent() => Err(MailError::Rejected(e.to_string())),
            Err(e) => Err(MailError::Unavailable(anyhow::Error::new(e).context("SMTP send failed"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::effective_url;

    #[test]
    fn tls_is_the_default_and_plain_text_stays_on_loopback() {
        assert_eq!(
            effective_url("smtp://u:p@mail.acme.test:587").unwrap(),
            "smtp://u:p@mail.acme.test:587?tls=required"
        );
        assert_eq!(effective_url("smtps://u:p@mail.acme.test").unwrap(), "smtps://u:p@mail.acme.test");
        assert_eq!(effective_url("smtp://127.0.0.1:2525?tls=none").unwrap(), "smtp://127.0.0.1:2525");
        assert!(effective_url("smtp://mail.acme.test:25?tls=none").is_err());
        assert!(effective_url("http://mail.acme.test").is_err());
        let err = effective_url("nonsense").unwrap_err().to_string();
        assert!(!err.contains("nonsense"));
    }
}
