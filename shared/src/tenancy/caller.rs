//! Who is calling a tenant-scoped route: a signed-in user, or one of the account's API keys.

use super::api_keys;
use crate::auth::AuthUser;

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
