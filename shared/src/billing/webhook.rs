//! `Stripe-Signature` verification, as Stripe specifies it: the header carries a timestamp
//! `t` and one or more `v1` signatures, each the hex HMAC-SHA256 of `"<t>.<raw body>"` under
//! an endpoint secret. Any `v1` matching any configured secret (several during a rotation)
//! is accepted, within a tolerance of the timestamp.

use aws_lc_rs::hmac;

/// Seconds a signature stays acceptable (Stripe's default).
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header, or not of the `t=...,v1=...` form.
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    /// Older (or newer) than the tolerance.
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    /// No signature matches.
    #[error("no signature matches")]
    Mismatch,
}

/// The `v1` signature of `body` at `timestamp` under `secret`, hex.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The header Stripe would send for `body` at `timestamp` under `secret`.
pub fn header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Verifies `header` for `body` against `secrets` at `now_secs`.
///
/// # Errors
/// [`SignatureError`].
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[String], now_secs: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s.to_owned()),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - t).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut message = t.to_string().into_bytes();
        message.push(b'.');
        message.extend_from_slice(body);
        for sig in &signatures {
            let Some(bytes) = from_hex(sig) else { continue };
            if hmac::verify(&key, &message, &bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn a_signature_of_any_configured_secret_is_accepted_within_the_tolerance() {
        let h = header("whsec_new", NOW, BODY);
        assert_eq!(verify(Some(&h), BODY, &secrets(&["whsec_old", "whsec_new"]), NOW + 10), Ok(()));
        // Several v1 values (Stripe sends one per active secret during a roll).
        let two = format!("t={NOW},v1={},v1={}", sign("whsec_other", NOW, BODY), sign("whsec_new", NOW, BODY));
        assert_eq!(verify(Some(&two), BODY, &secrets(&["whsec_new"]), NOW), Ok(()));
    }

    #[test]
    fn forged_stale_and_malformed_signatures_are_refused() {
        let h = header("whsec_attacker", NOW, BODY);
        assert_eq!(verify(Some(&h), BODY, &secrets(&["whsec_real"]), NOW), Err(SignatureError::Mismatch));
        let h = header("whsec_real", NOW, BODY);
        assert_eq!(
            verify(Some(&h), b"{\"id\":\"evt_2\"}", &secrets(&["whsec_real"]), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(Some(&h), BODY, &secrets(&["whsec_real"]), NOW + 301), Err(SignatureError::Stale));
        assert_eq!(verify(None, BODY, &secrets(&["whsec_real"]), NOW), Err(SignatureError::Malformed));
        assert_eq!(verify(Some("v1=abc"), BODY, &secrets(&["whsec_real"]), NOW), Err(SignatureError::Malformed));
        assert_eq!(
            verify(Some(&format!("t={NOW}")), BODY, &secrets(&["whsec_real"]), NOW),
            Err(SignatureError::Malformed)
        );
        // A v0 (test-mode scheme) signature alone does not count.
        let v0 = format!("t={NOW},v0={}", sign("whsec_real", NOW, BODY));
        assert_eq!(verify(Some(&v0), BODY, &secrets(&["whsec_real"]), NOW), Err(SignatureError::Malformed));
    }
}
