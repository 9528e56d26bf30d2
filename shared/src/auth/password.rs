//! Passwords: argon2id with OWASP's recommended parameters (19 MiB, 2 iterations, 1 lane),
//! hashed off the async threads; a strength check (length, and zxcvbn's estimate against its
//! shipped lists of common passwords, names and words); and a dummy verification so that a
//! login for an unknown email costs the same time as one for a known email.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::secret::Secret;

/// The shortest password accepted.
pub const MIN_LEN: usize = 10;
/// The longest password accepted (argon2 hashes any length; this bounds the work).
pub const MAX_LEN: usize = 128;

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB, t=2, p=1.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// 16 random bytes from the system's source, as a PHC salt.
fn fresh_salt() -> anyhow::Result<SaltString> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))
}

/// Hashes `password` into a PHC string (algorithm, parameters, salt and hash).
///
/// # Errors
/// If hashing fails (it does not, for passwords within [`MAX_LEN`]).
pub async fn hash(password: &Secret<String>) -> anyhow::Result<String> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let salt = fresh_salt()?;
        argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await?
}

/// Whether `password` matches the PHC string `phc`.
pub async fn verify(password: &Secret<String>, phc: &str) -> bool {
    if phc.is_empty() {
        // An account without a password (it signs in through a provider): same time, no match.
        let _ = verify_phc(password, dummy_phc()).await;
        return false;
    }
    verify_phc(password, phc).await
}

async fn verify_phc(password: &Secret<String>, phc: &str) -> bool {
    let (password, phc) = (password.clone(), phc.to_owned());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|h| argon2().verify_password(password.expose().as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Spends the time of one verification, for an account that does not exist.
pub async fn verify_dummy(password: &Secret<String>) {
    let _ = verify_phc(password, dummy_phc()).await;
}

fn dummy_phc() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let Ok(salt) = fresh_salt() else { return String::new() };
        argon2().hash_password(b"not a real password", &salt).map(|h| h.to_string()).unwrap_or_default()
    })
}

/// Why a password is refused (safe to show: it never repeats the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WeakPassword(pub String);

/// Refuses short, long and guessable passwords; `context` holds words the password must not
/// lean on (the email address, the product name).
///
/// # Errors
/// [`WeakPassword`] saying why.
pub fn check_strength(password: &Secret<String>, context: &[&str]) -> Result<(), WeakPassword> {
    let p = password.expose();
    let chars = p.chars().count();
    if chars < MIN_LEN {
        return Err(WeakPassword(format!("use at least {MIN_LEN} characters")));
    }
    if chars > MAX_LEN {
        return Err(WeakPassword(format!("use at most {MAX_LEN} characters")));
    }
    let estimate = zxcvbn::zxcvbn(p, context);
    if u8::from(estimate.score()) < 3 {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map_or_else(|| "this password is too easy to guess".to_owned(), |w| w.to_string());
        return Err(WeakPassword(format!("{why}; try a longer phrase of unrelated words")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &str) -> Secret<String> {
        Secret::new(p.to_owned())
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash(&s("correct horse battery staple")).await.unwrap();
        let b = hash(&s("correct horse battery staple")).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(verify(&s("correct horse battery staple"), &a).await);
        assert!(!verify(&s("correct horse battery stapler"), &a).await);
        assert!(!verify(&s("x"), "not a phc string").await);
    }

    #[test]
    fn weak_passwords_are_refused() {
        for weak in ["short", "password123", "qwertyuiop", "1234567890", "ada@example.com1"] {
            assert!(check_strength(&s(weak), &["ada@example.com", "ada"]).is_err(), "{weak}");
        }
        let long = "a".repeat(200);
        assert!(check_strength(&s(&long), &[]).is_err());
        assert!(check_strength(&s("violet-anchor-trombone-47"), &["ada@example.com"]).is_ok());
        let e = check_strength(&s("password123"), &[]).unwrap_err();
        assert!(!e.to_string().contains("password123"));
    }
}
