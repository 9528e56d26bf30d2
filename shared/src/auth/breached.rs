//! Breached passwords: Have I Been Pwned's Pwned Passwords, through its k-anonymity range
//! API (<https://haveibeenpwned.com/API/v3#SearchingPwnedPasswordsByRange>). Only the first
//! five hex characters of the password's SHA-1 leave the process; the answer lists every
//! known hash suffix with that prefix and how often it was seen, padded (`Add-Padding:
//! true`) with entries seen zero times so that its size tells an observer nothing. NIST SP
//! 800-63B section 5.1.1.2 asks verifiers to refuse passwords found in breach corpuses.
//!
//! The check never blocks a sign-up: when the service does not answer in time, the password
//! is let through with a warning and the `BreachedPasswordCheckFailed` metric.

use std::time::Duration;

use anyhow::Context as _;
use sha1::{Digest as _, Sha1};

use crate::secret::Secret;
use crate::telemetry::metrics::{Metrics, Unit};

/// How long a range request may take before the check gives up (fails open).
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The service's public base URL (the default on Lambda).
pub const DEFAULT_URL: &str = "https://api.pwnedpasswords.com";

/// The range API client.
#[derive(Debug, Clone)]
pub struct PwnedPasswords {
    client: reqwest::Client,
    base: String,
}

/// The upper-case hex SHA-1 of `password`, split after the fifth character.
fn prefix_and_suffix(password: &str) -> (String, String) {
    let digest = Sha1::digest(password.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
    let (prefix, suffix) = hex.split_at(5);
    (prefix.to_owned(), suffix.to_owned())
}

/// How often `suffix` was seen according to a range answer (`SUFFIX:COUNT` lines); padding
/// entries count zero.
fn times_in(range: &str, suffix: &str) -> u64 {
    range
        .lines()
        .filter_map(|line| line.trim().split_once(':'))
        .find(|(s, _)| s.eq_ignore_ascii_case(suffix))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

impl PwnedPasswords {
    /// A client of the range API at `base` (`https://api.pwnedpasswords.com`).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self { client: crate::outbound::client(TIMEOUT)?, base: base.trim_end_matches('/').to_owned() })
    }

    /// How many times `password` appears in known breaches (0: never).
    ///
    /// # Errors
    /// When the service does not answer, or answers other than 200.
    pub async fn times_seen(&self, password: &Secret<String>) -> anyhow::Result<u64> {
        let (prefix, suffix) = prefix_and_suffix(password.expose());
        let res = self
            .client
            .get(format!("{}/range/{prefix}", self.base))
            .header("Add-Padding", "true")
            .send()
            .await
            .context("asking Pwned Passwords")?;
        let status = res.status();
        if !status.is_success() {
            anyhow::bail!("Pwned Passwords answered {status}");
        }
        Ok(times_in(&res.text().await.context("reading the range")?, &suffix))
    }

    /// Whether `password` is known to be breached; `false` when the service cannot say (the
    /// failure is logged and counted, never passed on: a sign-up is not blocked by it).
    pub async fn is_breached(&self, password: &Secret<String>) -> bool {
        match self.times_seen(password).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "the breached-password check failed: let through");
                Metrics::new().metric("BreachedPasswordCheckFailed", 1.0, Unit::Count).emit();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_five_characters_of_the_sha1_are_the_prefix() {
        // SHA-1("password") = 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8.
        let (prefix, suffix) = prefix_and_suffix("password");
        assert_eq!(prefix, "5BAA6");
        assert_eq!(suffix, "1E4C9B93F3F0682250B6CF8331B7EE68FD8");
    }

    #[test]
    fn a_range_answer_is_read_with_its_padding() {
        let range = "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n1E4C9B93F3F0682250B6CF8331B7EE68FD8:10434004\r\n\
                     00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0\r\n";
        assert_eq!(times_in(range, "1E4C9B93F3F0682250B6CF8331B7EE68FD8"), 10_434_004);
        assert_eq!(times_in(range, "00D4F6E8FA6EECAD2A3AA415EEC418D38EC"), 0, "padding counts zero");
        assert_eq!(times_in(range, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"), 0);
    }
}
