//! Signing per the Standard Webhooks specification (<https://www.standardwebhooks.com>,
//! "Signature scheme"): the secret is `whsec_` followed by the base64 of random bytes; a
//! signature is `v1,` followed by the base64 of HMAC-SHA256, keyed with the decoded secret,
//! over `<webhook-id>.<webhook-timestamp>.<body>`. The `webhook-signature` header lists one
//! signature per live secret, space-separated, so a receiver holding either secret of a
//! rotation verifies the message.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// What every signing secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// How many random bytes a secret holds (the specification asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// A fresh signing secret: `whsec_<base64 of 32 random bytes>`.
///
/// # Errors
/// When the system has no randomness.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// The signature `v1,<base64>` of one message under `secret`.
///
/// # Errors
/// When `secret` is not `whsec_` followed by base64.
pub fn sign(secret: &str, message_id: &str, timestamp_secs: i64, body: &[u8]) -> anyhow::Result<String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key_bytes = STANDARD.decode(encoded).map_err(|_| anyhow::anyhow!("a signing secret is whsec_<base64>"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(message_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp_secs.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    Ok(format!("v1,{}", STANDARD.encode(ctx.sign().as_ref())))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
///
/// # Errors
/// As [`sign`].
pub fn header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    message_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> anyhow::Result<String> {
    let signatures: anyhow::Result<Vec<String>> =
        secrets.into_iter().map(|s| sign(s, message_id, timestamp_secs, body)).collect();
    Ok(signatures?.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_fresh_and_prefixed_and_every_secret_signs() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(STANDARD.decode(&a[SECRET_PREFIX.len()..]).unwrap().len(), SECRET_BYTES);
        let h = header([a.as_str(), b.as_str()], "m", 1, b"{}").unwrap();
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts, vec![sign(&a, "m", 1, b"{}").unwrap(), sign(&b, "m", 1, b"{}").unwrap()]);
        assert!(sign("whsec_not base64!", "m", 1, b"{}").is_err());
    }
}
