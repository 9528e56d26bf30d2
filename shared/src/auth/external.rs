//! Rent-auth mode: with `GROUNDWORK_EXTERNAL_ISSUER` set (Clerk, WorkOS, Cognito, Auth0...),
//! the request extractor accepts that issuer's JWTs instead of ours. Keys come from its JWKS
//! (fetched on first use, cached, fetched again when a token names an unknown key, at most
//! once a minute). Only asymmetric algorithms are accepted, pinned by the key's type; issuer,
//! expiry, not-before and (when configured) audience are checked against our clock.
//!
//! Each external subject maps to a Groundwork user on first sight
//! (`EXTERNAL#<sha256 of issuer>#<subject>` / `USER`), created with the token's email when it
//! carries a free one, so the rest of the system sees an ordinary user.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::tokens::{LEEWAY_SECS, TokenError};
use super::users::{self, User};
use crate::id::UserId;
use crate::mail::EmailAddress;
use crate::store::{Item, Key, Put, Store, StoreError, TxOp};

/// How long fetched keys are trusted before a refresh.
const KEYS_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches prompted by unknown key ids.
const REFETCH_MIN: Duration = Duration::from_secs(60);

pub use super::config::ExternalIssuer;

/// The claims Groundwork reads from an external token.
#[derive(Debug, Clone, Deserialize)]
pub struct ExternalClaims {
    /// The issuer.
    pub iss: String,
    /// The subject.
    pub sub: String,
    /// Expiry.
    pub exp: i64,
    /// Not before.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Issued at.
    #[serde(default)]
    pub iat: Option<i64>,
    /// An email address, if the issuer puts one in.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether it is verified (absent: trusted as the issuer's own address).
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// A name.
    #[serde(default)]
    pub name: Option<String>,
    /// Authentication methods (`mfa`, `otp`...).
    #[serde(default)]
    pub amr: Vec<String>,
    /// The issuer's session id, if any.
    #[serde(default)]
    pub sid: Option<String>,
}

impl ExternalClaims {
    /// Whether the issuer says a second factor was used.
    pub fn mfa(&self) -> bool {
        self.amr.iter().any(|m| matches!(m.as_str(), "mfa" | "otp" | "hwk" | "swk" | "sms" | "totp"))
    }
}

/// Public keys fetched from a JWKS URL: on first use, again after an hour, and again when a
/// token names an unknown key (at most once a minute).
#[derive(Debug)]
pub struct JwksCache {
    url: String,
    keys: RwLock<Option<(Instant, JwkSet)>>,
    http: reqwest::Client,
}

/// The asymmetric algorithms accepted from a JWKS.
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl JwksCache {
    /// A cache of the keys at `url` (no network until the first token).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(url: String) -> anyhow::Result<Self> {
        let http = crate::outbound::client(Duration::from_secs(5))?;
        Ok(Self { url, keys: RwLock::new(None), http })
    }

    /// The key that verifies `token`, with the token's algorithm: asymmetric only, and the
    /// key's own algorithm (when it names one) must be the token's.
    ///
    /// # Errors
    /// [`TokenError::Invalid`].
    pub async fn key_for(&self, token: &str) -> Result<(DecodingKey, Algorithm), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let jwk = self.key(&kid).await?;
        if jwk.common.key_algorithm.is_some_and(|a| a.to_string() != format!("{:?}", header.alg)) {
            return Err(TokenError::Invalid);
        }
        Ok((DecodingKey::from_jwk(&jwk).map_err(|_| TokenError::Invalid)?, header.alg))
    }

    fn cached(&self, kid: &str) -> (Option<jsonwebtoken::jwk::Jwk>, bool) {
        let guard = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref() {
            None => (None, true),
            Some((at, set)) => {
                let key = set.find(kid).cloned();
                let stale = at.elapsed() > KEYS_TTL || (key.is_none() && at.elapsed() > REFETCH_MIN);
                (key, stale)
            }
        }
    }

    async fn key(&self, kid: &str) -> Result<jsonwebtoken::jwk::Jwk, TokenError> {
        let (key, stale) = self.cached(kid);
        if !stale {
            return key.ok_or(TokenError::Invalid);
        }
        match self.fetch().await {
            Ok(set) => {
                let found = set.find(kid).cloned();
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), set));
                found.ok_or(TokenError::Invalid)
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %self.url, "fetching the JWKS failed");
                key.ok_or(TokenError::Invalid)
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        let res = self.http.get(&self.url).send().await?.error_for_status()?;
        Ok(res.json().await?)
    }
}

