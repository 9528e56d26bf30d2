//! Authentication shared by every function: signing keys ([`keys`]), access tokens
//! ([`tokens`], each verified once per process: [`verified_tokens`]), passwords
//! ([`password`], and [`breached`] for Pwned Passwords), attempt limits ([`rate_limit`]),
//! sessions ([`session`]) and the request extractor [`AuthUser`], which every authenticated
//! route takes.

#[cfg(feature = "passwords")]
pub mod breached;
#[cfg(feature = "passwords")]
pub mod challenge;
pub mod config;
#[cfg(feature = "email-domains")]
pub mod email_policy;
pub mod external;
pub mod keys;
#[cfg(feature = "passwords")]
pub mod password;
pub mod rate_limit;
#[cfg(feature = "saml")]
pub mod saml;
pub mod session;
pub mod tokens;
pub mod users;
pub mod verified_tokens;

use std::sync::Arc;

use axum::http::header;
use axum::http::request::Parts;

use crate::id::{SessionId, UserId};
use config::{AuthConfig, KeySource};
use keys::SigningKeys;

/// Everything needed to issue and verify access tokens.
#[derive(Debug)]
pub struct TokenSettings {
    /// The signing keys, once loaded (at init from the environment or the data directory; at
    /// first use from Secrets Manager).
    keys: tokio::sync::OnceCell<SigningKeys>,
    /// Where they come from, when not loaded at init (with the `secrets-manager` feature).
    #[cfg(feature = "secrets-manager")]
    secret: Option<(aws_sdk_secretsmanager::Client, String)>,
    /// Verify-only functions: the public keys the auth function publishes.
    jwks: Option<external::JwksCache>,
    /// `iss`: the API's base URL.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Access token lifetime.
    pub access_ttl_secs: i64,
    /// Session (refresh token) lifetime without use.
    pub refresh_ttl_secs: i64,
    /// How long a rotated refresh token still gets its successor (milliseconds).
    pub refresh_reuse_interval_ms: i64,
    /// Rent-auth mode: the external issuer whose tokens are accepted instead of ours.
    pub external: Option<external::ExternalVerifier>,
    /// Tokens this process verified already (see [`verified_tokens`]).
    verified: verified_tokens::VerifiedTokens,
}

impl TokenSettings {
    /// The signing keys (read from Secrets Manager on first use when configured so).
    ///
    /// # Errors
    /// 503 when the secret cannot be read; 500 when this function has no signing keys.
    pub async fn signing_keys(&self) -> Result<&SigningKeys, crate::error::ApiError> {
        self.keys
            .get_or_try_init(|| async {
                #[cfg(feature = "secrets-manager")]
                if let Some((client, id)) = &self.secret {
                    return read_signing_keys(client, id).await;
                }
                Err(crate::error::ApiError::Unexpected(anyhow::anyhow!(
                    "this function verifies tokens only (GROUNDWORK_JWKS_URL): it has no signing keys"
                )))
            })
            .await
    }

    /// Whether this function can verify access tokens now: its signing keys are loaded (or
    /// read from Secrets Manager now), or the published key set is fresh (or fetched now).
    ///
    /// # Errors
    /// 503 when the keys cannot be had.
    pub async fn keys_ready(&self) -> Result<(), crate::error::ApiError> {
        match &self.jwks {
            Some(jwks) => jwks.ready().await.map_err(crate::error::ApiError::Unavailable),
            None => self.signing_keys().await.map(|_| ()),
        }
    }

    /// The access tokens this process verified already.
    pub fn verified(&self) -> &verified_tokens::VerifiedTokens {
        &self.verified
    }

    /// Verifies one of our access tokens: with the local keys, or (verify-only functions)
    /// with the published JWKS. A token verified before is not verified again: its claims
    /// come from the process's [`verified_tokens`] cache, their times checked at `now_secs`
    /// (the session is the caller's to check, on every request).
    ///
    /// # Errors
    /// 401 for a bad token; 503 when the keys cannot be had.
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<tokens::AccessClaims, crate::error::ApiError> {
        let unauthenticated = |_| crate::error::ApiError::Unauthenticated;
        if let Some(known) = self.verified.get(token, now_secs) {
            return known.map_err(unauthenticated);
        }
        let claims = match &self.jwks {
            Some(jwks) => {
                let (key, _) = jwks.key_for(token).await.map_err(unauthenticated)?;
                tokens::verify_with(&key, token, &self.issuer, &self.audience, now_secs).map_err(unauthenticated)?
            }
            None => tokens::verify(self.signing_keys().await?, token, &self.issuer, &self.audience, now_secs)
                .map_err(unauthenticated)?,
        };
        self.verified.keep(token, &claims);
        Ok(claims)
    }

