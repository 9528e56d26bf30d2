//! Invitations: an admin invites an email address with a role; the invitation carries a
//! single-use token (stored hashed, indexed at `INVITATION#<sha256>`), is emailed through
//! the job queue, and is accepted by a signed-in user whose address matches (unless the
//! inviter allowed any address). Revoked invitations are soft-deleted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::auth::users;
use shared::auth::{AuthUser, hash_secret, random_secret};
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Path, Query, RequestContext, json_with_status};
use shared::id::{AccountId, InvitationId, UserId};
use shared::jobs::Job;
use shared::keys;
use shared::mail::EmailAddress;
use shared::mail::templates::Email;
use shared::secret::Secret;
use shared::services::Services;
use shared::soft_delete;
use shared::store::{Condition, Delete, Item, Key, Put, StoreExt as _, TxOp};
use shared::tenancy::Caller;
use shared::tenancy::membership_lifecycle::{self, JoinedVia};
use shared::tenancy::{self, Action, Membership, Role, Tenant, TenantScope, load_membership, may_assign};

use crate::AccountView;

/// How long an invitation lasts.
pub const INVITATION_TTL_DAYS: u32 = 7;

/// An invitation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Invitation {
    /// Its id.
    #[schema(value_type = String)]
    pub id: InvitationId,
    /// The account.
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// Who is invited.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// The role they get.
    pub role: Role,
    /// Who invited (a user id or `api_key:<id>`).
    pub invited_by: String,
    /// When (Unix ms).
    pub created_at_ms: i64,
    /// Until when it can be accepted (Unix ms).
    pub expires_at_ms: i64,
    /// Whether a user with another address may accept it.
    pub allow_any_email: bool,
    /// When it was accepted (Unix ms).
    pub accepted_at_ms: Option<i64>,
    /// By whom.
    #[schema(value_type = Option<String>)]
    pub accepted_by: Option<UserId>,
    /// The hash of its current token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(ignore)]
    pub token_hash: String,
}

impl Invitation {
    fn public(&self) -> Self {
        Self { token_hash: String::new(), ..self.clone() }
    }
}

fn invitation_key(account: AccountId, id: InvitationId) -> Key {
    keys::invitation(account, id)
}

fn token_key(hash: &str) -> Key {
    keys::invitation_token(hash)
}

/// The token's item: it points at the invitation and outlives it by a while, so a late click
/// is told "expired" rather than "invalid".
fn token_item(inv: &Invitation, hash: &str) -> Item {
    Item::new(token_key(hash))
        .with("account_id", inv.account_id.to_string())
        .with("invitation_id", inv.id.to_string())
        .expiring_at(inv.expires_at_ms / 1000 + 30 * 86_400)
}

/// An invitation to send.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// Who to invite.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// The role they get (default `member`).
    pub role: Option<Role>,
    /// Let a user with another address accept it (default false).
    #[serde(default)]
    pub allow_any_email: bool,
}

/// The invitation email for `inv` with `token`, staged to go out with the change that
/// stores the token (see `shared::jobs::outbox`).
async fn stage_email(
    s: &Services,
    scope: &TenantScope,
    inv: &Invitation,
    token: &str,
) -> Result<shared::jobs::outbox::StagedJob, ApiError> {
    let inviter_name = match scope.caller() {
        Caller::User(u) => match users::by_id(s.store.as_ref(), u.user_id).await? {
            Some(user) => user.name.unwrap_or_else(|| user.email.to_string()),
            None => scope.account().name.clone(),
        },
        Caller::ApiKey(_) => scope.account().name.clone(),
    };
    let to = EmailAddress::parse(&inv.email).map_err(|e| ApiError::Unexpected(e.into()))?;
    let email = Email::Invitation {
        inviter_name,
        account_name: scope.account().name.clone(),
        role: inv.role.to_string(),
        link: format!("{}/invitations/accept?token={token}", s.config.server.app_url),
        expires_in_days: INVITATION_TTL_DAYS,
    };
    Ok(s.jobs().stage(Job::SendEmail { to, email }, None)?)
}

/// Live, pending invitations of the account (bounded: they expire).
async fn pending(s: &Services, account: AccountId) -> Result<Vec<(Invitation, u64)>, ApiError> {
    let now = s.clock.now_ms();
    let q = shared::store::Query::partition(keys::account_partition(account)).begins_with(keys::INVITATION_PREFIX);
    let items = s.store.query_all(q).await?;
    let mut out = Vec::new();
    for item in items.iter().filter(|i| !soft_delete::is_deleted(i)) {
        let inv: Invitation = item.record()?;
        if inv.accepted_at_ms.is_none() && inv.expires_at_ms > now {
            out.push((inv, item.version));
        }
    }
    Ok(out)
}

