//! Rent-auth mode: with `GROUNDWORK_EXTERNAL_ISSUER` set (Clerk, WorkOS, Cognito, Auth0...),
//! the request extractor accepts that issuer's JWTs instead of ours. Keys come from its JWKS
//! (fetched on first use, cached, fetched again when a token names an unknown key, at most
//! once a minute). Only asymmetric algorithms are accepted, pinned by the key's type; issuer,
//! expiry and not-before are checked against our clock, and that the token was issued for
//! this API by the rule of the provider it comes from ([`ExternalProvider`]: `aud`, `azp`,
//! Cognito's `client_id` and `token_use`, Entra's two issuer forms).
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

pub use super::config::{ExternalIssuer, ExternalProvider};

/// The claims Groundwork reads from an external token. Vendors disagree on shapes, so the
/// claims whose JSON type varies are read leniently: `aud` as a string or an array (RFC 7519
/// section 4.1.3), booleans also as the strings `"true"`/`"false"` (Cognito, and IdPs built
/// on it, send `email_verified` that way).
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
    /// The audiences (a single string becomes one).
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// The authorized party (OpenID Connect Core 1.0 section 2; Clerk: the frontend origin).
    #[serde(default)]
    pub azp: Option<String>,
    /// Cognito access tokens: the app client.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Cognito: `id` or `access`.
    #[serde(default)]
    pub token_use: Option<String>,
    /// Entra ID: the tenant.
    #[serde(default)]
    pub tid: Option<String>,
    /// Entra ID: whether the email's domain owner is verified (the only case in which its
    /// `email` claim proves anything).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub xms_edov: Option<bool>,
    /// An email address, if the issuer puts one in. After [`ExternalVerifier::verify`],
    /// present only when the issuer vouches for it.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether it is verified (absent: trusted as the issuer's own address).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub email_verified: Option<bool>,
    /// A name.
    #[serde(default)]
    pub name: Option<String>,
    /// Authentication methods (`mfa`, `otp`...).
    #[serde(default, deserialize_with = "one_or_many")]
    pub amr: Vec<String>,
    /// Clerk: minutes since the first and the second factor were verified (`-1`: never).
    #[serde(default)]
    pub fva: Option<Vec<i64>>,
    /// The issuer's session id, if any.
    #[serde(default)]
    pub sid: Option<String>,
}

impl ExternalClaims {
    /// Whether the issuer says a second factor was used.
    pub fn mfa(&self) -> bool {
        self.amr.iter().any(|m| matches!(m.as_str(), "mfa" | "otp" | "hwk" | "swk" | "sms" | "totp"))
            || self.fva.as_ref().is_some_and(|f| f.get(1).is_some_and(|m| *m >= 0))
    }
}

/// A string or an array of strings, as a list; anything else is refused.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(v)) => vec![v],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// A boolean, or a string spelling one; any other string counts as `false`, so a claim in
/// an unexpected form never vouches for anything.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Bool(bool),
        Text(String),
        Number(i64),
    }
    Ok(match Option::<Lenient>::deserialize(d)? {
        None => None,
        Some(Lenient::Bool(b)) => Some(b),
        Some(Lenient::Text(t)) => Some(t.eq_ignore_ascii_case("true") || t == "1"),
        Some(Lenient::Number(n)) => Some(n == 1),
    })
}

/// The tenant id of an Entra ID issuer in either form, v2.0
/// (`https://login.microsoftonline.com/{tenant}/v2.0`) or v1.0
/// (`https://sts.windows.net/{tenant}/`). The tenant is its GUID, the form tokens carry:
/// the multi-tenant aliases (`common`, `organizations`, `consumers`) and domain names
/// never appear in a token's `iss`, so an issuer built on them could accept nothing.
pub fn entra_tenant(issuer: &str) -> Option<&str> {
    let rest = issuer
        .strip_prefix("https://login.microsoftonline.com/")
        .and_then(|r| r.strip_suffix("/v2.0"))
        .or_else(|| issuer.strip_prefix("https://sts.windows.net/").map(|r| r.trim_end_matches('/')))?;
    let groups: Vec<&str> = rest.split('-').collect();
    let guid = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    guid.then_some(rest)
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

    /// Whether keys are at hand: fresh ones cached, or fetched now (the deep health check).
    ///
    /// # Errors
    /// When the key set is stale or absent and cannot be fetched.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let fresh = {
            let guard = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            guard.as_ref().is_some_and(|(at, _)| at.elapsed() <= KEYS_TTL)
        };
        if !fresh {
            let set = self.fetch().await?;
            *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), set));
        }
        Ok(())
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        let res = self.http.get(&self.url).send().await?.error_for_status()?;
        Ok(res.json().await?)
    }
}

