//! Sessions: one per login, under the user (`USER#<id>` / `SESSION#<id>`), expiring when
//! unused for the refresh lifetime. A session holds the hash of its current refresh token;
//! each refresh token is also indexed by its hash (`REFRESH#<hash>`) and used once.
//! Revoking a session deletes it, which invalidates its access tokens at once (the request
//! extractor checks the session) and its refresh tokens.

use serde::{Deserialize, Serialize};

use crate::id::{SessionId, UserId};
use crate::keys;
use crate::store::{Key, Query, Store, StoreError, StoreExt as _};

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
    /// When a token of it was last refreshed (Unix ms).
    pub last_used_at_ms: i64,
    /// The IP it was created from.
    pub ip: Option<String>,
    /// The user agent it was created with.
    pub user_agent: Option<String>,
    /// The hash of its current refresh token.
    pub refresh_hash: String,
    /// Whether it was opened with a second factor (TOTP or a recovery code).
    #[serde(default)]
    pub mfa: bool,
    /// The organization whose single sign-on opened it, if one did: a refresh of a session
    /// that did not come through the SSO its address's verified domain requires is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_org: Option<crate::id::OrgId>,
}

/// The key of a session.
pub fn key(user_id: UserId, session_id: SessionId) -> Key {
    keys::session(user_id, session_id)
}

/// A live session, if it exists.
///
/// # Errors
/// When the store fails.
pub async fn load(store: &dyn Store, user_id: UserId, session_id: SessionId) -> Result<Option<Session>, StoreError> {
    store.get_record(&key(user_id, session_id)).await
}

/// Ends a session; `Ok(false)` if there was none. Its access tokens stop working at once
/// (the request extractor checks the session), and so do its refresh tokens.
///
/// # Errors
/// When the store fails.
pub async fn revoke(store: &dyn Store, user_id: UserId, session_id: SessionId) -> Result<bool, StoreError> {
    Ok(store.delete(crate::store::Delete::new(key(user_id, session_id))).await?.is_some())
}

/// Ends every session of `user_id` but `keep`; returns how many ended.
///
/// # Errors
/// When the store fails.
pub async fn revoke_all(store: &dyn Store, user_id: UserId, keep: Option<SessionId>) -> Result<usize, StoreError> {
    let mut ended = 0;
    for s in list(store, user_id).await? {
        if Some(s.id) != keep && revoke(store, user_id, s.id).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Every live session of a user (bounded: sessions expire).
///
/// # Errors
/// When the store fails.
pub async fn list(store: &dyn Store, user_id: UserId) -> Result<Vec<Session>, StoreError> {
    let items =
        store.query_all(Query::partition(keys::user_partition(user_id)).begins_with(keys::SESSION_PREFIX)).await?;
    items.iter().map(crate::store::Item::record).collect()
}