/// Whether the account has a seat for one more member: the plan's seats bound members plus
/// the `pending` invitations.
///
/// # Errors
/// 409 `seat_limit`.
async fn check_seats(s: &Services, account: AccountId, pending: usize) -> Result<(), ApiError> {
    let Some(seats) = s.entitlements(account).await?.limit("seats") else { return Ok(()) };
    let taken = tenancy::members(s.store.as_ref(), account).await?.len() + pending;
    if taken as u64 >= seats {
        return Err(ApiError::Conflict {
            code: "seat_limit",
            detail: format!("the plan allows {seats} members (pending invitations count): upgrade to add more"),
        });
    }
    Ok(())
}

/// 409 `seat_limit` unless `account` has a seat for one more member (pending invitations
/// hold theirs).
///
/// # Errors
/// 409 `seat_limit`; store failures.
pub(crate) async fn seat_available(s: &Services, account: AccountId) -> Result<(), ApiError> {
    check_seats(s, account, pending(s, account).await?.len()).await
}

/// Adds `user` to `account` with `role` when no invitation holds a seat for them (a join
/// through a verified domain): checks the seats, then writes the membership with
/// `extra` in one transaction, which also stages the seat sync and the `member.joined`
/// webhook (`event_id` deduplicates it) and records the `member.joined` product event
/// (`via: domain`).
///
/// # Errors
/// 409 `seat_limit` or `already_member`; store failures.
pub(crate) async fn add_member(
    s: &Services,
    account: AccountId,
    user: UserId,
    role: Role,
    event_id: String,
    extra: Vec<TxOp>,
) -> Result<(), ApiError> {
    check_seats(s, account, pending(s, account).await?.len()).await?;
    join(s, account, user, role, event_id, JoinedVia::Domain, extra).await
}

/// The membership write for `user` joining `account`: a removed member coming back replaces
/// the removed membership.
///
/// # Errors
/// 409 `already_member` when they are a live member.
async fn membership_put(
    s: &Services,
    account: AccountId,
    user: UserId,
    role: Role,
) -> Result<(Put, Membership), ApiError> {
    let existing = s.store.get(&keys::membership(account, user)).await?;
    let m = Membership { account_id: account, user_id: user, role, joined_at_ms: s.clock.now_ms() };
    let mut membership = tenancy::membership_item(&m)?;
    let put = match existing {
        Some(m) if !soft_delete::is_deleted(&m) => {
            return Err(ApiError::Conflict {
                code: "already_member",
                detail: "already a member of the account".into(),
            });
        }
        Some(m) => {
            membership.version = m.version;
            Put::new(membership).if_unchanged()
        }
        None => Put::new(membership).if_not_exists(),
    };
    Ok((put, m))
}

/// Joins `user` to `account` (see [`membership_lifecycle::join`]) with `extra` in the same
/// transaction.
///
/// # Errors
/// 409 `already_member`; 409 `conflict` when the membership or an `extra` item changed
/// meanwhile.
async fn join(
    s: &Services,
    account: AccountId,
    user: UserId,
    role: Role,
    event_id: String,
    via: JoinedVia,
    extra: Vec<TxOp>,
) -> Result<(), ApiError> {
    let (put, m) = membership_put(s, account, user, role).await?;
    if membership_lifecycle::join(s, put, &m, via, event_id, extra).await? {
        Ok(())
    } else {
        Err(shared::store::StoreError::ConditionFailed.into())
    }
}

