//! The local outbox: each email is written as a readable `.eml` file (open it with any mail
//! client, or read it as text) under `<data dir>/outbox/`, and logged with its path.

use std::path::PathBuf;

use async_trait::async_trait;

use super::{MailError, Mailer, OutgoingEmail};
use crate::id::MessageId;

/// The outbox adapter of [`Mailer`].
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    /// An outbox in `dir` (created on first send).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory emails are written to.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    fn name(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let mime = email.to_readable_mime()?.formatted();
        let id = MessageId::new().to_string();
        // Sortable by time (the ULID), then readable: template and recipient.
        // Cut short: an address may be 254 characters and a file name at most 255 bytes.
        let recipient: String = email
            .to
            .as_str()
            .chars()
            .take(80)
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
            .collect();
        let path = self.dir.join(format!("{id}-{}-{recipient}.eml", email.template));
        let unavailable =
            |e: std::io::Error| MailError::Unavailable(anyhow::Error::new(e).context("writing the outbox"));
        tokio::fs::create_dir_all(&self.dir).await.map_err(unavailable)?;
        // Write then rename, so a reader never sees half a message.
        let partial = path.with_extension("eml.partial");
        tokio::fs::write(&partial, &mime).await.map_err(unavailable)?;
        tokio::fs::rename(&partial, &path).await.map_err(unavailable)?;
        tracing::info!(path = %path.display(), template = %email.template, "email written to the outbox");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_address_still_makes_a_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let local = "a".repeat(64);
        let domain = format!("{}.{}.{}.example", "b".repeat(50), "c".repeat(50), "d".repeat(50));
        let to = crate::mail::EmailAddress::parse(&format!("{local}@{domain}")).unwrap();
        let email = OutgoingEmail {
            from: "Groundwork <hello@example.com>".into(),
            to,
            subject: "Hi".into(),
            text: "Hi".into(),
            html: "<p>Hi</p>".into(),
            template: "verify_email".into(),
            job_id: "j".into(),
        };
        OutboxMailer::new(dir.path().to_owned()).send(&email).await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
