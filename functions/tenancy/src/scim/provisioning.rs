//! What a directory change does to Groundwork.
//!
//! - **Linking.** A directory user speaks for a Groundwork user only at an email domain the
//!   organization verified (the address of `emails` marked primary, else the first, else a
//!   `userName` that is an address): the existing user with that address, or a new one
//!   (verified, no password: they sign in through the organization's SSO or set one by the
//!   reset link). At any other domain the directory user is kept, unlinked, and touches no
//!   account: a tenant's identity provider is trusted no further than its proven domains, as
//!   for OIDC SSO. One directory user per Groundwork user (`SCIM_LINK#<user>`).
//! - **Memberships.** An active, linked user should be a member of each account a group
//!   mapping names for one of their groups (the first mapping of an account wins), and of
//!   the default account. Sync adds what is missing, changes the role of memberships it
//!   granted, and ends the memberships it granted that no longer apply; a membership granted
//!   by hand (an invitation) is never changed or ended by a mapping.
//! - **Deprovisioning.** A user made inactive or deleted leaves every account of the
//!   organization (whoever granted the membership; the last owner of an account stays, and
//!   the audit says so) and the organization's admins (unless the last), the API keys they
//!   created in its accounts are revoked, all their sessions are revoked, so their access
//!   tokens stop working at once, and they are suspended: no sign-in of any kind starts a
//!   session until the directory makes them active again.
//!
//! Every step is idempotent: the identity provider retries, and a change applied twice or
//! out of order ends in the state the directory holds now.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use shared::auth::{session, users};
use shared::error::ApiError;
use shared::id::{AccountId, OrgId, ScimId, UserId};
use shared::keys;
use shared::mail::EmailAddress;
use shared::services::Services;
use shared::soft_delete;
use shared::store::{Item, Put, Query, StoreError, StoreExt as _};
use shared::tenancy::membership_lifecycle::{self, JoinedVia};
use shared::tenancy::{self, Membership, Role};

use super::DirectoryResource;
use super::directory::Directory;

/// How often a sync retries when the directory user changed under it.
const SYNC_ATTEMPTS: usize = 3;

/// Every group of the directory of `org`.
///
/// # Errors
/// When the store fails.
pub async fn groups(s: &Services, org: OrgId) -> Result<Vec<DirectoryResource>, ApiError> {
    let items =
        s.store.query_all(Query::partition(keys::org_partition(org)).begins_with(keys::SCIM_GROUP_PREFIX)).await?;
    Ok(items.iter().map(Item::record).collect::<Result<_, _>>()?)
}

/// Every user of the directory of `org`.
///
/// # Errors
/// When the store fails.
pub async fn users_of(s: &Services, org: OrgId) -> Result<Vec<(DirectoryResource, u64)>, ApiError> {
    let items =
        s.store.query_all(Query::partition(keys::org_partition(org)).begins_with(keys::SCIM_USER_PREFIX)).await?;
    items.iter().map(|i| Ok((i.record()?, i.version))).collect()
}

/// The accounts and roles an active, linked user should have.
fn desired(directory: &Directory, groups: &[DirectoryResource], user: &DirectoryResource) -> BTreeMap<AccountId, Role> {
    let mut out = BTreeMap::new();
    if !user.active() || user.user_id.is_none() {
        return out;
    }
    let id = user.id.to_string();
    for mapping in &directory.group_roles {
        let member = groups
            .iter()
            .any(|g| g.display_name().eq_ignore_ascii_case(&mapping.group) && g.member_ids().contains(&id));
        if member {
            out.entry(mapping.account_id).or_insert(mapping.role);
        }
    }
    if let Some(account) = directory.default_account_id {
        out.entry(account).or_insert(directory.default_role);
    }
    out
}

/// The address a directory user speaks for.
fn address(user: &DirectoryResource) -> Option<EmailAddress> {
    let emails = user.attributes.get("emails").and_then(Value::as_array);
    let value = |e: &Value| e.get("value").and_then(Value::as_str).map(str::to_owned);
    let primary = emails.and_then(|e| e.iter().find(|e| e.get("primary") == Some(&Value::Bool(true))).and_then(value));
    let first = emails.and_then(|e| e.iter().find_map(value));
    let candidate = primary.or(first).unwrap_or_else(|| user.user_name().to_owned());
    EmailAddress::parse(&candidate).ok()
}

