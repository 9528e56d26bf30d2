//! The tenancy function: accounts (the tenant), memberships and roles, invitations, API
//! keys, organizations with their enterprise SSO settings, the account's audit log, soft
//! delete and restore, and account data exports.
//!
//! Every route under `/accounts/{account_id}` takes [`Tenant`]: the membership check of
//! [`shared::tenancy`] runs before the handler, and what the caller may do is asked of the
//! one permission table (`scope.require(Action::...)`).

pub mod api_keys;
pub mod audit;
pub mod exports;
pub mod flags;
pub mod invitations;
pub mod orgs;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::auth::AuthUser;
use shared::auth::users;
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Path, Query, RequestContext, json_with_status};
use shared::id::{AccountId, UserId};
use shared::keys;
use shared::services::Services;
use shared::soft_delete::{self, RestoreError};
use shared::store::{Condition, Delete, Index, Item, Put, Query as StoreQuery, TxOp};
use shared::tenancy::Caller;
use shared::tenancy::{
    self, Account, Action, Deleted, Membership, Role, Tenant, TenantScope, load_membership, may_assign, membership_item,
};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The longest account or organization name.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(utoipa::OpenApi)]
#[openapi(tags((name = "tenancy", description = "Accounts, members, invitations, API keys, organizations")))]
struct ApiDoc;

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_account, list_accounts))
        .routes(routes!(get_account, update_account, delete_account))
        .routes(routes!(restore_account))
        .routes(routes!(list_members))
        .routes(routes!(change_role, remove_member))
        .routes(routes!(leave))
        .routes(routes!(transfer_ownership))
        .routes(routes!(invitations::invite, invitations::list))
        .routes(routes!(invitations::revoke))
        .routes(routes!(invitations::resend))
        .routes(routes!(invitations::accept))
        .routes(routes!(api_keys::create_key, api_keys::list_keys))
        .routes(routes!(api_keys::revoke_key))
        .routes(routes!(audit::account_audit))
        .routes(routes!(flags::account_flags))
        .routes(routes!(exports::export_account))
        .routes(routes!(exports::download_export))
        .routes(routes!(orgs::create))
        .routes(routes!(orgs::get))
        .routes(routes!(orgs::attach))
        .routes(routes!(orgs::detach))
        .routes(routes!(orgs::add_admin))
        .routes(routes!(orgs::remove_admin))
        .routes(routes!(orgs::put_sso))
}

shared::function_routes!();

/// A trimmed name of 1 to [`MAX_NAME_CHARS`] printable characters.
///
/// # Errors
/// 422 `invalid_name`.
pub fn clean_name(name: &str) -> Result<String, ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            code: "invalid_name",
            detail: format!("a name is 1 to {MAX_NAME_CHARS} printable characters"),
        });
    }
    Ok(n.to_owned())
}

/// An account as its members see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The account.
    #[serde(flatten)]
    pub account: Account,
    /// The caller's role in it.
    pub role: Role,
}

fn view(scope: &TenantScope) -> AccountView {
    AccountView { account: scope.account().clone(), role: scope.role() }
}

/// A new account.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Its name.
    pub name: String,
}

/// Creates an account; the caller becomes its owner.
#[utoipa::path(post, path = "/accounts", tag = "tenancy", request_body = CreateAccount, security(("bearer" = [])),
    responses((status = 201, body = AccountView), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_account(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<CreateAccount>,
) -> Result<Response, ApiError> {
    let name = clean_name(&req.name)?;
    let now = s.clock.now_ms();
    let account = Account {
        id: AccountId::new(),
        name,
        created_by: caller.user_id,
        created_at_ms: now,
        org_id: None,
        require_mfa: false,
        deleted_at_ms: None,
        purge_after_ms: None,
    };
    let membership =
        Membership { account_id: account.id, user_id: caller.user_id, role: Role::Owner, joined_at_ms: now };
    s.store
        .transact(vec![
            TxOp::Put(Put::new(Item::from_record(keys::account(account.id), &account)?).if_not_exists()),
            TxOp::Put(Put::new(membership_item(&membership)?).if_not_exists()),
        ])
        .await?;
    let event = NewEvent::new(Actor::User(caller.user_id), AuditAction::AccountCreated, ctx.origin())
        .detail(json!({"name": account.name}));
    s.audit(AuditStream::Account(account.id), event).await?;
    Ok(json_with_status(StatusCode::CREATED, &AccountView { account, role: Role::Owner }))
}

/// A page of the caller's accounts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountList {
    /// The accounts, in the order they were created.
    pub accounts: Vec<AccountView>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// The caller's accounts (live ones, with the caller's role in each).
#[utoipa::path(get, path = "/accounts", tag = "tenancy", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = AccountList)))]
async fn list_accounts(
    State(s): State<Services>,
    caller: AuthUser,
    Query(p): Query<PageParams>,
) -> Result<Json<AccountList>, ApiError> {
    let store = s.store.as_ref();
    let q = StoreQuery::index(Index::Gsi1, keys::memberships_of(caller.user_id)).limit(p.limit()).after(p.cursor()?);
    let page = store.query(q).await?;
    let mut accounts = Vec::new();
    for item in page.items.iter().filter(|i| !soft_delete::is_deleted(i)) {
        let m: Membership = item.record()?;
        if let Some((account, _)) = tenancy::load_account(store, m.account_id).await?
            && account.deleted_at_ms.is_none()
        {
            accounts.push(AccountView { account, role: m.role });
        }
    }
    Ok(Json(AccountList { accounts, next_cursor: page.next.map(|c| c.encode()) }))
}

/// Reads an account.
#[utoipa::path(get, path = "/accounts/{account_id}", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_account(Tenant(scope): Tenant) -> Result<Json<AccountView>, ApiError> {
    scope.require(Action::ReadAccount)?;
    Ok(Json(view(&scope)))
}

