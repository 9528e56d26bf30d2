//! Brute-force protection: fixed-window attempt counters kept in the table with an expiry
//! (`RATE#<limit>#<hash of the key>` / `<window start>`), so every function instance sees
//! the same counts. A limited caller gets 429 with `Retry-After`.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::{Item, Key, Put, Store, StoreError, Update};

/// A limit: at most `max` attempts per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The limit's name (part of the key).
    pub name: &'static str,
    /// Attempts allowed per window.
    pub max: u32,
    /// The window.
    pub window: Duration,
}

const MINUTES_15: Duration = Duration::from_secs(15 * 60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Failed logins per email address.
pub const LOGIN_PER_EMAIL: Limit = Limit { name: "login-email", max: 5, window: MINUTES_15 };
/// Failed logins per client IP.
pub const LOGIN_PER_IP: Limit = Limit { name: "login-ip", max: 50, window: MINUTES_15 };
/// Password reset requests per email address.
pub const RESET_PER_EMAIL: Limit = Limit { name: "reset-email", max: 3, window: HOUR };
/// Password reset and verification requests per client IP.
pub const RESET_PER_IP: Limit = Limit { name: "reset-ip", max: 20, window: HOUR };
/// Verification emails per address (sign-ups for one address beyond it are answered as
/// usual, and mail nothing: an address cannot be mail-bombed through sign-up).
pub const VERIFY_PER_EMAIL: Limit = Limit { name: "verify-email", max: 3, window: HOUR };
/// Sign-ups per client IP.
pub const SIGNUP_PER_IP: Limit = Limit { name: "signup-ip", max: 20, window: HOUR };
/// "Your password appears in a breach" emails per user (one a day, however often they
/// sign in with it).
pub const BREACH_NOTICE_PER_USER: Limit = Limit { name: "breach-notice", max: 1, window: DAY };
/// Failed second-factor attempts per user.
pub const MFA_PER_USER: Limit = Limit { name: "mfa-user", max: 5, window: MINUTES_15 };

fn window(limit: Limit, now_ms: i64) -> (i64, i64) {
    let len = i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX);
    let start = now_ms - now_ms.rem_euclid(len);
    (start, start + len)
}

fn key(limit: Limit, subject: &str, start: i64) -> Key {
    let digest: String = Sha256::digest(subject.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
    crate::keys::rate_window(limit.name, &digest, start)
}

/// Refuses with 429 if `subject` has used up `limit` in the current window.
///
/// # Errors
/// [`ApiError::TooManyRequests`] with the seconds until the window ends, or a store error.
pub async fn check(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<(), ApiError> {
    let (start, end) = window(limit, now_ms);
    let count = store
        .get(&key(limit, subject, start))
        .await?
        .and_then(|i| i.data.get("n").and_then(Value::as_u64))
        .unwrap_or(0);
    if count >= u64::from(limit.max) {
        let retry_after_secs = u64::try_from((end - now_ms + 999) / 1000).unwrap_or(1).max(1);
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    Ok(())
}

/// Counts one attempt of `subject` against `limit`; returns the count in this window.
///
/// # Errors
/// When the store fails.
pub async fn hit(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<u64, StoreError> {
    let (start, end) = window(limit, now_ms);
    let k = key(limit, subject, start);
    for _ in 0..3 {
        match store.update(Update::new(k.clone()).add("n", 1)).await {
            Ok(i) => return Ok(i.data.get("n").and_then(Value::as_u64).unwrap_or(1)),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        let first = Item::new(k.clone()).with("n", 1).expiring_at(end / 1000 + 1);
        match store.put(Put::new(first).if_not_exists()).await {
            Ok(_) => return Ok(1),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("rate counter contended")))
}

/// Checks, then counts (for attempts that count whatever their outcome).
///
/// # Errors
/// As [`check`] and [`hit`].
pub async fn take(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<(), ApiError> {
    check(store, limit, subject, now_ms).await?;
    hit(store, limit, subject, now_ms).await?;
    Ok(())
}

/// Forgets `subject`'s attempts in the current window (after a successful login).
///
/// # Errors
/// When the store fails.
pub async fn clear(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<(), StoreError> {
    let (start, _) = window(limit, now_ms);
    store.delete(crate::store::Delete::new(key(limit, subject, start))).await.map(|_| ())
}