fn display_name(user: &DirectoryResource) -> Option<String> {
    let a = &user.attributes;
    let text =
        |v: Option<&Value>| v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    text(a.get("displayName")).or_else(|| text(a.get("name").and_then(|n| n.get("formatted")))).or_else(|| {
        let name = a.get("name")?;
        let given = text(name.get("givenName"));
        let family = text(name.get("familyName"));
        match (given, family) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (g, f) => g.or(f),
        }
    })
}

/// The Groundwork user `user` speaks for, creating it if needed; `None` outside the
/// organization's verified domains, or when another directory user holds the link.
async fn link(s: &Services, org: OrgId, user: &DirectoryResource) -> Result<Option<UserId>, ApiError> {
    let Some(email) = address(user) else { return Ok(None) };
    let domain = tenancy::domains::of_email(email.as_str());
    if tenancy::domains::owner(s.store.as_ref(), domain).await? != Some(org) {
        return Ok(None);
    }
    let user_id = match users::by_email(s.store.as_ref(), &email).await? {
        Some(existing) => existing.id,
        None => {
            let name = display_name(user).map(|n| n.chars().take(100).collect());
            let created = users::User::new(email.clone(), true, name, String::new(), s.clock.now_ms());
            match s.store.transact(users::create_ops(&created)?).await {
                Ok(()) => {
                    let event = NewEvent::new(Actor::Directory, AuditAction::UserSignedUp, Origin::default())
                        .target(created.id)
                        .detail(json!({"method": "scim", "organization": org}));
                    shared::audit::logged_after_commit(
                        s.audit(AuditStream::User(created.id), event).await,
                        "user provisioned by SCIM",
                    );
                    created.id
                }
                // Created meanwhile (a retried request): the address has its user now.
                Err(e) if e.is_condition_failure() => match users::by_email(s.store.as_ref(), &email).await? {
                    Some(u) => u.id,
                    None => return Ok(None),
                },
                Err(e) => return Err(e.into()),
            }
        }
    };
    let claim = Item::new(keys::scim_link(org, user_id)).with("scim_id", user.id.to_string());
    match s.store.put(Put::new(claim).if_not_exists()).await {
        Ok(_) => Ok(Some(user_id)),
        Err(e) if e.is_condition_failure() => {
            let holder = s.store.get(&keys::scim_link(org, user_id)).await?;
            let held_by_this = holder
                .and_then(|h| h.data.get("scim_id").and_then(Value::as_str).map(|v| v == user.id.to_string()))
                .unwrap_or(false);
            Ok(held_by_this.then_some(user_id))
        }
        Err(e) => Err(e.into()),
    }
}

async fn audit_membership(s: &Services, account: AccountId, user: UserId, org: OrgId, role: Option<Role>) {
    let event = NewEvent::new(Actor::Directory, AuditAction::MemberSyncedFromDirectory, Origin::default())
        .target(user)
        .detail(json!({"role": role, "organization": org}));
    shared::audit::logged_after_commit(s.audit(AuditStream::Account(account), event).await, "directory membership");
}