/// Changes to an account's settings.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// A new name.
    pub name: Option<String>,
    /// Require every member to sign in with a second factor.
    pub require_mfa: Option<bool>,
}

/// Updates an account's settings.
#[utoipa::path(patch, path = "/accounts/{account_id}", tag = "tenancy", request_body = UpdateAccount,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn update_account(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(req): Json<UpdateAccount>,
) -> Result<Json<AccountView>, ApiError> {
    scope.require(Action::UpdateAccount)?;
    let store = s.store.as_ref();
    let (mut account, version) = tenancy::load_account(store, scope.account_id()).await?.ok_or(ApiError::NotFound)?;
    if let Some(name) = &req.name {
        account.name = clean_name(name)?;
    }
    if let Some(require) = req.require_mfa {
        // Whoever turns it on must already meet it, or they lock themselves out.
        if require && !matches!(scope.caller(), Caller::User(u) if u.mfa) {
            return Err(ApiError::ForbiddenBecause {
                code: "mfa_required",
                detail: "sign in with two-factor authentication before requiring it of everyone".into(),
            });
        }
        account.require_mfa = require;
    }
    let mut item = Item::from_record(keys::account(account.id), &account)?;
    item.version = version;
    store
        .put(
            Put::new(item)
                .if_unchanged()
                .when(Condition::All(vec![Condition::VersionIs(version), Condition::Missing("deleted_at_ms".into())])),
        )
        .await?;
    let detail = json!({"name": req.name.is_some(), "require_mfa": req.require_mfa});
    scope.audit(&s, AuditAction::AccountUpdated, None, ctx.origin(), detail).await?;
    Ok(Json(AccountView { account, role: scope.role() }))
}

/// What a soft delete answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Deletion {
    /// The account.
    pub account_id: String,
    /// When it was deleted (Unix ms).
    pub deleted_at_ms: i64,
    /// Until when it can be restored (Unix ms).
    pub restorable_until_ms: i64,
}

/// Soft-deletes an account (owners): it disappears from every read, can be restored within
/// the retention window, and is purged with everything it holds after it. Its subscription
/// is marked for cancellation.
#[utoipa::path(delete, path = "/accounts/{account_id}", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = Deletion), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn delete_account(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
) -> Result<Json<Deletion>, ApiError> {
    scope.require(Action::DeleteAccount)?;
    let now = s.clock.now_ms();
    let id = scope.account_id();
    s.store.transact(tenancy::delete_account_ops(id, now, s.config.soft_delete.retention)).await?;
    let retention = s.config.soft_delete.retention;
    let until = now + i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    scope.audit(&s, AuditAction::AccountDeleted, None, ctx.origin(), json!({"restorable_until_ms": until})).await?;
    shared::jobs::enqueue(&s, shared::jobs::Job::CancelForDeletedAccount { account_id: id }).await?;
    Ok(Json(Deletion { account_id: id.to_string(), deleted_at_ms: now, restorable_until_ms: until }))
}

