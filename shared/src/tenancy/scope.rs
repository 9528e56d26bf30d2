//! The isolation mechanism: [`TenantScope`], built only by [`authorize`] (through the
//! [`Tenant`] extractor), and the tenant data helpers that take it, so a handler cannot name
//! another tenant's items.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;
use crate::error::ApiError;
use crate::store::{Cursor, Item, Key, Put, Query, Store, StoreError, StoreExt as _};

/// Whether a deleted account may be acted on (only its restore does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// A deleted account is refused.
    Refuse,
    /// A deleted account is acted on (restore).
    Allow,
}

/// Proof that the caller may act in one account, with the role they act as. Built only by
/// [`authorize`] (through [`Tenant`]).
#[derive(Debug, Clone)]
pub struct TenantScope {
    account: Account,
    caller: Caller,
    role: Role,
}

impl TenantScope {
    /// The account.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The account's id.
    pub fn account_id(&self) -> AccountId {
        self.account.id
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The role the caller acts with.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The calling user, if a user is calling (not an API key).
    pub fn user_id(&self) -> Option<UserId> {
        match &self.caller {
            Caller::User(u) => Some(u.user_id),
            Caller::ApiKey(_) => None,
        }
    }

    /// The calling user, or 403 for an API key (for what only a person may do).
    ///
    /// # Errors
    /// 403 when an API key calls.
    pub fn require_user(&self) -> Result<UserId, ApiError> {
        self.user_id().ok_or(ApiError::Forbidden)
    }

    /// Ok if the caller's role allows `action`, else 403.
    ///
    /// # Errors
    /// 403.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if allows(self.role, action) { Ok(()) } else { Err(ApiError::Forbidden) }
    }

    /// The key of one of the tenant's items: `ACCOUNT#<id>` / `<kind>#<id>`.
    pub fn key(&self, kind: &str, id: &str) -> Key {
        keys::tenant_item(self.account.id, kind, id)
    }
}

/// The membership check: `caller` may act in `account_id` as the returned scope says.
/// Not a member (or another account's API key), or no such account: 404, so accounts of
/// others cannot be discovered. A deleted account: 409 `account_deleted` for its members
/// (unless `deleted` allows it). An account requiring a second factor, and a session opened
/// without one: 403 `mfa_required`.
///
/// # Errors
/// As above; 503 when the store fails.
pub async fn authorize(
    store: &dyn Store,
    caller: Caller,
    account_id: AccountId,
    deleted: Deleted,
) -> Result<TenantScope, ApiError> {
    let role = match &caller {
        Caller::User(u) => load_membership(store, account_id, u.user_id).await?.ok_or(ApiError::NotFound)?.0.role,
        Caller::ApiKey(k) if k.account_id == account_id => k.role,
        Caller::ApiKey(_) => return Err(ApiError::NotFound),
    };
    let (account, _) = load_account(store, account_id).await?.ok_or(ApiError::NotFound)?;
    if account.deleted_at_ms.is_some() && deleted == Deleted::Refuse {
        return Err(ApiError::Conflict {
            code: "account_deleted",
            detail: "the account is deleted; an owner can restore it within the retention window".into(),
        });
    }
    if account.require_mfa && matches!(&caller, Caller::User(u) if !u.mfa) {
        return Err(ApiError::ForbiddenBecause {
            code: "mfa_required",
            detail: "this account requires two-factor authentication: enable it and sign in again".into(),
        });
    }
    Ok(TenantScope { account, caller, role })
}

/// The extractor of tenant-scoped routes: the path's `{account_id}`, the caller, and the
/// membership check ([`authorize`]).
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantScope);

/// Reads one of the tenant's items (soft-deleted ones are absent).
///
/// # Errors
/// When the store fails or the item does not decode.
pub async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    scope: &TenantScope,
    kind: &str,
    id: &str,
) -> Result<Option<(T, u64)>, StoreError> {
    match store.get(&scope.key(kind, id)).await? {
        Some(item) if !soft_delete::is_deleted(&item) => Ok(Some((item.record()?, item.version))),
        _ => Ok(None),
    }
}

/// Writes one of the tenant's items, based on `version` (0: it must not exist yet).
///
/// # Errors
/// A condition failure when it changed since `version` was read.
pub async fn put<T: Serialize>(
    store: &dyn Store,
    scope: &TenantScope,
    kind: &str,
    id: &str,
    record: &T,
    version: u64,
) -> Result<(), StoreError> {
    let mut item = Item::from_record(scope.key(kind, id), record)?;
    item.version = version;
    let put = if version == 0 { Put::new(item).if_not_exists() } else { Put::new(item).if_unchanged() };
    store.put(put).await.map(|_| ())
}

/// One page of the tenant's items of `kind` (soft-deleted ones left out, and the page still
/// full unless the list ends).
///
/// # Errors
/// When the store fails or the cursor is not valid.
pub async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    scope: &TenantScope,
    kind: &str,
    limit: u32,
    cursor: Option<Cursor>,
) -> Result<(Vec<T>, Option<Cursor>), StoreError> {
    let q = Query::partition(keys::account_partition(scope.account.id))
        .begins_with(keys::tenant_kind_prefix(kind))
        .limit(limit)
        .after(cursor);
    let page = store.query_kept(q, |i| !soft_delete::is_deleted(i)).await?;
    Ok((page.records()?, page.next))
}
