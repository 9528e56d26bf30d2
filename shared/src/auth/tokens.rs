//! Access tokens: short-lived RS256 JWTs with the key id in the header, the session id in
//! `sid`, and the standard `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `jti`. Verification pins
//! the algorithm (so `alg: none` and HMAC confusion are refused), requires every claim, and
//! checks issuer, audience, expiry and not-before with no leeway beyond 30 seconds.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::SigningKeys;

/// Clock skew tolerated between issuer and verifier.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the API's base URL.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expires (Unix seconds).
    pub exp: i64,
    /// The token's own id.
    pub jti: String,
}

/// Why a token was refused. Deliberately coarse: clients learn only that it is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWT, a wrong algorithm, an unknown key, a bad signature.
    #[error("the token is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
}

/// Signs `claims` (ours: [`AccessClaims`]) with the active key, RS256, its `kid` in the
/// header.
///
/// # Errors
/// If signing fails (a broken key).
pub fn sign<C: serde::Serialize>(keys: &SigningKeys, claims: &C) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(keys.active_kid().to_owned());
    Ok(jsonwebtoken::encode(&header, claims, keys.encoding())?)
}

/// Verifies `token` against `keys` for `issuer` and `audience` at `now_secs`.
///
/// # Errors
/// [`TokenError`].
pub fn verify(
    keys: &SigningKeys,
    token: &str,
    issuer: &str,
    audience: &str,
    now_secs: i64,
) -> Result<AccessClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    let key = header.kid.as_deref().and_then(|k| keys.decoding(k)).ok_or(TokenError::Invalid)?;
    // The algorithm is pinned there.
    verify_with(key, token, issuer, audience, now_secs)
}

/// As [`verify`], with the key already chosen (from a JWKS): RS256 only.
///
/// # Errors
/// [`TokenError`].
pub fn verify_with(
    key: &jsonwebtoken::DecodingKey,
    token: &str,
    issuer: &str,
    audience: &str,
    now_secs: i64,
) -> Result<AccessClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenError::Invalid);
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    // Time is checked below against our clock (tests move it), not the library's.
    v.validate_nbf = false;
    v.validate_exp = false;
    v.leeway = 0;
    let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &v).map_err(|_| TokenError::Invalid)?.claims;
    check_times(&claims, now_secs)?;
    Ok(claims)
}

/// Checks the times of verified `claims` at `now_secs`, with [`LEEWAY_SECS`] of skew: issued
/// and valid from no later than now (RFC 7519 §4.1.5-6), not yet expired (§4.1.4).
///
/// # Errors
/// [`TokenError::Invalid`] before `nbf` or `iat`; [`TokenError::Expired`] from `exp` on.
pub fn check_times(claims: &AccessClaims, now_secs: i64) -> Result<(), TokenError> {
    let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(30);
    if claims.nbf > now_secs + leeway || claims.iat > now_secs + leeway {
        return Err(TokenError::Invalid);
    }
    if claims.exp <= now_secs - leeway {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn keys() -> SigningKeys {
        SigningKeys::from_pkcs8(&[crate::auth::keys::generate_pkcs8().unwrap()]).unwrap()
    }

    /// Claims issued at `now` for 15 minutes (the cache's tests use them too).
    pub(crate) fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://api.acme.test".into(),
            aud: "groundwork".into(),
            sub: "01J00000000000000000000000".into(),
            sid: "01J00000000000000000000001".into(),
            iat: now,
            nbf: now,
            exp: now + 900,
            jti: "j".into(),
        }
    }

    pub(crate) const NOW: i64 = 1_800_000_000;

    fn check(keys: &SigningKeys, token: &str) -> Result<AccessClaims, TokenError> {
        verify(keys, token, "https://api.acme.test", "groundwork", NOW)
    }

    #[test]
    fn attacks_on_access_tokens_are_refused() {
        let k = keys();
        let good = sign(&k, &claims(NOW)).unwrap();
        assert_eq!(check(&k, &good).unwrap(), claims(NOW));

        // alg none: a header without a signature.
        let (_, rest) = good.split_once('.').unwrap();
        let payload = rest.split('.').next().unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(check(&k, &format!("{none_header}.{payload}.")), Err(TokenError::Invalid));
        // HS256 with the public key as the secret (algorithm confusion).
        let hs = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, k.active_kid()));
        assert_eq!(check(&k, &format!("{hs}.{payload}.c2ln")), Err(TokenError::Invalid));
        // A changed payload under the original signature.
        let mut forged = claims(NOW);
        forged.sub = "01J99999999999999999999999".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = good.split('.').collect();
        assert_eq!(check(&k, &format!("{}.{forged_payload}.{}", parts[0], parts[2])), Err(TokenError::Invalid));
        // Another key (same kid is impossible: the kid is the key's thumbprint).
        let other = keys();
        assert_eq!(check(&k, &sign(&other, &claims(NOW)).unwrap()), Err(TokenError::Invalid));
        // Wrong issuer, wrong audience.
        let mut c = claims(NOW);
        c.iss = "https://evil.test".into();
        assert_eq!(check(&k, &sign(&k, &c).unwrap()), Err(TokenError::Invalid));
        let mut c = claims(NOW);
        c.aud = "someone-else".into();
        assert_eq!(check(&k, &sign(&k, &c).unwrap()), Err(TokenError::Invalid));
        // Expired, and not yet valid.
        assert_eq!(check(&k, &sign(&k, &claims(NOW - 2000)).unwrap()), Err(TokenError::Expired));
        let mut c = claims(NOW + 600);
        c.exp = NOW + 2000;
        assert_eq!(check(&k, &sign(&k, &c).unwrap()), Err(TokenError::Invalid));
        // Garbage.
        for junk in ["", "a.b.c", "not a token", &"x".repeat(5000)] {
            assert_eq!(check(&k, junk), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let old = crate::auth::keys::generate_pkcs8().unwrap();
        let new = crate::auth::keys::generate_pkcs8().unwrap();
        let before = SigningKeys::from_pkcs8(std::slice::from_ref(&old)).unwrap();
        let token = sign(&before, &claims(NOW)).unwrap();
        let after = SigningKeys::from_pkcs8(&[new, old]).unwrap();
        assert!(check(&after, &token).is_ok(), "tokens of the previous key still verify");
        assert_ne!(after.active_kid(), before.active_kid());
        assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2);
        let fresh = jsonwebtoken::decode_header(sign(&after, &claims(NOW)).unwrap()).unwrap();
        assert_eq!(fresh.kid.as_deref(), Some(after.active_kid()));
    }
}
