//! Authentication shared by every function: signing keys ([`keys`]), access tokens
//! ([`tokens`]), passwords ([`password`]), attempt limits ([`rate_limit`]), sessions
//! ([`session`]) and the request extractor [`AuthUser`], which every authenticated route takes.

pub mod keys;
pub mod password;
pub mod rate_limit;
pub mod session;
pub mod tokens;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::error::Problem;
use crate::id::{SessionId, UserId};
use crate::services::Services;
use keys::SigningKeys;

/// Everything needed to issue and verify access tokens.
#[derive(Debug)]
pub struct TokenSettings {
    /// The keys.
    pub keys: SigningKeys,
    /// `iss`: the API's base URL.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Access token lifetime.
    pub access_ttl_secs: i64,
    /// Session (refresh token) lifetime without use.
    pub refresh_ttl_secs: i64,
}

impl TokenSettings {
    /// From configuration: keys from `GROUNDWORK_JWT_KEYS`, or the data directory locally.
    ///
    /// # Errors
    /// If the keys do not load.
    pub fn from_config(config: &Config) -> anyhow::Result<Arc<Self>> {
        let keys = match &config.jwt_keys {
            Some(value) => SigningKeys::from_env_value(value.expose())?,
            None => SigningKeys::load_or_generate(&config.data_dir.join("keys"))?,
        };
        Ok(Arc::new(Self {
            keys,
            issuer: config.api_url.clone(),
            audience: config.jwt_audience.clone(),
            access_ttl_secs: i64::from(config.access_token_ttl_secs),
            refresh_ttl_secs: i64::from(config.refresh_token_ttl_days) * 86_400,
        }))
    }
}

/// The authenticated caller: a user, through a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// The user.
    pub user_id: UserId,
    /// The session the access token belongs to.
    pub session_id: SessionId,
}

/// Why a request is not authenticated: 401 with `WWW-Authenticate`, nothing more specific.
#[derive(Debug)]
pub struct Unauthenticated(&'static str);

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut res = Problem::from_status(StatusCode::UNAUTHORIZED).with_detail(self.0).into_response();
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        res
    }
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

impl FromRequestParts<Services> for AuthUser {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        authenticate(parts, services).await
    }
}

async fn authenticate(parts: &Parts, services: &Services) -> Result<AuthUser, crate::error::ApiError> {
    let unauthenticated = || crate::error::ApiError::Unauthenticated;
    let token = bearer(parts).ok_or_else(unauthenticated)?;
    let settings = &services.tokens;
    let claims = tokens::verify(&settings.keys, token, &settings.issuer, &settings.audience, services.clock.now_secs())
        .map_err(|_| unauthenticated())?;
    let user_id: UserId = claims.sub.parse().map_err(|_| unauthenticated())?;
    let session_id: SessionId = claims.sid.parse().map_err(|_| unauthenticated())?;
    // A revoked session's access tokens stop working at once, not at their expiry.
    if session::load(services.store.as_ref(), user_id, session_id).await?.is_none() {
        return Err(unauthenticated());
    }
    crate::http::record_user(&user_id);
    Ok(AuthUser { user_id, session_id })
}