/// Invites an email address with a role; the invitation is emailed.
#[utoipa::path(post, path = "/accounts/{account_id}/invitations", tag = "tenancy", request_body = NewInvitation,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 201, body = Invitation), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn invite(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(req): Json<NewInvitation>,
) -> Result<Response, ApiError> {
    scope.require(Action::ManageMembers)?;
    let email = EmailAddress::parse(&req.email)
        .map_err(|_| ApiError::Invalid { code: "invalid_email", detail: "not a valid email address".into() })?;
    let role = req.role.unwrap_or(Role::Member);
    if !may_assign(scope.role(), role) {
        return Err(ApiError::Forbidden);
    }
    let store = s.store.as_ref();
    if let Some(owner) = store.get(&keys::email_owner(&email)).await? {
        let user = owner.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse::<UserId>().ok());
        if let Some(user) = user
            && load_membership(store, scope.account_id(), user).await?.is_some()
        {
            return Err(ApiError::Conflict { code: "already_member", detail: "they are already a member".into() });
        }
    }
    let pending_now = pending(&s, scope.account_id()).await?;
    check_seats(&s, scope.account_id(), pending_now.len()).await?;
    if pending_now.iter().any(|(i, _)| i.email == email.as_str()) {
        return Err(ApiError::Conflict {
            code: "already_invited",
            detail: "an invitation to this address is pending: resend or revoke it".into(),
        });
    }
    let now = s.clock.now_ms();
    let token = random_secret()?;
    let inv = Invitation {
        id: InvitationId::new(),
        account_id: scope.account_id(),
        email: email.to_string(),
        role,
        invited_by: scope.caller().actor().stored().unwrap_or_default(),
        created_at_ms: now,
        expires_at_ms: now + i64::from(INVITATION_TTL_DAYS) * 86_400_000,
        allow_any_email: req.allow_any_email,
        accepted_at_ms: None,
        accepted_by: None,
        token_hash: hash_secret(&token),
    };
    // The invitation, its token and its email in one transaction: never an invitation whose
    // email is lost, or an email whose link does not work.
    let email = stage_email(&s, &scope, &inv, &token).await?;
    store
        .transact(vec![
            TxOp::Put(Put::new(Item::from_record(invitation_key(inv.account_id, inv.id), &inv)?).if_not_exists()),
            TxOp::Put(Put::new(token_item(&inv, &inv.token_hash)).if_not_exists()),
            email.op(),
            shared::product_events::lifecycle(
                "member.invited",
                inv.account_id,
                scope.user_id(),
                now,
                &[("role", json!(role))],
                None,
            )?,
        ])
        .await?;
    s.jobs().dispatch(email).await;
    let detail = json!({"role": role, "allow_any_email": inv.allow_any_email});
    let audited = scope.audit(&s, AuditAction::InvitationCreated, Some(inv.id.to_string()), ctx.origin(), detail).await;
    shared::audit::logged_after_commit(audited, "invitation created");
    Ok(json_with_status(StatusCode::CREATED, &inv.public()))
}

/// Pending invitations.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationList {
    /// Pending (not accepted, not expired, not revoked).
    pub invitations: Vec<Invitation>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// The account's pending invitations.
#[utoipa::path(get, path = "/accounts/{account_id}/invitations", tag = "tenancy", operation_id = "list_invitations", security(("bearer" = [])),
    params(("account_id" = String, Path), PageParams),
    responses((status = 200, body = InvitationList)))]
pub(crate) async fn list(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Query(p): Query<PageParams>,
) -> Result<Json<InvitationList>, ApiError> {
    scope.require(Action::ManageMembers)?;
    let now = s.clock.now_ms();
    let (all, next): (Vec<Invitation>, _) =
        tenancy::list(s.store.as_ref(), &scope, "INVITE", p.limit(), p.cursor()?).await?;
    let invitations =
        all.into_iter().filter(|i| i.accepted_at_ms.is_none() && i.expires_at_ms > now).map(|i| i.public()).collect();
    Ok(Json(InvitationList { invitations, next_cursor: next.map(|c| c.encode()) }))
}

async fn load_pending(s: &Services, scope: &TenantScope, id: InvitationId) -> Result<(Invitation, u64), ApiError> {
    let (inv, version): (Invitation, u64) =
        tenancy::get(s.store.as_ref(), scope, "INVITE", &id.to_string()).await?.ok_or(ApiError::NotFound)?;
    if inv.accepted_at_ms.is_some() {
        return Err(ApiError::Conflict { code: "invitation_accepted", detail: "it was accepted already".into() });
    }
    Ok((inv, version))
}

/// Revokes an invitation.
#[utoipa::path(delete, path = "/accounts/{account_id}/invitations/{invitation_id}", tag = "tenancy",
    security(("bearer" = [])), params(("account_id" = String, Path), ("invitation_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn revoke(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, InvitationId)>,
) -> Result<StatusCode, ApiError> {
    let id = ids.1;
    scope.require(Action::ManageMembers)?;
    let (inv, version) = load_pending(&s, &scope, id).await?;
    let retention = s.config.soft_delete.retention;
    let mark = soft_delete::mark_deleted(invitation_key(inv.account_id, id), s.clock.now_ms(), retention);
    s.store
        .transact(vec![
            TxOp::Update(
                mark.when(Condition::All(vec![
                    Condition::VersionIs(version),
                    Condition::Missing("deleted_at_ms".into()),
                ])),
            ),
            TxOp::Delete(Delete::new(token_key(&inv.token_hash))),
        ])
        .await?;
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::InvitationRevoked, Some(id.to_string()), ctx.origin(), json!({})).await,
        AuditAction::InvitationRevoked.as_str(),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Sends an invitation again with a new link (the old one stops working) and a new expiry.
#[utoipa::path(post, path = "/accounts/{account_id}/invitations/{invitation_id}/resend", tag = "tenancy",
    security(("bearer" = [])), params(("account_id" = String, Path), ("invitation_id" = String, Path)),
    responses((status = 200, body = Invitation), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn resend(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, InvitationId)>,
) -> Result<Json<Invitation>, ApiError> {
    let id = ids.1;
    scope.require(Action::ManageMembers)?;
    let (mut inv, version) = load_pending(&s, &scope, id).await?;
    if !may_assign(scope.role(), inv.role) {
        return Err(ApiError::Forbidden);
    }
    let old_hash = std::mem::take(&mut inv.token_hash);
    let token = random_secret()?;
    inv.token_hash = hash_secret(&token);
    inv.expires_at_ms = s.clock.now_ms() + i64::from(INVITATION_TTL_DAYS) * 86_400_000;
    let mut item = Item::from_record(invitation_key(inv.account_id, id), &inv)?;
    item.version = version;
    let email = stage_email(&s, &scope, &inv, &token).await?;
    s.store
        .transact(vec![
            TxOp::Put(Put::new(item).if_unchanged()),
            TxOp::Delete(Delete::new(token_key(&old_hash))),
            TxOp::Put(Put::new(token_item(&inv, &inv.token_hash)).if_not_exists()),
            email.op(),
        ])
        .await?;
    s.jobs().dispatch(email).await;
    let audited = scope.audit(&s, AuditAction::InvitationResent, Some(id.to_string()), ctx.origin(), json!({})).await;
    shared::audit::logged_after_commit(audited, "invitation resent");
    Ok(Json(inv.public()))
}

/// The token from an invitation email.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The `token` parameter of the link.
    #[schema(value_type = String)]
    pub token: Secret<String>,
}