/// Restores a soft-deleted account within its retention window (owners).
#[utoipa::path(post, path = "/accounts/{account_id}/restore", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json")))]
async fn restore_account(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: Caller,
    Path(account_id): Path<AccountId>,
) -> Result<Json<AccountView>, ApiError> {
    let scope = tenancy::authorize(&s, caller, account_id, Deleted::Allow).await?;
    scope.require(Action::DeleteAccount)?;
    let item = match soft_delete::restore(s.store.as_ref(), &keys::account(account_id), s.clock.now_ms()).await {
        Ok(item) => item,
        Err(RestoreError::NotDeleted) => {
            return Err(ApiError::Conflict { code: "not_deleted", detail: "the account is not deleted".into() });
        }
        Err(RestoreError::Expired) => {
            return Err(ApiError::Gone { code: "retention_passed", detail: "the retention window has passed".into() });
        }
        Err(RestoreError::NotFound) => return Err(ApiError::NotFound),
        Err(RestoreError::Store(e)) => return Err(e.into()),
    };
    // Billing may already have acted on it; if not, nothing is to be cancelled any more.
    s.store.delete(Delete::new(keys::pending_cancellation(account_id))).await?;
    scope.audit(&s, AuditAction::AccountRestored, None, ctx.origin(), json!({})).await?;
    let mut account: Account = item.record()?;
    account.deleted_at_ms = None;
    account.purge_after_ms = None;
    Ok(Json(AccountView { account, role: scope.role() }))
}

/// A member as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// The user.
    pub user_id: String,
    /// Their email address.
    pub email: Option<String>,
    /// Their name.
    pub name: Option<String>,
    /// Their role.
    pub role: Role,
    /// When they joined (Unix ms).
    pub joined_at_ms: i64,
}

/// A page of members.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberList {
    /// The members.
    pub members: Vec<MemberView>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// The account's members with their roles.
#[utoipa::path(get, path = "/accounts/{account_id}/members", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path), PageParams),
    responses((status = 200, body = MemberList)))]
async fn list_members(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Query(p): Query<PageParams>,
) -> Result<Json<MemberList>, ApiError> {
    scope.require(Action::ReadMembers)?;
    let store = s.store.as_ref();
    let (members, next): (Vec<Membership>, _) = tenancy::list(store, &scope, "MEMBER", p.limit(), p.cursor()?).await?;
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        let user = users::by_id(store, m.user_id).await?;
        out.push(MemberView {
            user_id: m.user_id.to_string(),
            email: user.as_ref().map(|u| u.email.to_string()),
            name: user.and_then(|u| u.name),
            role: m.role,
            joined_at_ms: m.joined_at_ms,
        });
    }
    Ok(Json(MemberList { members: out, next_cursor: next.map(|c| c.encode()) }))
}

/// A condition that keeps another owner in place while an owner's membership changes, so
/// two owners demoting each other at once cannot leave the account without one.
async fn other_owner_check(s: &Services, scope: &TenantScope, leaving: UserId) -> Result<TxOp, ApiError> {
    let members = tenancy::members(s.store.as_ref(), scope.account_id()).await?;
    let other =
        members.iter().find(|m| m.role == Role::Owner && m.user_id != leaving).ok_or_else(|| ApiError::Conflict {
            code: "last_owner",
            detail: "an account needs an owner: transfer ownership or make someone else an owner first".into(),
        })?;
    let (_, version) = load_membership(s.store.as_ref(), scope.account_id(), other.user_id)
        .await?
        .ok_or(ApiError::Conflict { code: "conflict", detail: "the members changed; retry".into() })?;
    Ok(TxOp::Check(
        keys::membership(scope.account_id(), other.user_id),
        Condition::All(vec![Condition::VersionIs(version), Condition::Missing("deleted_at_ms".into())]),
    ))
}

/// A new role.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `owner`, `admin`, `member`, `billing` or `read_only`.
    pub role: Role,
}

