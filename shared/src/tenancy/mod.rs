//! Tenancy: accounts (the tenant), memberships with roles, the one permission table, and the
//! isolation mechanism every tenant-scoped route goes through.
//!
//! A tenant-scoped handler takes [`Tenant`], whose [`TenantScope`] can only be built by
//! [`authorize`]: the caller is authenticated, the account in the path exists and is not
//! deleted, and the caller is a live member of it (or holds one of its API keys). Tenant data
//! lives under the account's partition (`ACCOUNT#<id>`), and the helpers that read or write it
//! ([`TenantScope::key`], [`get`], [`put`], [`list`]) take the scope, so a handler cannot name
//! another tenant's items. What the caller may do is decided by [`allows`] alone.
//!
//! Items:
//! - `ACCOUNT#<id>` / `ACCOUNT`: the [`Account`];
//! - `ACCOUNT#<id>` / `MEMBER#<user>`: a [`Membership`], indexed by user (gsi1
//!   `MEMBERSHIPS#<user>` / `<account>`) for "my accounts";
//! - `ACCOUNT#<id>` / `<KIND>#<id>`: everything else the tenant owns (invitations, API keys,
//!   product data).

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod api_keys;
mod caller;
pub mod domains;
pub mod membership_lifecycle;
pub mod saml_connection;
mod scope;

use crate::id::{AccountId, OrgId, UserId};
use crate::keys;
use crate::soft_delete;
use crate::store::{Item, Put, Query, Store, StoreError, StoreExt as _};
pub use caller::Caller;
pub use scope::{Deleted, Tenant, TenantScope, authorize, get, list, put};

/// A member's role in an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including deleting the account and transferring ownership.
    Owner,
    /// Runs the account: members, invitations, API keys, settings, audit; not billing.
    Admin,
    /// Uses the product.
    Member,
    /// Manages billing; reads the account.
    Billing,
    /// Reads.
    ReadOnly,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 5] = [Self::Owner, Self::Admin, Self::Member, Self::Billing, Self::ReadOnly];

    /// The role's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Billing => "billing",
            Self::ReadOnly => "read_only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a caller may want to do in an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read the account's settings.
    ReadAccount,
    /// Change the account's settings.
    UpdateAccount,
    /// Soft-delete or restore the account.
    DeleteAccount,
    /// Hand ownership to another member.
    TransferOwnership,
    /// See who is a member.
    ReadMembers,
    /// Change roles, remove members, invite.
    ManageMembers,
    /// Create and revoke API keys.
    ManageApiKeys,
    /// Register webhook endpoints, rotate their secrets, read their delivery logs, replay.
    ManageWebhooks,
    /// Read the account's audit log.
    ReadAudit,
    /// Export all the account's data.
    ExportData,
    /// See the subscription.
    ReadBilling,
    /// Change the subscription.
    ManageBilling,
    /// Read the product's data.
    ReadData,
    /// Change the product's data.
    WriteData,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 14] = [
        Self::ReadAccount,
        Self::UpdateAccount,
        Self::DeleteAccount,
        Self::TransferOwnership,
        Self::ReadMembers,
        Self::ManageMembers,
        Self::ManageApiKeys,
        Self::ManageWebhooks,
        Self::ReadAudit,
        Self::ExportData,
        Self::ReadBilling,
        Self::ManageBilling,
        Self::ReadData,
        Self::WriteData,
    ];

    /// Its name in snake case (`write_data`): what a route's OpenAPI security requirement
    /// lists as the role it needs (OpenAPI 3.1, Security Requirement Object).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadAccount => "read_account",
            Self::UpdateAccount => "update_account",
            Self::DeleteAccount => "delete_account",
            Self::TransferOwnership => "transfer_ownership",
            Self::ReadMembers => "read_members",
            Self::ManageMembers => "manage_members",
            Self::ManageApiKeys => "manage_api_keys",
            Self::ManageWebhooks => "manage_webhooks",
            Self::ReadAudit => "read_audit",
            Self::ExportData => "export_data",
            Self::ReadBilling => "read_billing",
            Self::ManageBilling => "manage_billing",
            Self::ReadData => "read_data",
            Self::WriteData => "write_data",
        }
    }

    /// The action named `name` ([`Action::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// Whether `role` may do `action`: the one permission table.