/// Makes `user` a member of `account` with `role` (or changes the role of a membership sync
/// granted); `false` when a membership granted by hand is already there.
async fn grant(
    s: &Services,
    org: OrgId,
    account: AccountId,
    user: UserId,
    role: Role,
    managed: bool,
) -> Result<bool, ApiError> {
    if s.store.get(&keys::org_account(org, account)).await?.is_none()
        || tenancy::load_account(s.store.as_ref(), account).await?.is_none_or(|(a, _)| a.deleted_at_ms.is_some())
    {
        return Ok(false);
    }
    let existing = s.store.get(&keys::membership(account, user)).await?;
    let live = existing.as_ref().filter(|i| !soft_delete::is_deleted(i));
    if let Some(item) = live {
        let current: Membership = item.record()?;
        if !managed || current.role == role || current.role == Role::Owner {
            return Ok(managed);
        }
        let mut changed = tenancy::membership_item(&Membership { role, ..current })?;
        changed.version = item.version;
        s.store.put(Put::new(changed).if_unchanged()).await?;
        audit_membership(s, account, user, org, Some(role)).await;
        return Ok(true);
    }
    // A seat as for any other join: the directory cannot buy one, so the user stays out
    // (and the account's audit says why) until a seat frees up and the user syncs again.
    match crate::invitations::seat_available(s, account).await {
        Ok(()) => {}
        Err(ApiError::Conflict { code: "seat_limit", .. }) => {
            tracing::warn!(%account, %user, "directory sync found no seat for a member");
            let event = NewEvent::new(Actor::Directory, AuditAction::MemberSyncedFromDirectory, Origin::default())
                .target(user)
                .detail(json!({"role": null, "wanted_role": role, "organization": org, "refused": "seat_limit"}));
            shared::audit::logged_after_commit(s.audit(AuditStream::Account(account), event).await, "no seat");
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    let m = Membership { account_id: account, user_id: user, role, joined_at_ms: s.clock.now_ms() };
    let mut membership = tenancy::membership_item(&m)?;
    let put = match &existing {
        Some(removed) => {
            membership.version = removed.version;
            Put::new(membership).if_unchanged()
        }
        None => Put::new(membership).if_not_exists(),
    };
    let event_id = format!("member-joined-scim-{account}-{user}-{}", existing.as_ref().map_or(0, |e| e.version));
    // A condition failure means a retried request joined them meanwhile.
    if membership_lifecycle::join(s, put, &m, JoinedVia::Scim, event_id, Vec::new()).await? {
        audit_membership(s, account, user, org, Some(role)).await;
    }
    Ok(true)
}

/// Ends `user`'s membership of `account`, unless they are its last owner; `Ok(false)` when
/// there was none to end or it was kept.
async fn revoke(s: &Services, org: OrgId, account: AccountId, user: UserId) -> Result<bool, ApiError> {
    let Some((m, version)) = tenancy::load_membership(s.store.as_ref(), account, user).await? else {
        return Ok(false);
    };
    let owner_check = if m.role == Role::Owner {
        let Some(check) = membership_lifecycle::other_owner(s, account, user).await? else {
            tracing::warn!(%account, %user, "directory sync kept the last owner of an account");
            return Ok(false);
        };
        Some(check)
    } else {
        None
    };
    let ended = membership_lifecycle::end(s, account, user, version, owner_check).await?;
    if ended {
        audit_membership(s, account, user, org, None).await;
    }
    Ok(ended)
}

/// What deprovisioning did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Deprovisioned {
    /// The user.
    pub user_id: Option<UserId>,
    /// The accounts the user left.
    pub left: Vec<AccountId>,
    /// The accounts where they stayed as the last owner.
    pub kept_as_last_owner: Vec<AccountId>,
    /// Whether they stopped being an admin of the organization.
    pub left_admins: bool,
    /// Whether they stayed its admin, as the last one.
    pub kept_as_last_admin: bool,
    /// How many API keys they had created in the organization's accounts were revoked.
    pub api_keys_revoked: usize,
    /// How many sessions were revoked.
    pub sessions_ended: usize,
}

impl Deprovisioned {
    /// Whether it changed anything.
    pub fn changed(&self) -> bool {
        !self.left.is_empty() || self.left_admins || self.api_keys_revoked > 0 || self.sessions_ended > 0
    }
}

/// Sets or lifts `org`'s suspension of `user` (lifting only its own).
async fn suspend(s: &Services, org: OrgId, user: UserId, suspended: bool) -> Result<(), ApiError> {
    for _ in 0..SYNC_ATTEMPTS {
        let Some((mut record, version)) = users::load_versioned(s.store.as_ref(), user).await? else { return Ok(()) };
        let wanted = if suspended { Some(org) } else { record.suspended_by.filter(|o| *o != org) };
        if record.suspended_by == wanted {
            return Ok(());
        }
        record.suspended_by = wanted;
        match users::save(s.store.as_ref(), &record, version).await {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("the user {user} kept changing")).into())
}

/// Takes `user` out of `org`'s admins, unless they are the last; `(left, kept as last)`.
async fn leave_admins(s: &Services, org: OrgId, user: UserId) -> Result<(bool, bool), ApiError> {
    for _ in 0..SYNC_ATTEMPTS {
        let Some(item) = s.store.get(&keys::organization(org)).await? else { return Ok((false, false)) };
        let mut record: crate::orgs::Organization = item.record()?;
        if !record.admins.contains(&user) {
            return Ok((false, false));
        }
        if record.admins.len() == 1 {
            return Ok((false, true));
        }
        record.admins.retain(|a| *a != user);
        let mut changed = Item::from_record(keys::organization(org), &record)?;
        changed.version = item.version;
        match s.store.put(Put::new(changed).if_unchanged()).await {
            Ok(_) => return Ok((true, false)),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("the organization {org} kept changing")).into())
}

/// Ends `user`'s memberships in every account of `org` and revokes all their sessions.
///
/// # Errors
/// When the store fails.
pub async fn deprovision(s: &Services, org: OrgId, user: UserId) -> Result<Deprovisioned, ApiError> {
    // Suspended first: from here on no sign-in can open a session the rest would miss.
    suspend(s, org, user, true).await?;
    let mut out = Deprovisioned { user_id: Some(user), ..Deprovisioned::default() };
    (out.left_admins, out.kept_as_last_admin) = leave_admins(s, org, user).await?;
    let accounts =
        s.store.query_all(Query::partition(keys::org_partition(org)).begins_with(keys::ORG_ACCOUNT_PREFIX)).await?;
    for item in accounts {
        let Some(account): Option<AccountId> =
            item.key.sk.strip_prefix(keys::ORG_ACCOUNT_PREFIX).and_then(|a| a.parse().ok())
        else {
            continue;
        };
        // An account's keys outlive a member who leaves, but not one the directory removed:
        // a key they made on their way out must not keep their access.
        for key in tenancy::api_keys::list(s.store.as_ref(), account).await? {
            if key.created_by == user
                && key.revoked_at_ms.is_none()
                && tenancy::api_keys::revoke(s.store.as_ref(), account, key.id, s.clock.now_ms()).await?.is_some()
            {
                out.api_keys_revoked += 1;
            }
        }
        if tenancy::load_membership(s.store.as_ref(), account, user).await?.is_none() {
            continue;
        }
        if revoke(s, org, account, user).await? {
            out.left.push(account);
        } else {
            out.kept_as_last_owner.push(account);
        }
    }
    out.sessions_ended = session::revoke_all(s.store.as_ref(), user, None).await?;
    Ok(out)
}

/// Brings the directory user `id` and their memberships in line with the directory: links
/// them if they can be, grants and ends memberships, deprovisions an inactive user. Retries
/// when the user changed meanwhile; a user deleted meanwhile is left alone.
///
/// # Errors
/// When the store fails.
pub async fn sync_user(
    s: &Services,
    directory: &Directory,
    groups: &[DirectoryResource],
    id: ScimId,
    origin: &Origin,
) -> Result<(), ApiError> {
    let org = directory.org_id;
    for _ in 0..SYNC_ATTEMPTS {
        let Some(item) = s.store.get(&keys::scim_user(org, id)).await? else { return Ok(()) };
        let mut user: DirectoryResource = item.record()?;
        let before = user.clone();
        // A linked user who erased themselves (`DELETE /me`) is linked no more: their
        // address is free, and the next person to hold it is someone else.
        if let Some(linked) = user.user_id
            && users::by_id(s.store.as_ref(), linked).await?.is_none()
        {
            user.user_id = None;
            user.granted.clear();
        }
        if user.user_id.is_none() && user.active() {
            user.user_id = link(s, org, &user).await?;
        }
        let Some(user_id) = user.user_id else { return Ok(()) };
        if user.active() {
            suspend(s, org, user_id, false).await?;
            let want = desired(directory, groups, &user);
            let mut granted = BTreeMap::new();
            for (account, role) in &want {
                let managed = user.granted.contains_key(account);
                if grant(s, org, *account, user_id, *role, managed).await? {
                    granted.insert(*account, *role);
                }
            }
            for account in user.granted.keys().filter(|a| !want.contains_key(*a)) {
                revoke(s, org, *account, user_id).await?;
            }
            user.granted = granted;
        } else {
            let done = deprovision(s, org, user_id).await?;
            if before.active() || done.changed() {
                let event = NewEvent::new(Actor::Directory, AuditAction::ScimUserDeprovisioned, origin.clone())
                    .target(id)
                    .detail(serde_json::to_value(&done).unwrap_or_default());
                s.audit(AuditStream::Organization(org), event).await?;
            }
            user.granted.clear();
        }
        if user == before {
            return Ok(());
        }
        let mut changed = Item::from_record(keys::scim_user(org, id), &user)?;
        changed.version = item.version;
        match s.store.put(Put::new(changed).if_unchanged()).await {
            Ok(_) => return Ok(()),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    tracing::warn!(%org, scim_id = %id, "directory user kept changing; the next change syncs it");
    Ok(())
}

/// Syncs every user of the directory (after its settings changed).
///
/// # Errors
/// When the store fails.
pub async fn resync_all(s: &Services, directory: &Directory, origin: &Origin) -> Result<(), ApiError> {
    let groups = groups(s, directory.org_id).await?;
    for (user, _) in users_of(s, directory.org_id).await? {
        sync_user(s, directory, &groups, user.id, origin).await?;
    }
    Ok(())
}