/// Changes a member's role. Admins manage every role but owner; the last owner cannot be
/// demoted.
#[utoipa::path(patch, path = "/accounts/{account_id}/members/{user_id}", tag = "tenancy", request_body = RoleChange,
    security(("bearer" = [])), params(("account_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = MemberView), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn change_role(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, UserId)>,
    Json(req): Json<RoleChange>,
) -> Result<Json<MemberView>, ApiError> {
    let user_id = ids.1;
    scope.require(Action::ManageMembers)?;
    let store = s.store.as_ref();
    let (mut m, version) = load_membership(store, scope.account_id(), user_id).await?.ok_or(ApiError::NotFound)?;
    if !may_assign(scope.role(), m.role) || !may_assign(scope.role(), req.role) {
        return Err(ApiError::Forbidden);
    }
    let from = m.role;
    let mut ops = Vec::new();
    if from == Role::Owner && req.role != Role::Owner {
        ops.push(other_owner_check(&s, &scope, user_id).await?);
    }
    m.role = req.role;
    let mut item = membership_item(&m)?;
    item.version = version;
    ops.push(TxOp::Put(Put::new(item).if_unchanged()));
    store.transact(ops).await?;
    let detail = json!({"from": from, "to": m.role});
    scope.audit(&s, AuditAction::MemberRoleChanged, Some(user_id.to_string()), ctx.origin(), detail).await?;
    let user = users::by_id(store, user_id).await?;
    Ok(Json(MemberView {
        user_id: user_id.to_string(),
        email: user.as_ref().map(|u| u.email.to_string()),
        name: user.and_then(|u| u.name),
        role: m.role,
        joined_at_ms: m.joined_at_ms,
    }))
}

async fn end_membership(s: &Services, scope: &TenantScope, m: &Membership, version: u64) -> Result<(), ApiError> {
    let mut ops = Vec::new();
    if m.role == Role::Owner {
        ops.push(other_owner_check(s, scope, m.user_id).await?);
    }
    let key = keys::membership(scope.account_id(), m.user_id);
    let mark = soft_delete::mark_deleted(key, s.clock.now_ms(), s.config.soft_delete.retention);
    ops.push(TxOp::Update(
        mark.when(Condition::All(vec![Condition::VersionIs(version), Condition::Missing("deleted_at_ms".into())])),
    ));
    s.store.transact(ops).await?;
    Ok(())
}

/// Removes a member. Admins remove anyone but owners; the last owner cannot be removed.
#[utoipa::path(delete, path = "/accounts/{account_id}/members/{user_id}", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn remove_member(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, UserId)>,
) -> Result<StatusCode, ApiError> {
    let user_id = ids.1;
    scope.require(Action::ManageMembers)?;
    let (m, version) =
        load_membership(s.store.as_ref(), scope.account_id(), user_id).await?.ok_or(ApiError::NotFound)?;
    if !may_assign(scope.role(), m.role) {
        return Err(ApiError::Forbidden);
    }
    end_membership(&s, &scope, &m, version).await?;
    scope
        .audit(&s, AuditAction::MemberRemoved, Some(user_id.to_string()), ctx.origin(), json!({"role": m.role}))
        .await?;
    shared::billing::seats_changed(&s, scope.account_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Leaves an account (the last owner cannot).
#[utoipa::path(post, path = "/accounts/{account_id}/leave", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 204), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn leave(State(s): State<Services>, ctx: RequestContext, Tenant(scope): Tenant) -> Result<StatusCode, ApiError> {
    let user = scope.require_user()?;
    let (m, version) = load_membership(s.store.as_ref(), scope.account_id(), user).await?.ok_or(ApiError::NotFound)?;
    end_membership(&s, &scope, &m, version).await?;
    scope.audit(&s, AuditAction::MemberLeft, Some(user.to_string()), ctx.origin(), json!({"role": m.role})).await?;
    shared::billing::seats_changed(&s, scope.account_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who becomes the owner.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// A current member.
    pub user_id: String,
}

/// Hands ownership to another member; the caller becomes an admin.
#[utoipa::path(post, path = "/accounts/{account_id}/transfer-ownership", tag = "tenancy", request_body = Transfer,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn transfer_ownership(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(req): Json<Transfer>,
) -> Result<Json<AccountView>, ApiError> {
    scope.require(Action::TransferOwnership)?;
    let me = scope.require_user()?;
    let target: UserId = req
        .user_id
        .parse()
        .map_err(|_| ApiError::Invalid { code: "invalid_user_id", detail: "user_id is not a user id".into() })?;
    if target == me {
        return Err(ApiError::Invalid { code: "same_user", detail: "you already own the account".into() });
    }
    let store = s.store.as_ref();
    let (mut theirs, their_version) = load_membership(store, scope.account_id(), target)
        .await?
        .ok_or(ApiError::Invalid { code: "not_a_member", detail: "ownership goes to a current member".into() })?;
    let (mut mine, my_version) = load_membership(store, scope.account_id(), me).await?.ok_or(ApiError::NotFound)?;
    let from = theirs.role;
    theirs.role = Role::Owner;
    mine.role = Role::Admin;
    let mut a = membership_item(&theirs)?;
    a.version = their_version;
    let mut b = membership_item(&mine)?;
    b.version = my_version;
    store.transact(vec![TxOp::Put(Put::new(a).if_unchanged()), TxOp::Put(Put::new(b).if_unchanged())]).await?;
    scope
        .audit(
            &s,
            AuditAction::AccountOwnershipTransferred,
            Some(target.to_string()),
            ctx.origin(),
            json!({"from": from}),
        )
        .await?;
    Ok(Json(AccountView { account: scope.account().clone(), role: Role::Admin }))
}
