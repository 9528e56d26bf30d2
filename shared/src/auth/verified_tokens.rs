//! A bounded cache of access tokens whose signature, issuer and audience were verified, so a
//! client that sends the same token on every request pays for the RSA verification once.
//!
//! What it keeps is only what cannot change for a given token: the token's bytes were signed
//! by one of our keys for our issuer and audience, and carry these claims. Everything that can
//! change is still checked on every request: the token's times (`nbf`, `iat`, `exp`) against
//! the clock of that request, and the session (by the extractor, in the store), so revoking a
//! session stops its access tokens at once, in this process and in every other that reads the
//! same store. Refused tokens are never kept.
//!
//! Entries are keyed by the SHA-256 of the whole token (never by a part of it: a cached
//! signature must not vouch for another payload), hold the claims (about 300 bytes), and are
//! evicted least recently used past [`CAPACITY`], or when found expired.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use super::tokens::{AccessClaims, TokenError, check_times};

/// The most tokens remembered: about 1.3 MB of claims. A process serving more live tokens
/// than this verifies the least recently seen again, which is correct, only slower.
pub const CAPACITY: usize = 4096;

/// The cache; one per [`super::TokenSettings`] (one issuer, one audience).
#[derive(Debug)]
pub struct VerifiedTokens(Mutex<lru::LruCache<[u8; 32], AccessClaims>>);

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self(Mutex::new(lru::LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))))
    }
}

fn digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
    out
}

impl VerifiedTokens {
    /// The claims of `token` if it was verified before, with its times checked again at
    /// `now_secs`; `None` when it was not (verify it, then [`Self::keep`] it).
    ///
    /// # Errors
    /// `Some(Err(`[`TokenError`]`))` when the remembered token is not within its times at
    /// `now_secs` (it is then forgotten).
    pub fn get(&self, token: &str, now_secs: i64) -> Option<Result<AccessClaims, TokenError>> {
        let key = digest(token);
        let mut entries = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let claims = entries.get(&key)?;
        match check_times(claims, now_secs) {
            Ok(()) => Some(Ok(claims.clone())),
            Err(e) => {
                entries.pop(&key);
                Some(Err(e))
            }
        }
    }

    /// Remembers `token` as verified, with its `claims`. Call only after a full verification
    /// succeeded.
    pub fn keep(&self, token: &str, claims: &AccessClaims) {
        let key = digest(token);
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).put(key, claims.clone());
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::tests::{NOW, claims};

    #[test]
    fn a_kept_token_is_found_only_by_its_whole_bytes_and_only_within_its_times() {
        let cache = VerifiedTokens::default();
        assert!(cache.get("a.b.c", NOW).is_none());
        cache.keep("a.b.c", &claims(NOW));
        assert_eq!(cache.get("a.b.c", NOW + 60), Some(Ok(claims(NOW))));
        // Same signature, another payload: not vouched for.
        assert!(cache.get("a.x.c", NOW).is_none());
        assert!(cache.get("a.b.c ", NOW).is_none());
        // Outside its times (a clock set back before `nbf`, or past `exp`): refused and
        // forgotten.
        assert_eq!(cache.get("a.b.c", NOW - 120), Some(Err(TokenError::Invalid)));
        assert!(cache.get("a.b.c", NOW).is_none());
        cache.keep("a.b.c", &claims(NOW));
        assert_eq!(cache.get("a.b.c", NOW + 900 + 60), Some(Err(TokenError::Expired)));
        assert!(cache.get("a.b.c", NOW).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = VerifiedTokens::default();
        for i in 0..CAPACITY + 10 {
            cache.keep(&format!("token-{i}"), &claims(NOW));
        }
        assert_eq!(cache.len(), CAPACITY);
        // The least recently used went first.
        assert!(cache.get("token-0", NOW).is_none());
        assert!(cache.get(&format!("token-{}", CAPACITY + 9), NOW).is_some());
    }
}
