//! API keys for machine access to one account. A key is `gwk_<key id>_<secret>`: the key id
//! is the visible prefix (shown in lists, logged), the secret is shown once at creation and
//! stored only as its SHA-256. A key acts in its account with the role it was given (never
//! owner), through the same permission check as users.
//!
//! Stored under its account (`ACCOUNT#<account>` / `APIKEY#<key>`) and indexed by key id
//! (gsi1 `APIKEY#<key>`) so a request finds it with one index query.

use serde::{Deserialize, Serialize};

use super::Role;
use crate::error::ApiError;
use crate::id::{AccountId, ApiKeyId, UserId};
use crate::keys;
use crate::store::{Condition, Index, Item, Key, Put, Query, Store, StoreError, Update};

/// What every key starts with, so a bearer token is told apart from a JWT at a glance (and
/// secret scanners can find leaked keys).
pub const PREFIX: &str = "gwk_";

/// How stale `last_used_at_ms` may get before a use writes it again.
pub const TOUCH_INTERVAL_MS: i64 = 60_000;

/// A stored API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// The key id: the visible prefix.
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    /// The account it acts in.
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// A label.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The start of the key as shown to people: `gwk_<key id>_…`.
    pub display_prefix: String,
    /// Who created it.
    #[schema(value_type = String)]
    pub created_by: UserId,
    /// When (Unix ms).
    pub created_at_ms: i64,
    /// When it was last used (Unix ms, to the minute).
    pub last_used_at_ms: Option<i64>,
    /// When it was revoked (Unix ms).
    pub revoked_at_ms: Option<i64>,
    /// The SHA-256 of the secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(ignore)]
    pub secret_hash: String,
}

/// The key of an API key item.
pub fn key(account: AccountId, id: ApiKeyId) -> Key {
    keys::api_key(account, id)
}

fn index_key(id: ApiKeyId) -> Key {
    keys::api_key_index(id)
}

/// A request authenticated by an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCaller {
    /// The key.
    pub key_id: ApiKeyId,
    /// Its account.
    pub account_id: AccountId,
    /// Its role.
    pub role: Role,
}

/// Creates a key; returns it and the full secret token, which is never available again.
///
/// # Errors
/// When the store fails.
pub async fn create(
    store: &dyn Store,
    account: AccountId,
    name: String,
    role: Role,
    created_by: UserId,
    now_ms: i64,
) -> Result<(ApiKey, String), ApiError> {
    let id = ApiKeyId::new();
    let secret = crate::auth::random_secret()?;
    let token = format!("{PREFIX}{id}_{secret}");
    let record = ApiKey {
        id,
        account_id: account,
        name,
        role,
        display_prefix: format!("{PREFIX}{id}_"),
        created_by,
        created_at_ms: now_ms,
        last_used_at_ms: None,
        revoked_at_ms: None,
        secret_hash: crate::auth::hash_secret(&secret),
    };
    let item = Item::from_record(key(account, id), &record)?.with_gsi1(index_key(id));
    store.put(Put::new(item).if_not_exists()).await?;
    Ok((ApiKey { secret_hash: String::new(), ..record }, token))
}

/// Revokes a key of `account`; `Ok(None)` if there is no such key.
///
/// # Errors
/// When the store fails.
pub async fn revoke(
    store: &dyn Store,
    account: AccountId,
    id: ApiKeyId,
    now_ms: i64,
) -> Result<Option<ApiKey>, ApiError> {
    let update = Update::new(key(account, id)).set("revoked_at_ms", now_ms).when(Condition::Exists);
    match store.update(update).await {
        Ok(item) => Ok(Some(ApiKey { secret_hash: String::new(), ..item.record()? })),
        Err(StoreError::ConditionFailed) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every key of `account` (revoked ones too, marked), without their hashes.
///
/// # Errors
/// When the store fails.
pub async fn list(store: &dyn Store, account: AccountId) -> Result<Vec<ApiKey>, StoreError> {
    use crate::store::StoreExt as _;
    let items =
        store.query_all(Query::partition(keys::account_partition(account)).begins_with(keys::API_KEY_PREFIX)).await?;
    items.iter().map(|i| i.record::<ApiKey>().map(|k| ApiKey { secret_hash: String::new(), ..k })).collect()
}

/// Checks a bearer token that starts with [`PREFIX`]: the key exists, is not revoked and
/// the secret matches. Records the use (at most once a minute).
///
/// # Errors
/// 401 for anything wrong with the key; 503 when the store fails.
pub async fn authenticate(store: &dyn Store, now_ms: i64, token: &str) -> Result<ApiKeyCaller, ApiError> {
    let rest = token.strip_prefix(PREFIX).ok_or(ApiError::Unauthenticated)?;
    let (id, secret) = rest.split_once('_').ok_or(ApiError::Unauthenticated)?;
    let id: ApiKeyId = id.parse().map_err(|_| ApiError::Unauthenticated)?;
    let page = store.query(Query::index(Index::Gsi1, keys::api_key_lookup(id)).limit(1)).await?;
    let Some(item) = page.items.first() else { return Err(ApiError::Unauthenticated) };
    let record: ApiKey = item.record()?;
    let presented = crate::auth::hash_secret(secret);
    let matches =
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), record.secret_hash.as_bytes()).is_ok();
    if !matches || record.revoked_at_ms.is_some() {
        return Err(ApiError::Unauthenticated);
    }
    let now = now_ms;
    if record.last_used_at_ms.is_none_or(|t| now - t >= TOUCH_INTERVAL_MS) {
        let touch = Update::new(item.key.clone()).set("last_used_at_ms", now).when(Condition::Exists);
        if let Err(e) = store.update(touch).await {
            tracing::warn!(error = %e, key_id = %id, "could not record an API key's use");
        }
    }
    Ok(ApiKeyCaller { key_id: id, account_id: record.account_id, role: record.role })
}