/// The `iss` values accepted: the configured one with and without a trailing slash
/// (Auth0's and Entra v1's end in one, configuration often drops it) and, for Entra ID,
/// both token versions' issuers of the same tenant.
fn accepted_issuers(issuer: &ExternalIssuer) -> Vec<String> {
    let configured = issuer.issuer.trim_end_matches('/');
    let mut out = vec![configured.to_owned(), format!("{configured}/")];
    if issuer.provider == ExternalProvider::Entra
        && let Some(tenant) = entra_tenant(&issuer.issuer)
    {
        out.push(format!("https://login.microsoftonline.com/{tenant}/v2.0"));
        out.push(format!("https://sts.windows.net/{tenant}/"));
    }
    out
}

/// Verifies an external issuer's tokens.
#[derive(Debug)]
pub struct ExternalVerifier {
    /// The settings.
    pub issuer: ExternalIssuer,
    jwks: JwksCache,
    /// The `iss` values accepted ([`accepted_issuers`]), worked out once.
    issuers: Vec<String>,
}

impl ExternalVerifier {
    /// A verifier for `issuer` (no network until the first token).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(issuer: ExternalIssuer) -> anyhow::Result<Self> {
        Ok(Self { jwks: JwksCache::new(issuer.jwks_url.clone())?, issuers: accepted_issuers(&issuer), issuer })
    }

    /// Whether the token was issued for this API, by the provider's rule (see
    /// [`ExternalProvider`]).
    fn issued_for_us(&self, claims: &ExternalClaims) -> bool {
        let ours = |v: &str| self.issuer.audiences.iter().any(|a| a == v);
        let aud_ours = || claims.aud.iter().any(|a| ours(a));
        match self.issuer.provider {
            ExternalProvider::Generic | ExternalProvider::Auth0 => aud_ours(),
            ExternalProvider::Clerk => claims.azp.as_deref().is_some_and(ours),
            ExternalProvider::Cognito => match claims.token_use.as_deref() {
                Some("id") => aud_ours(),
                Some("access") => claims.client_id.as_deref().is_some_and(ours),
                _ => false,
            },
            ExternalProvider::Entra => {
                let tenant = entra_tenant(&self.issuer.issuer);
                let same_tenant = claims.tid.is_none() || claims.tid.as_deref() == tenant;
                let aud_ours = claims.aud.iter().any(|a| ours(a) || a.strip_prefix("api://").is_some_and(ours));
                same_tenant && aud_ours
            }
            ExternalProvider::WorkOs => self.issuer.audiences.is_empty() || aud_ours(),
        }
    }

    /// Whether the provider vouches for the token's `email`: it must not say unverified,
    /// and Entra ID's `email` is a free-form attribute (the "nOAuth" flaw) trusted only with
    /// `xms_edov`.
    fn vouches_for_email(&self, claims: &ExternalClaims) -> bool {
        match self.issuer.provider {
            ExternalProvider::Entra => claims.xms_edov == Some(true) && claims.email_verified != Some(false),
            _ => claims.email_verified != Some(false),
        }
    }

    /// Verifies `token` at `now_secs`: signature by a key of the issuer's JWKS, issuer,
    /// expiry and not-before (with the usual leeway), and the provider's rule for "issued
    /// for this API". The returned claims keep `email` only when the issuer vouches for it.
    ///
    /// # Errors
    /// [`TokenError`].
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<ExternalClaims, TokenError> {
        let (key, alg) = self.jwks.key_for(token).await?;
        let mut v = Validation::new(alg);
        v.set_issuer(&self.issuers);
        // `aud` takes many shapes across vendors: checked below, by the provider's rule.
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        let mut claims =
            jsonwebtoken::decode::<ExternalClaims>(token, &key, &v).map_err(|_| TokenError::Invalid)?.claims;
        if !self.issued_for_us(&claims) {
            return Err(TokenError::Invalid);
        }
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(30);
        if claims.nbf.is_some_and(|t| t > now_secs + leeway) || claims.iat.is_some_and(|t| t > now_secs + leeway) {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now_secs - leeway {
            return Err(TokenError::Expired);
        }
        if !self.vouches_for_email(&claims) {
            claims.email = None;
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
    let email = claims.email.as_deref().and_then(|e| crate::mail::EmailAddress::parse(e).ok());
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