pub fn allows(role: Role, action: Action) -> bool {
    use Action as A;
    match role {
        Role::Owner => true,
        Role::Admin => !matches!(action, A::DeleteAccount | A::TransferOwnership | A::ManageBilling),
        Role::Member => matches!(action, A::ReadAccount | A::ReadMembers | A::ReadData | A::WriteData),
        Role::Billing => matches!(action, A::ReadAccount | A::ReadMembers | A::ReadBilling | A::ManageBilling),
        Role::ReadOnly => matches!(action, A::ReadAccount | A::ReadMembers | A::ReadData),
    }
}

/// Whether someone with `actor` may give or take away `role`: owners may do anything,
/// admins may manage every role but owner, nobody else manages roles.
pub fn may_assign(actor: Role, role: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => role != Role::Owner,
        _ => false,
    }
}

/// An account: the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    /// Its id.
    #[schema(value_type = String)]
    pub id: AccountId,
    /// Its name.
    pub name: String,
    /// Who created it.
    #[schema(value_type = String)]
    pub created_by: UserId,
    /// When (Unix ms).
    pub created_at_ms: i64,
    /// The organization it belongs to, if any.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub org_id: Option<OrgId>,
    /// Whether every member must sign in with a second factor to act in it.
    #[serde(default)]
    pub require_mfa: bool,
    /// When it was soft-deleted (Unix ms); deleted accounts are invisible but restorable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_ms: Option<i64>,
    /// When a deleted account is purged (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after_ms: Option<i64>,
}

/// Enterprise OIDC settings of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoConfig {
    /// The IdP's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client id registered at the IdP.
    pub client_id: String,
    /// The client secret (stored; never returned).
    pub client_secret: String,
    /// Email domains whose users may sign in through it.
    pub allowed_domains: Vec<String>,
    /// Just-in-time membership: users signing in through it join this account...
    pub jit_account_id: Option<AccountId>,
    /// ...with this role.
    pub jit_role: Role,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
}

/// An organization's SSO settings, if it exists and has them.
///
/// # Errors
/// When the store fails.
pub async fn org_sso(store: &dyn Store, id: OrgId) -> Result<Option<SsoConfig>, StoreError> {
    #[derive(Deserialize)]
    struct OrgSso {
        #[serde(default)]
        sso: Option<SsoConfig>,
    }
    Ok(store.get_record::<OrgSso>(&keys::organization(id)).await?.and_then(|o| o.sso))
}

/// Whether an organization has single sign-on of either kind (OpenID Connect or SAML), so
/// that a domain may require it.
///
/// # Errors
/// When the store fails.
pub async fn org_has_sso(store: &dyn Store, id: OrgId) -> Result<bool, StoreError> {
    #[derive(Deserialize)]
    struct OrgConnections {
        #[serde(default)]
        sso: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        saml: Option<serde::de::IgnoredAny>,
    }
    let org = store.get_record::<OrgConnections>(&keys::organization(id)).await?;
    Ok(org.is_some_and(|o| o.sso.is_some() || o.saml.is_some()))
}

/// The writes that soft-delete an account (for `retention`, then purged with everything
/// it holds) and mark its subscription for cancellation (`BILLING#PENDING_CANCELLATION`,
/// which the billing side consumes and a restore removes), for one transaction. After
/// they commit, the caller queues [`crate::jobs::Job::CancelForDeletedAccount`].
pub fn delete_account_ops(id: AccountId, now_ms: i64, retention: std::time::Duration) -> Vec<crate::store::TxOp> {
    let cancellation =
        Item::new(keys::pending_cancellation(id)).with("account_id", id.to_string()).with("requested_at_ms", now_ms);
    vec![
        crate::store::TxOp::Update(soft_delete::mark_partition_deleted(keys::account(id), now_ms, retention)),
        crate::store::TxOp::Put(Put::new(cancellation)),
    ]
}