fn invalid_invitation() -> ApiError {
    ApiError::BadRequest { code: "invalid_invitation", detail: "the invitation link is not valid".into() }
}

/// Accepts an invitation as the signed-in user: they become a member with the offered role.
#[utoipa::path(post, path = "/invitations/accept", tag = "tenancy", request_body = AcceptInvitation,
    security(("bearer" = [])),
    responses((status = 200, body = AccountView), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn accept(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<AcceptInvitation>,
) -> Result<Json<AccountView>, ApiError> {
    let store = s.store.as_ref();
    let hash = hash_secret(req.token.expose());
    let pointer = store.get(&token_key(&hash)).await?.ok_or_else(invalid_invitation)?;
    let field = |name: &str| pointer.data.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let account_id: AccountId = field("account_id").and_then(|v| v.parse().ok()).ok_or_else(invalid_invitation)?;
    let id: InvitationId = field("invitation_id").and_then(|v| v.parse().ok()).ok_or_else(invalid_invitation)?;
    // The token is the capability: it names the account, so no membership check applies.
    let item = store.get(&invitation_key(account_id, id)).await?.ok_or_else(invalid_invitation)?;
    if soft_delete::is_deleted(&item) {
        return Err(ApiError::Gone { code: "invitation_revoked", detail: "the invitation was revoked".into() });
    }
    let mut inv: Invitation = item.record()?;
    if inv.token_hash != hash {
        return Err(invalid_invitation());
    }
    if inv.accepted_at_ms.is_some() {
        return Err(ApiError::Conflict { code: "invitation_accepted", detail: "it was accepted already".into() });
    }
    let now = s.clock.now_ms();
    if inv.expires_at_ms <= now {
        return Err(ApiError::Gone { code: "invitation_expired", detail: "ask for a new invitation".into() });
    }
    let user = users::by_id(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    // Only a proven address claims an invitation sent to it.
    let addressed_to_caller = user.email_verified && user.email.as_str().eq_ignore_ascii_case(&inv.email);
    if !(inv.allow_any_email || addressed_to_caller) {
        return Err(ApiError::ForbiddenBecause {
            code: "invitation_for_another_email",
            detail: "the invitation was sent to another address: sign in with that one".into(),
        });
    }
    let (account, _) = tenancy::load_account(store, account_id).await?.ok_or_else(invalid_invitation)?;
    if account.deleted_at_ms.is_some() {
        return Err(ApiError::Conflict { code: "account_deleted", detail: "the account was deleted".into() });
    }
    inv.accepted_at_ms = Some(now);
    inv.accepted_by = Some(caller.user_id);
    let mut inv_item = Item::from_record(invitation_key(account_id, id), &inv)?;
    inv_item.version = item.version;
    // The invitation held the seat: no seat check.
    let extra = vec![TxOp::Put(Put::new(inv_item).if_unchanged()), TxOp::Delete(Delete::new(token_key(&hash)))];
    join(&s, account_id, caller.user_id, inv.role, format!("member-joined-{id}"), JoinedVia::Invitation, extra).await?;
    let event = NewEvent::new(Actor::User(caller.user_id), AuditAction::InvitationAccepted, ctx.origin())
        .target(id)
        .detail(json!({"role": inv.role}));
    shared::audit::logged_after_commit(s.audit(AuditStream::Account(account_id), event).await, "invitation accepted");
    Ok(Json(AccountView { account, role: inv.role }))
}