    /// From the auth settings (see [`KeySource`]), for tokens issued by `issuer` (the API's
    /// public URL); local keys live under `data_dir`, and `sdk` is needed for Secrets
    /// Manager. No network call: a secret is read at first use.
    ///
    /// # Errors
    /// If keys given in the environment or the data directory do not load.
    pub fn from_config(
        config: &AuthConfig,
        issuer: &str,
        data_dir: &std::path::Path,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> anyhow::Result<Arc<Self>> {
        let keys = tokio::sync::OnceCell::new();
        #[cfg(feature = "secrets-manager")]
        let mut secret = None;
        let mut jwks = None;
        match &config.jwt_keys {
            KeySource::Value(value) => keys.set(SigningKeys::from_env_value(value.expose())?)?,
            KeySource::DataDir => keys.set(SigningKeys::load_or_generate(&data_dir.join("keys"))?)?,
            #[cfg(feature = "secrets-manager")]
            KeySource::SecretsManager(id) => {
                let sdk = sdk.ok_or_else(|| anyhow::anyhow!("GROUNDWORK_JWT_KEYS_SECRET needs AWS configuration"))?;
                secret = Some((aws_sdk_secretsmanager::Client::new(sdk), id.clone()));
            }
            #[cfg(not(feature = "secrets-manager"))]
            KeySource::SecretsManager(_) => {
                let _ = sdk;
                return Err(crate::settings::not_built("GROUNDWORK_JWT_KEYS_SECRET", "secrets-manager"));
            }
            KeySource::Jwks(url) => jwks = Some(external::JwksCache::new(url.clone())?),
        }
        Ok(Arc::new(Self {
            keys,
            #[cfg(feature = "secrets-manager")]
            secret,
            jwks,
            issuer: issuer.to_owned(),
            audience: config.audience.clone(),
            access_ttl_secs: i64::try_from(config.access_token_ttl.as_secs()).unwrap_or(i64::MAX),
            refresh_ttl_secs: i64::try_from(config.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX),
            refresh_reuse_interval_ms: i64::try_from(config.refresh_reuse_interval.as_millis()).unwrap_or(i64::MAX),
            external: config.external_issuer.clone().map(external::ExternalVerifier::new).transpose()?,
            verified: verified_tokens::VerifiedTokens::default(),
        }))
    }
}

/// A fresh random secret: 32 bytes, URL-safe base64 (tokens in links, refresh tokens, API
/// key secrets).
///
/// # Errors
/// When the system has no randomness.
pub fn random_secret() -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The hex SHA-256 of a secret, as stored (secrets are random, so no salt or stretching is
/// needed; only passwords get argon2).
pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The authenticated caller: a user, through a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// The user.
    pub user_id: UserId,
    /// The session the access token belongs to.
    pub session_id: SessionId,
    /// Whether the session was opened with a second factor.
    pub mfa: bool,
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// Reads the signing keys from the Secrets Manager secret `id`.
#[cfg(feature = "secrets-manager")]
async fn read_signing_keys(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<SigningKeys, crate::error::ApiError> {
    let out = client.get_secret_value().secret_id(id).send().await.map_err(|e| {
        crate::error::ApiError::Unavailable(anyhow::anyhow!(
            "reading the signing keys from Secrets Manager: {}",
            aws_sdk_secretsmanager::Error::from(e)
        ))
    })?;
    let value = out
        .secret_string()
        .ok_or_else(|| crate::error::ApiError::Unexpected(anyhow::anyhow!("the signing-key secret holds no string")))?;
    SigningKeys::from_env_value(value).map_err(crate::error::ApiError::Unexpected)
}
