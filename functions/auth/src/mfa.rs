//! Two-factor authentication with TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, one
//! step of skew) and single-use recovery codes. A code is accepted once: the last accepted
//! step is stored and a code of that step or an earlier one is refused, so a code seen over a
//! shoulder cannot be replayed. Recovery codes are stored hashed and removed when used.

use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder, Totp};

use crate::users::{hash_secret, random_secret};

/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

/// A user's enabled second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mfa {
    /// The TOTP secret, base32.
    pub secret: String,
    /// When it was enabled (Unix ms).
    pub enabled_at_ms: i64,
    /// The last TOTP step accepted (codes of this step or earlier are refused).
    pub last_step: u64,
    /// SHA-256 hashes of the unused recovery codes.
    pub recovery_hashes: Vec<String>,
}

/// A TOTP for `secret` (base32), labelled with the product and the account.
///
/// # Errors
/// If the secret is not valid base32 of at least 128 bits.
pub fn totp(secret_base32: &str, issuer: &str, account: &str) -> anyhow::Result<Totp> {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).map_err(|e| anyhow::anyhow!("TOTP secret: {e:?}"))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP: {e:?}"))
}

/// A fresh 160-bit TOTP secret, base32.
///
/// # Errors
/// If the system's random source fails.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(totp_rs::Secret::from(bytes.to_vec()).to_base32())
}

/// The step a code belongs to, if it is valid now (within the skew) and newer than `after`.
pub fn accept(totp: &Totp, code: &str, now_secs: i64, after: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let step = totp.check(&code, u64::try_from(now_secs).ok()?)?;
    (step > after).then_some(step)
}

/// Fresh recovery codes (shown once) and their hashes (stored).
///
/// # Errors
/// If the system's random source fails.
pub fn recovery_codes() -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        // 12 characters of the URL-safe alphabet, grouped for reading: ~72 bits each.
        let raw: String = random_secret()?.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
        codes.push(format!("{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..12]).to_lowercase());
    }
    let hashes = codes.iter().map(|c| hash_secret(c)).collect();
    Ok((codes, hashes))
}

/// The hash a recovery code is stored under (case and dashes do not matter).
pub fn recovery_hash(code: &str) -> String {
    let clean: String = code.trim().to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
    if clean.len() != 12 {
        return String::new();
    }
    hash_secret(&format!("{}-{}-{}", &clean[..4], &clean[4..8], &clean[8..12]))
}

/// The otpauth URI as a QR code, in SVG.
///
/// # Errors
/// If the URI is too long for a QR code.
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_accepted_once_and_only_in_their_window() {
        let secret = new_secret().unwrap();
        let t = totp(&secret, "Acme", "ada@example.com").unwrap();
        let now = 1_800_000_000;
        let code = t.generate(u64::try_from(now).unwrap()).to_string();
        let step = accept(&t, &code, now, 0).expect("a fresh code");
        assert_eq!(accept(&t, &code, now, step), None, "replay refused");
        assert!(accept(&t, &code, now + 30, 0).is_some(), "one step of skew");
        assert_eq!(accept(&t, &code, now + 120, 0), None, "too late");
        assert_eq!(accept(&t, "12345", now, 0), None);
        assert_eq!(accept(&t, "abcdef", now, 0), None);
        assert!(t.to_url().unwrap().starts_with("otpauth://totp/Acme:ada%40example.com?secret="));
    }

    #[test]
    fn recovery_codes_hash_regardless_of_formatting() {
        let (codes, hashes) = recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(recovery_hash(&codes[0].to_uppercase().replace('-', " ")), hashes[0]);
        assert_eq!(recovery_hash("short"), "");
        assert!(qr_svg("otpauth://totp/x?secret=ABC").unwrap().starts_with("<?xml"));
    }
}