/// A user's membership of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Membership {
    /// The account.
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// The member.
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// When they joined (Unix ms).
    pub joined_at_ms: i64,
}

/// The item of a new membership.
///
/// # Errors
/// When the record does not serialise.
pub fn membership_item(m: &Membership) -> Result<Item, StoreError> {
    Ok(Item::from_record(keys::membership(m.account_id, m.user_id), m)?
        .with_gsi1(keys::membership_index(m.account_id, m.user_id)))
}

/// The item of an account: its record, listed in the account directory. Every write of an
/// account item goes through here, so a rewrite never drops the directory entry.
///
/// # Errors
/// When the record does not serialise.
pub fn account_item(account: &Account) -> Result<Item, StoreError> {
    Ok(Item::from_record(keys::account(account.id), account)?.with_gsi1(keys::account_directory_entry(account.id)))
}

/// One page of the account directory (every account, live or soft-deleted, oldest first),
/// at most `limit` (1 to 1000) accounts.
///
/// # Errors
/// When the store fails, or the cursor is not one of this listing's.
pub async fn directory_page(
    store: &dyn Store,
    limit: u32,
    after: Option<crate::store::Cursor>,
) -> Result<(Vec<Account>, Option<crate::store::Cursor>), StoreError> {
    let page = store
        .query(crate::store::Query::index(crate::store::Index::Gsi1, keys::ACCOUNT_DIRECTORY).limit(limit).after(after))
        .await?;
    Ok((page.records()?, page.next))
}

/// A live account (not soft-deleted), if it exists.
///
/// # Errors
/// When the store fails.
pub async fn load_account(store: &dyn Store, id: AccountId) -> Result<Option<(Account, u64)>, StoreError> {
    let Some(item) = store.get(&keys::account(id)).await? else { return Ok(None) };
    Ok(Some((item.record()?, item.version)))
}

/// A live membership (not removed), with its version.
///
/// # Errors
/// When the store fails.
pub async fn load_membership(
    store: &dyn Store,
    account: AccountId,
    user: UserId,
) -> Result<Option<(Membership, u64)>, StoreError> {
    match store.get(&keys::membership(account, user)).await? {
        Some(item) if !soft_delete::is_deleted(&item) => Ok(Some((item.record()?, item.version))),
        _ => Ok(None),
    }
}

/// Every live member of an account (an account's member list is bounded by its seats).
///
/// # Errors
/// When the store fails.
pub async fn members(store: &dyn Store, account: AccountId) -> Result<Vec<Membership>, StoreError> {
    let items =
        store.query_all(Query::partition(keys::account_partition(account)).begins_with(keys::MEMBER_PREFIX)).await?;
    items.iter().filter(|i| !soft_delete::is_deleted(i)).map(Item::record).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_may_do_everything_and_only_owners_and_billing_manage_billing() {
        let all = [
            Action::ReadAccount,
            Action::UpdateAccount,
            Action::DeleteAccount,
            Action::TransferOwnership,
            Action::ReadMembers,
            Action::ManageMembers,
            Action::ManageApiKeys,
            Action::ReadAudit,
            Action::ExportData,
            Action::ReadBilling,
            Action::ManageBilling,
            Action::ReadData,
            Action::WriteData,
        ];
        assert!(all.iter().all(|a| allows(Role::Owner, *a)));
        let billing: Vec<Role> = Role::ALL.into_iter().filter(|r| allows(*r, Action::ManageBilling)).collect();
        assert_eq!(billing, vec![Role::Owner, Role::Billing]);
        assert!(!allows(Role::ReadOnly, Action::WriteData));
        assert!(!allows(Role::Admin, Action::DeleteAccount));
        for role in Role::ALL {
            assert!(allows(role, Action::ReadAccount), "every member reads the account");
        }
    }

    #[test]
    fn admins_cannot_make_or_unmake_owners() {
        assert!(may_assign(Role::Owner, Role::Owner));
        assert!(!may_assign(Role::Admin, Role::Owner));
        assert!(may_assign(Role::Admin, Role::Billing));
        assert!(!may_assign(Role::Member, Role::ReadOnly));
    }
}
