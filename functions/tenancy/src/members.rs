//! Members and roles: listing, role changes, removal, leaving, and ownership transfer. The
//! last owner can neither leave nor be demoted: each change that could remove an owner
//! checks, in the same transaction, that another owner's membership is unchanged.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::users;
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Path, Query, RequestContext};
use shared::id::{AccountId, UserId};

use shared::services::Services;

use shared::store::{Put, TxOp};
use shared::tenancy::membership_lifecycle;
use shared::tenancy::{self, Action, Membership, Role, Tenant, load_membership, may_assign, membership_item};

use crate::AccountView;

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
pub(crate) async fn list_members(
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
pub(crate) async fn other_owner_check(s: &Services, account: AccountId, leaving: UserId) -> Result<TxOp, ApiError> {
    membership_lifecycle::other_owner(s, account, leaving).await?.ok_or_else(|| ApiError::Conflict {
        code: "last_owner",
        detail: "an account needs an owner: transfer ownership or make someone else an owner first".into(),
    })
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
pub(crate) async fn change_role(
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
        ops.push(other_owner_check(&s, scope.account_id(), user_id).await?);
    }
    m.role = req.role;
    let mut item = membership_item(&m)?;
    item.version = version;
    ops.push(TxOp::Put(Put::new(item).if_unchanged()));
    store.transact(ops).await?;
    let detail = json!({"from": from, "to": m.role});
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::MemberRoleChanged, Some(user_id.to_string()), ctx.origin(), detail).await,
        AuditAction::MemberRoleChanged.as_str(),
    );
    let user = users::by_id(store, user_id).await?;
    Ok(Json(MemberView {
        user_id: user_id.to_string(),
        email: user.as_ref().map(|u| u.email.to_string()),
        name: user.and_then(|u| u.name),
        role: m.role,
        joined_at_ms: m.joined_at_ms,
    }))
}

/// Ends `m` (read at `version`) in its account; an owner only while another owner stays.
///
/// # Errors
/// 409 `last_owner`; 409 `conflict` when the members changed meanwhile.
pub(crate) async fn end_membership(s: &Services, m: &Membership, version: u64) -> Result<(), ApiError> {
    let owner_check =
        if m.role == Role::Owner { Some(other_owner_check(s, m.account_id, m.user_id).await?) } else { None };
    if membership_lifecycle::end(s, m.account_id, m.user_id, version, owner_check).await? {
        Ok(())
    } else {
        Err(shared::store::StoreError::ConditionFailed.into())
    }
}

/// Removes a member. Admins remove anyone but owners; the last owner cannot be removed.
#[utoipa::path(delete, path = "/accounts/{account_id}/members/{user_id}", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn remove_member(
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
    end_membership(&s, &m, version).await?;
    let detail = json!({"role": m.role});
    let audited = scope.audit(&s, AuditAction::MemberRemoved, Some(user_id.to_string()), ctx.origin(), detail).await;
    shared::audit::logged_after_commit(audited, "member removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Leaves an account (the last owner cannot).
#[utoipa::path(post, path = "/accounts/{account_id}/leave", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 204), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn leave(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
) -> Result<StatusCode, ApiError> {
    let user = scope.require_user()?;
    let (m, version) = load_membership(s.store.as_ref(), scope.account_id(), user).await?.ok_or(ApiError::NotFound)?;
    end_membership(&s, &m, version).await?;
    let audited =
        scope.audit(&s, AuditAction::MemberLeft, Some(user.to_string()), ctx.origin(), json!({"role": m.role})).await;
    shared::audit::logged_after_commit(audited, "member left");
    Ok(StatusCode::NO_CONTENT)
}

/// Who becomes the owner.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// A current member.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub user_id: String,
}

/// Hands ownership to another member; the caller becomes an admin.
#[utoipa::path(post, path = "/accounts/{account_id}/transfer-ownership", tag = "tenancy", request_body = Transfer,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn transfer_ownership(
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