/// Verifies an external issuer's tokens.
#[derive(Debug)]
pub struct ExternalVerifier {
    /// The settings.
    pub issuer: ExternalIssuer,
    jwks: JwksCache,
}

impl ExternalVerifier {
    /// A verifier for `issuer` (no network until the first token).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(issuer: ExternalIssuer) -> anyhow::Result<Self> {
        Ok(Self { jwks: JwksCache::new(issuer.jwks_url.clone())?, issuer })
    }

    /// Verifies `token` at `now_secs`.
    ///
    /// # Errors
    /// [`TokenError`].
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<ExternalClaims, TokenError> {
        let (key, alg) = self.jwks.key_for(token).await?;
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer.issuer]);
        match &self.issuer.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        let claims = jsonwebtoken::decode::<ExternalClaims>(token, &key, &v).map_err(|_| TokenError::Invalid)?.claims;
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(30);
        if claims.nbf.is_some_and(|t| t > now_secs + leeway) || claims.iat.is_some_and(|t| t > now_secs + leeway) {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now_secs - leeway {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn subject_key(issuer: &str, subject: &str) -> Key {
    crate::keys::external_subject(&super::hash_secret(issuer), subject)
}

/// The Groundwork user of an external subject, created on first sight.
///
/// # Errors
/// When the store fails.
pub async fn user_for(store: &dyn Store, claims: &ExternalClaims, now_ms: i64) -> Result<UserId, StoreError> {
    let key = subject_key(&claims.iss, &claims.sub);
    let id_of = |item: &Item| item.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok());
    if let Some(item) = store.get(&key).await? {
        return id_of(&item).ok_or_else(|| StoreError::Corrupt("external subject without a user".into()));
    }
    let email = claims
        .email
        .as_deref()
        .and_then(|e| crate::mail::EmailAddress::parse(e).ok())
        .filter(|_| claims.email_verified != Some(false));
    // Without a (free) address: a placeholder no mail is ever sent to (RFC 2606).
    let placeholder = crate::mail::EmailAddress::parse(&format!(
        "{}@external.invalid",
        &super::hash_secret(&format!("{}#{}", claims.iss, claims.sub))[..24]
    ))
    .map_err(|_| StoreError::Corrupt("the placeholder address does not parse".into()))?;
    let user_id = UserId::new();
    let record = |email: EmailAddress, verified: bool| {
        let mut user = User::new(email, verified, claims.name.clone(), String::new(), now_ms);
        user.id = user_id;
        user.external_issuer = Some(claims.iss.clone());
        user
    };
    let link = Item::new(key.clone()).with("user_id", user_id.to_string()).with("created_at_ms", now_ms);
    let mut attempts: Vec<Vec<TxOp>> = Vec::new();
    if let Some(email) = email {
        let mut ops = vec![TxOp::Put(Put::new(link.clone()).if_not_exists())];
        ops.extend(users::create_ops(&record(email, true))?);
        attempts.push(ops);
    }
    // The placeholder claims no address: only the record is written.
    let mut ops = vec![TxOp::Put(Put::new(link).if_not_exists())];
    ops.push(users::create_ops(&record(placeholder, false))?.swap_remove(0));
    attempts.push(ops);
    for ops in attempts {
        match store.transact(ops).await {
            Ok(()) => {
                tracing::info!(user_id = %user_id, "first sight of an external subject: user created");
                return Ok(user_id);
            }
            Err(StoreError::TransactionCanceled { .. }) => {
                // Another request created the link first, or the address is taken.
                if let Some(item) = store.get(&key).await? {
                    return id_of(&item).ok_or_else(|| StoreError::Corrupt("external subject without a user".into()));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("could not map the external subject")))
}
