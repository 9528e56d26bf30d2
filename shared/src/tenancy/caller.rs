//! Who is calling a tenant-scoped route: a signed-in user, or one of the account's API keys.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::api_keys;
use crate::auth::{AuthUser, bearer};
use crate::services::Services;

/// Who is calling: a signed-in user, or an API key of one account. Tenant-scoped routes take
/// either (through [`super::Tenant`]); user routes take [`AuthUser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A user with a session.
    User(AuthUser),
    /// A machine, with an API key.
    ApiKey(api_keys::ApiKeyCaller),
}

impl Caller {
    /// The actor recorded in audit events.
    pub fn actor(&self) -> crate::audit::Actor {
        match self {
            Self::User(u) => crate::audit::Actor::User(u.user_id),
            Self::ApiKey(k) => crate::audit::Actor::ApiKey(k.key_id.to_string()),
        }
    }
}

impl FromRequestParts<Services> for Caller {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(token) if token.starts_with(api_keys::PREFIX) => {
                let key = api_keys::authenticate(services, token).await?;
                crate::http::record_tenant(&key.account_id);
                Ok(Self::ApiKey(key))
            }
            _ => Ok(Self::User(AuthUser::from_request_parts(parts, services).await?)),
        }
    }
}
