//! The request extractors that authenticate and scope a request: [`AuthUser`] (a user with a
//! live session, or in rent-auth mode the external issuer's token), [`Caller`] (a user or an
//! API key) and [`Tenant`] (the caller, the path's account, and the membership check). They
//! are the edge between HTTP and the domain: each reads what it needs from [`Services`] and
//! notes the caller on the request's span.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use crate::auth::{AuthUser, bearer, external, hash_secret, session};
use crate::error::ApiError;
use crate::id::{AccountId, SessionId, UserId};
use crate::services::Services;
use crate::tenancy::{Caller, Deleted, Tenant, api_keys, authorize};

impl FromRequestParts<Services> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        // Authenticated once per request, by the rate limits' layer where it runs.
        if let Some(Caller::User(user)) = parts.extensions.get::<Caller>() {
            return Ok(user.clone());
        }
        authenticate(parts, services).await
    }
}

async fn authenticate(parts: &Parts, services: &Services) -> Result<AuthUser, ApiError> {
    let unauthenticated = || ApiError::Unauthenticated;
    let token = bearer(parts).ok_or_else(unauthenticated)?;
    let settings = &services.tokens;
    if let Some(external) = &settings.external {
        return authenticate_external(external, token, services).await;
    }
    let claims = settings.verify(token, services.clock.now_secs()).await?;
    let user_id: UserId = claims.sub.parse().map_err(|_| unauthenticated())?;
    let session_id: SessionId = claims.sid.parse().map_err(|_| unauthenticated())?;
    // A revoked session's access tokens stop working at once, not at their expiry.
    let Some(session) = session::load(services.store.as_ref(), user_id, session_id).await? else {
        return Err(unauthenticated());
    };
    super::record_user(&user_id);
    Ok(AuthUser { user_id, session_id, mfa: session.mfa })
}

/// Rent-auth mode: the external issuer's token, its subject mapped to a user. There is no
/// Groundwork session: the session id is derived from the issuer's (or the token's) identity,
/// and revocation is the issuer's business (its tokens are short-lived).
async fn authenticate_external(
    external: &external::ExternalVerifier,
    token: &str,
    services: &Services,
) -> Result<AuthUser, ApiError> {
    let claims = external.verify(token, services.clock.now_secs()).await.map_err(|_| ApiError::Unauthenticated)?;
    let user_id = external::user_for(services.store.as_ref(), &claims, services.clock.now_ms()).await?;
    let seed = format!("{}#{}#{}", claims.iss, claims.sub, claims.sid.as_deref().unwrap_or_default());
    let digest = hash_secret(&seed);
    let bytes: [u8; 16] = std::array::from_fn(|i| u8::from_str_radix(&digest[i * 2..i * 2 + 2], 16).unwrap_or(0));
    let session_id: SessionId =
        ulid::Ulid::from_bytes(bytes).to_string().parse().map_err(|_| ApiError::Unauthenticated)?;
    super::record_user(&user_id);
    Ok(AuthUser { user_id, session_id, mfa: claims.mfa() })
}

impl FromRequestParts<Services> for Caller {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Self>() {
            return Ok(caller.clone());
        }
        match bearer(parts) {
            Some(token) if token.starts_with(api_keys::PREFIX) => {
                let key = api_keys::authenticate(services.store.as_ref(), services.clock.now_ms(), token).await?;
                super::record_tenant(&key.account_id);
                Ok(Self::ApiKey(key))
            }
            _ => Ok(Self::User(AuthUser::from_request_parts(parts, services).await?)),
        }
    }
}

/// The `{account_id}` of a request's path.
///
/// # Errors
/// 404 when it is missing or not an id.
pub async fn path_account(parts: &mut Parts, services: &Services) -> Result<AccountId, ApiError> {
    let params = RawPathParams::from_request_parts(parts, services).await.map_err(|_| ApiError::NotFound)?;
    let raw = params.iter().find(|(k, _)| *k == "account_id").map(|(_, v)| v.to_owned()).ok_or(ApiError::NotFound)?;
    raw.parse()
        .map_err(|_| ApiError::BadRequest { code: "invalid_path", detail: "account_id is not an account id".into() })
}

impl FromRequestParts<Services> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        // Authentication first: an anonymous caller learns nothing about which ids exist.
        let caller = Caller::from_request_parts(parts, services).await?;
        let account = path_account(parts, services).await?;
        let scope = authorize(services.store.as_ref(), caller, account, Deleted::Refuse).await?;
        super::record_tenant(&account);
        Ok(Tenant(scope))
    }
}
