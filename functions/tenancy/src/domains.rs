//! Verified domains (see [`shared::tenancy::domains`]): an organization's admins claim an
//! email domain, are shown the TXT record that proves it, and set what happens to people at
//! it once verified; those people see the account their domain offers and join it or ask to;
//! the account's admins approve or decline the requests.
//!
//! - `ACCOUNT#<account>` / `JOIN_REQUEST#<user>`: a [`JoinRequest`] (30 days).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::auth::{AuthUser, random_secret, users};
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Path, Query, RequestContext, json_with_status};
use shared::id::{AccountId, OrgId, UserId};
use shared::jobs::Job;
use shared::keys;
use shared::services::Services;
use shared::store::{Condition, Delete, Item, Put, Query as StoreQuery, StoreExt as _, TxOp};
use shared::tenancy::domains::{self, DomainClaim, DomainStatus, EnrollmentMode, Unclaimable};
use shared::tenancy::{self, Action, Role, Tenant, may_assign};

use crate::AccountView;
use crate::orgs::{load_as_admin, record};

/// How long a request to join waits for an admin.
pub const JOIN_REQUEST_TTL_DAYS: i64 = 30;

/// The DNS record that proves a claim.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerificationRecord {
    /// Always `TXT`.
    #[serde(rename = "type")]
    pub record_type: &'static str,
    /// Its name (fully qualified; some DNS consoles want only the part before the domain).
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A domain claim as the organization's admins see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainView {
    /// The claim.
    #[serde(flatten)]
    pub claim: DomainClaim,
    /// The record to add at the domain's DNS provider.
    pub verification_record: VerificationRecord,
}

impl From<DomainClaim> for DomainView {
    fn from(claim: DomainClaim) -> Self {
        let verification_record =
            VerificationRecord { record_type: "TXT", name: claim.record_name(), value: claim.record_value() };
        Self { claim, verification_record }
    }
}

/// The organization's domains.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainList {
    /// Every claim, pending or verified (at most 50).
    pub domains: Vec<DomainView>,
}

/// A domain to claim, and what happens to people at it once it is verified.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// The domain, in its ASCII form (`example.com`; an internationalized name as its
    /// `xn--` labels), any case. Free mail and disposable mail domains are refused.
    #[schema(
        max_length = 253,
        pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
    )]
    pub domain: String,
    /// Default `manual_invitation`.
    pub enrollment_mode: Option<EnrollmentMode>,
    /// The organization's account automatic invitations and suggestions are for (required
    /// with those modes).
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub account_id: Option<String>,
    /// The role they get there (default `member`; never `owner`).
    #[schema(value_type = Option<crate::GrantableRole>)]
    pub role: Option<Role>,
    /// Refuse password and social sign-in for addresses at the domain: they sign in through
    /// the organization's single sign-on (which must be configured). Default false.
    pub require_sso: Option<bool>,
}

/// Changes to a domain's settings; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainUpdate {
    /// The enrollment mode.
    pub enrollment_mode: Option<EnrollmentMode>,
    /// The organization's account automatic invitations and suggestions are for; `null`
    /// clears it (with `manual_invitation` only).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub account_id: Option<Option<String>>,
    /// The role they get there (never `owner`).
    #[schema(value_type = Option<crate::GrantableRole>)]
    pub role: Option<Role>,
    /// Whether addresses at the domain must sign in through the organization's SSO.
    pub require_sso: Option<bool>,
}

/// A field that is present, `null` or not: absent is the outer `None` (`serde(default)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::Invalid { code, detail: detail.into() }
}

fn unclaimable(e: Unclaimable) -> ApiError {
    match e {
        Unclaimable::Malformed => invalid("invalid_domain", e.to_string()),
        Unclaimable::SharedMail => invalid("shared_mail_domain", e.to_string()),
    }
}

/// Applies and checks settings: automatic modes need an account of the organization, roles
/// stop short of owner, and requiring SSO needs SSO configured and, from a caller whose own
/// address is at the domain, a session opened through it (proof that it works, so turning
/// it on cannot lock them out).
async fn apply(
    s: &Services,
    caller: &AuthUser,
    org: &crate::orgs::Organization,
    claim: &mut DomainClaim,
    change: DomainUpdate,
) -> Result<(), ApiError> {
    if let Some(mode) = change.enrollment_mode {
        claim.enrollment_mode = mode;
    }
    if let Some(role) = change.role {
        if role == Role::Owner {
            return Err(invalid("invalid_role", "a domain cannot make owners"));
        }
        claim.role = role;
    }
    match &change.account_id {
        None => {}
        Some(None) => claim.account_id = None,
        Some(Some(raw)) => {
            let account: AccountId =
                raw.parse().map_err(|_| invalid("invalid_account", "account_id is not an account id"))?;
            claim.account_id = Some(account);
        }
    }
    if let Some(account) = claim.account_id
        && s.store.get(&keys::org_account(org.id, account)).await?.is_none()
    {
        return Err(invalid("invalid_account", "account_id is not an account of this organization"));
    }
    if claim.enrollment_mode != EnrollmentMode::ManualInvitation && claim.account_id.is_none() {
        return Err(invalid("account_required", "automatic invitations and suggestions need an account_id"));
    }
    if let Some(require) = change.require_sso {
        if require && org.sso.is_none() && org.saml.is_none() {
            return Err(invalid(
                "sso_not_configured",
                "configure the organization's SSO (OpenID Connect or SAML) before requiring it",
            ));
        }
        if require && !claim.require_sso {
            let store = s.store.as_ref();
            let me = users::by_id(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
            let session = shared::auth::session::load(store, caller.user_id, caller.session_id).await?;
            if domains::of_email(me.email.as_str()) == claim.domain && session.and_then(|s| s.sso_org) != Some(org.id) {
                return Err(ApiError::Conflict {
                    code: "sso_session_required",
                    detail: format!(
                        "your address is at {}: sign in through the organization's single sign-on (/auth/saml/{}/start or /auth/oidc/org-{}/start) before requiring it, so a misconfigured IdP cannot lock you out",
                        claim.domain, org.id, org.id
                    ),
                });
            }
        }
        claim.require_sso = require;
    }
    Ok(())
}

/// The organization's claim items (at most [`domains::MAX_PER_ORGANIZATION`]).
async fn claim_items(s: &Services, org: OrgId) -> Result<Vec<Item>, ApiError> {
    let q = StoreQuery::partition(keys::org_partition(org)).begins_with(keys::ORG_DOMAIN_PREFIX);
    Ok(s.store.query_all(q).await?)
}

/// A domain of `org` that requires its single sign-on, if any: removing the organization's
/// last SSO connection while one does would lock everyone at it out.
pub(crate) async fn requiring_sso(s: &Services, org: OrgId) -> Result<Option<String>, ApiError> {
    Ok(claims(s, org).await?.into_iter().find(|c| c.require_sso).map(|c| c.domain))
}

async fn claims(s: &Services, org: OrgId) -> Result<Vec<DomainClaim>, ApiError> {
    Ok(claim_items(s, org).await?.iter().map(Item::record).collect::<Result<_, _>>()?)
}

/// After `account` left the organization: the domains that offered it offer nothing now
/// (`manual_invitation`, no account), each change audited, rather than pointing at an
/// account their people can no longer join.
///
/// # Errors
/// Store failures.
pub(crate) async fn forget_account(
    s: &Services,
    org: OrgId,
    account: AccountId,
    actor: UserId,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    for item in claim_items(s, org).await? {
        let mut claim: DomainClaim = item.record()?;
        if claim.account_id != Some(account) {
            continue;
        }
        claim.account_id = None;
        claim.enrollment_mode = EnrollmentMode::ManualInvitation;
        claim.updated_at_ms = s.clock.now_ms();
        let mut updated = Item::from_record(item.key.clone(), &claim)?;
        updated.version = item.version;
        s.store.put(Put::new(updated).if_unchanged()).await?;
        let detail = json!({"domain": claim.domain, "enrollment_mode": claim.enrollment_mode, "account_id": null,
            "reason": "account_detached"});
        record(s, org, actor, AuditAction::OrganizationDomainUpdated, ctx, detail).await?;
    }
    Ok(())
}

/// One claim of the organization (its admins only), with its version.
async fn load(
    s: &Services,
    org: OrgId,
    user: UserId,
    domain: &str,
) -> Result<(crate::orgs::Organization, DomainClaim, u64), ApiError> {
    let (org, _) = load_as_admin(s, org, user).await?;
    let domain = domains::ascii_form(domain).map_err(|_| ApiError::NotFound)?;
    let item = s.store.get(&keys::org_domain(org.id, &domain)).await?.ok_or(ApiError::NotFound)?;
    Ok((org, item.record()?, item.version))
}

/// Claims a domain for the organization (its admins). The answer holds the TXT record to
/// add; a check runs at once, and again on `POST .../verify`.
#[utoipa::path(post, path = "/organizations/{org_id}/domains", tag = "tenancy", operation_id = "create_org_domain", request_body = NewDomain,
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 201, body = DomainView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Claimed already by this organization (`domain_exists`) or verified by another (`domain_claimed`), 50 claims already (`too_many_domains`), or `require_sso` asked by someone at the domain who did not sign in through the organization's SSO (`sso_session_required`)",
               body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Not a domain (`invalid_domain`), a free or disposable mail domain (`shared_mail_domain`), or settings that do not fit (`invalid_account`, `account_required`, `invalid_role`, `sso_not_configured`)",
               body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(id): Path<OrgId>,
    Json(req): Json<NewDomain>,
) -> Result<Response, ApiError> {
    let (org, _) = load_as_admin(&s, id, caller.user_id).await?;
    let domain = domains::claimable(&req.domain).map_err(unclaimable)?;
    match domains::owner(s.store.as_ref(), &domain).await? {
        Some(owner) if owner != id => {
            return Err(ApiError::Conflict {
                code: "domain_claimed",
                detail: "another organization verified this domain".into(),
            });
        }
        _ => {}
    }
    if claims(&s, id).await?.len() >= domains::MAX_PER_ORGANIZATION {
        return Err(ApiError::Conflict {
            code: "too_many_domains",
            detail: format!("an organization claims at most {} domains", domains::MAX_PER_ORGANIZATION),
        });
    }
    let now = s.clock.now_ms();
    let mut claim = DomainClaim {
        org_id: id,
        domain: domain.clone(),
        token: random_secret()?,
        status: DomainStatus::Pending,
        enrollment_mode: EnrollmentMode::ManualInvitation,
        account_id: None,
        role: Role::Member,
        require_sso: false,
        created_at_ms: now,
        updated_at_ms: now,
        verified_at_ms: None,
        last_check: None,
    };
    let settings = DomainUpdate {
        enrollment_mode: req.enrollment_mode,
        account_id: req.account_id.map(Some),
        role: req.role,
        require_sso: req.require_sso,
    };
    apply(&s, &caller, &org, &mut claim, settings).await?;
    // The claim and its first check in one transaction (the job outbox).
    let check = s.jobs().stage(Job::VerifyDomain { org_id: id, domain: domain.clone() }, None)?;
    let put = Put::new(Item::from_record(keys::org_domain(id, &domain), &claim)?).if_not_exists();
    match s.store.transact(vec![TxOp::Put(put), check.op()]).await {
        Ok(()) => {}
        Err(e) if e.is_condition_failure() => {
            return Err(ApiError::Conflict {
                code: "domain_exists",
                detail: "the organization claimed this domain already".into(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    s.jobs().dispatch(check).await;
    let detail = json!({"domain": domain, "enrollment_mode": claim.enrollment_mode, "require_sso": claim.require_sso});
    shared::audit::logged_after_commit(
        record(&s, id, caller.user_id, AuditAction::OrganizationDomainAdded, &ctx, detail).await,
        AuditAction::OrganizationDomainAdded.as_str(),
    );
    Ok(json_with_status(StatusCode::CREATED, &DomainView::from(claim)))
}

/// The organization's domain claims (its admins).
#[utoipa::path(get, path = "/organizations/{org_id}/domains", tag = "tenancy", operation_id = "list_org_domains",
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = DomainList), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(s): State<Services>,
    caller: AuthUser,
    Path(id): Path<OrgId>,
) -> Result<Json<DomainList>, ApiError> {
    load_as_admin(&s, id, caller.user_id).await?;
    Ok(Json(DomainList { domains: claims(&s, id).await?.into_iter().map(DomainView::from).collect() }))
}

/// One domain claim (the organization's admins).
#[utoipa::path(get, path = "/organizations/{org_id}/domains/{domain}", tag = "tenancy", operation_id = "get_org_domain",
    security(("bearer" = [])), params(("org_id" = String, Path), ("domain" = String, Path)),
    responses((status = 200, body = DomainView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(s): State<Services>,
    caller: AuthUser,
    Path(ids): Path<(OrgId, String)>,
) -> Result<Json<DomainView>, ApiError> {
    let (id, domain) = ids;
    let (_, claim, _) = load(&s, id, caller.user_id, &domain).await?;
    Ok(Json(claim.into()))
}

/// Changes a domain's enrollment mode, account, role or SSO requirement (the
/// organization's admins).
#[utoipa::path(patch, path = "/organizations/{org_id}/domains/{domain}", tag = "tenancy", operation_id = "update_org_domain",
    request_body = DomainUpdate, security(("bearer" = [])), params(("org_id" = String, Path), ("domain" = String, Path)),
    responses((status = 200, body = DomainView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`require_sso` asked by someone at the domain who did not sign in through the organization's SSO (`sso_session_required`)", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn update(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(ids): Path<(OrgId, String)>,
    Json(req): Json<DomainUpdate>,
) -> Result<Json<DomainView>, ApiError> {
    let (id, domain) = ids;
    let (org, mut claim, version) = load(&s, id, caller.user_id, &domain).await?;
    apply(&s, &caller, &org, &mut claim, req).await?;
    claim.updated_at_ms = s.clock.now_ms();
    let mut item = Item::from_record(keys::org_domain(id, &claim.domain), &claim)?;
    item.version = version;
    s.store.put(Put::new(item).if_unchanged()).await?;
    let detail = json!({"domain": claim.domain, "enrollment_mode": claim.enrollment_mode, "account_id": claim.account_id,
        "role": claim.role, "require_sso": claim.require_sso});
    record(&s, id, caller.user_id, AuditAction::OrganizationDomainUpdated, &ctx, detail).await?;
    Ok(Json(claim.into()))
}

/// Removes a domain claim (the organization's admins); a verified domain is released, so
/// another organization may verify it.
#[utoipa::path(delete, path = "/organizations/{org_id}/domains/{domain}", tag = "tenancy", operation_id = "delete_org_domain",
    security(("bearer" = [])), params(("org_id" = String, Path), ("domain" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(ids): Path<(OrgId, String)>,
) -> Result<StatusCode, ApiError> {
    let (id, domain) = ids;
    let (_, claim, version) = load(&s, id, caller.user_id, &domain).await?;
    let mut ops =
        vec![TxOp::Delete(Delete::new(keys::org_domain(id, &claim.domain)).when(Condition::VersionIs(version)))];
    if domains::owner(s.store.as_ref(), &claim.domain).await? == Some(id) {
        ops.push(TxOp::Delete(Delete::new(keys::domain_owner(&claim.domain))));
    }
    s.store.transact(ops).await?;
    record(&s, id, caller.user_id, AuditAction::OrganizationDomainRemoved, &ctx, json!({"domain": claim.domain}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a pending domain's TXT record again, from a job: 202, and the claim's `status`
/// and `last_check` tell the outcome moments later. A verified domain answers 200.
#[utoipa::path(post, path = "/organizations/{org_id}/domains/{domain}/verify", tag = "tenancy", operation_id = "verify_org_domain",
    security(("bearer" = [])), params(("org_id" = String, Path), ("domain" = String, Path)),
    responses((status = 202, body = DomainView), (status = 200, description = "Verified already", body = DomainView),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn verify(
    State(s): State<Services>,
    caller: AuthUser,
    Path(ids): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let (id, domain) = ids;
    let (_, claim, _) = load(&s, id, caller.user_id, &domain).await?;
    if claim.status == DomainStatus::Verified {
        return Ok(json_with_status(StatusCode::OK, &DomainView::from(claim)));
    }
    s.jobs().enqueue(Job::VerifyDomain { org_id: id, domain: claim.domain.clone() }).await?;
    Ok(json_with_status(StatusCode::ACCEPTED, &DomainView::from(claim)))
}

/// What a user's verified domain offers them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainEnrollment {
    /// The organization that verified the domain.
    #[schema(value_type = String)]
    pub org_id: OrgId,
    /// Its name.
    pub organization_name: String,
    /// The domain.
    pub domain: String,
    /// The account offered.
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// Its name.
    pub account_name: String,
    /// The role they would get.
    pub role: Role,
    /// `automatic_invitation` (joining is one call) or `automatic_suggestion` (the call
    /// asks, an admin approves).
    pub enrollment_mode: EnrollmentMode,
    /// When they asked to join (suggestions), if they did.
    pub requested_at_ms: Option<i64>,
    /// When an admin declined that request, if one did (they may ask again once it
    /// expires, 30 days after they asked).
    pub declined_at_ms: Option<i64>,
}

/// The caller's offers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainEnrollmentList {
    /// At most one: the domain of their verified address, if an organization verified it
    /// with an automatic mode and they are not a member of its account yet.
    pub enrollments: Vec<DomainEnrollment>,
}

/// The offer of the caller's verified domain, with their request to join if they made one.
async fn offer(
    s: &Services,
    user: UserId,
) -> Result<Option<(DomainEnrollment, DomainClaim, Option<JoinRequest>)>, ApiError> {
    let store = s.store.as_ref();
    let Some(me) = users::by_id(store, user).await? else { return Err(ApiError::Unauthenticated) };
    if !me.email_verified {
        return Ok(None);
    }
    let Some(claim) = domains::verified_for_email(store, me.email.as_str()).await? else { return Ok(None) };
    let Some(account_id) = claim.account_id else { return Ok(None) };
    if claim.enrollment_mode == EnrollmentMode::ManualInvitation
        || store.get(&keys::org_account(claim.org_id, account_id)).await?.is_none()
        || tenancy::load_membership(store, account_id, user).await?.is_some()
    {
        return Ok(None);
    }
    let Some((account, _)) = tenancy::load_account(store, account_id).await? else { return Ok(None) };
    if account.deleted_at_ms.is_some() {
        return Ok(None);
    }
    let org: Option<crate::orgs::Organization> = store.get_record(&keys::organization(claim.org_id)).await?;
    let Some(org) = org else { return Ok(None) };
    let request: Option<JoinRequest> = store.get_record(&keys::join_request(account_id, user)).await?;
    let request = request.filter(|r| r.expires_at_ms > s.clock.now_ms());
    let enrollment = DomainEnrollment {
        org_id: claim.org_id,
        organization_name: org.name,
        domain: claim.domain.clone(),
        account_id,
        account_name: account.name,
        role: claim.role,
        enrollment_mode: claim.enrollment_mode,
        requested_at_ms: request.as_ref().map(|r| r.requested_at_ms),
        declined_at_ms: request.as_ref().and_then(|r| r.declined_at_ms),
    };
    Ok(Some((enrollment, claim, request)))
}

/// What the caller's verified email domain offers: the account an organization invites
/// people at its verified domain to, or suggests they ask to join.
#[utoipa::path(get, path = "/me/domain-enrollments", tag = "tenancy", operation_id = "list_my_domain_enrollments", security(("bearer" = [])),
    responses((status = 200, body = DomainEnrollmentList)))]
pub(crate) async fn my_enrollments(
    State(s): State<Services>,
    caller: AuthUser,
) -> Result<Json<DomainEnrollmentList>, ApiError> {
    let enrollments = offer(&s, caller.user_id).await?.map(|(e, _, _)| e).into_iter().collect();
    Ok(Json(DomainEnrollmentList { enrollments }))
}

/// A request to join an account, waiting for one of its admins.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JoinRequest {
    /// The account.
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// Who asks.
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// The organization whose verified domain suggested it.
    #[schema(value_type = String)]
    pub org_id: OrgId,
    /// That domain.
    pub domain: String,
    /// The role approval gives.
    pub role: Role,
    /// When they asked (Unix ms).
    pub requested_at_ms: i64,
    /// Until when it waits (Unix ms).
    pub expires_at_ms: i64,
    /// When an admin declined it (Unix ms): it is kept until it expires, so the same user
    /// cannot ask again before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined_at_ms: Option<i64>,
}

/// Takes the caller's domain offer for `account_id`: with an automatic invitation they join
/// now (200, the account); with an automatic suggestion they ask to join (202, the request;
/// asking again changes nothing).
#[utoipa::path(post, path = "/me/domain-enrollments/{account_id}", tag = "tenancy", operation_id = "take_domain_enrollment", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, description = "Joined", body = AccountView),
              (status = 202, description = "Asked to join", body = JoinRequest),
              (status = 404, description = "Their domain offers no such account", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "No seat left on the account's plan (`seat_limit`), or their request was declined and has not expired (`join_request_declined`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn enroll(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(account_id): Path<AccountId>,
) -> Result<Response, ApiError> {
    let user = caller.user_id;
    let (offer, claim, request) =
        offer(&s, user).await?.filter(|(o, _, _)| o.account_id == account_id).ok_or(ApiError::NotFound)?;
    let stream = AuditStream::Account(account_id);
    if offer.enrollment_mode == EnrollmentMode::AutomaticInvitation {
        let event_id = format!("member-joined-domain-{account_id}-{user}");
        crate::invitations::add_member(&s, account_id, user, claim.role, event_id, Vec::new()).await?;
        let event = NewEvent::new(Actor::User(user), AuditAction::MemberJoinedViaDomain, ctx.origin())
            .target(user)
            .detail(json!({"role": claim.role, "organization": claim.org_id, "domain": claim.domain}));
        shared::audit::logged_after_commit(s.audit(stream, event).await, "member joined via domain");
        let (account, _) = tenancy::load_account(s.store.as_ref(), account_id).await?.ok_or(ApiError::NotFound)?;
        return Ok(json_with_status(StatusCode::OK, &AccountView { account, role: claim.role }));
    }
    match request {
        Some(r) if r.declined_at_ms.is_some() => {
            return Err(ApiError::Conflict {
                code: "join_request_declined",
                detail: "an admin declined your request to join: you may ask again once it expires".into(),
            });
        }
        // Asked already: the same request.
        Some(r) => return Ok(json_with_status(StatusCode::ACCEPTED, &r)),
        None => {}
    }
    let now = s.clock.now_ms();
    let request = JoinRequest {
        account_id,
        user_id: user,
        org_id: claim.org_id,
        domain: claim.domain.clone(),
        role: claim.role,
        requested_at_ms: now,
        expires_at_ms: now + JOIN_REQUEST_TTL_DAYS * 86_400_000,
        declined_at_ms: None,
    };
    let item =
        Item::from_record(keys::join_request(account_id, user), &request)?.expiring_at(request.expires_at_ms / 1000);
    // A lapsed request (expired, not yet swept) is replaced; the account's owners and admins
    // are told with the same commit (the job outbox).
    let emails = stage_join_request_emails(&s, &offer, &request).await?;
    let mut ops = vec![TxOp::Put(Put::new(item))];
    ops.extend(emails.iter().map(shared::jobs::outbox::StagedJob::op));
    s.store.transact(ops).await?;
    for email in emails {
        s.jobs().dispatch(email).await;
    }
    let event = NewEvent::new(Actor::User(user), AuditAction::JoinRequestCreated, ctx.origin())
        .target(user)
        .detail(json!({"role": claim.role, "domain": claim.domain}));
    shared::audit::logged_after_commit(s.audit(stream, event).await, "join request created");
    Ok(json_with_status(StatusCode::ACCEPTED, &request))
}

/// The email to each owner and admin of the account that `request` asks to join.
async fn stage_join_request_emails(
    s: &Services,
    offer: &DomainEnrollment,
    request: &JoinRequest,
) -> Result<Vec<shared::jobs::outbox::StagedJob>, ApiError> {
    let store = s.store.as_ref();
    let requester = users::by_id(store, request.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    let link = format!("{}/accounts/{}/join-requests", s.config.server.app_url, request.account_id);
    let mut staged = Vec::new();
    for member in tenancy::members(store, request.account_id).await? {
        if !tenancy::allows(member.role, Action::ManageMembers) {
            continue;
        }
        let Some(admin) = users::by_id(store, member.user_id).await? else { continue };
        let email = shared::mail::templates::Email::JoinRequested {
            requester: requester.name.clone().unwrap_or_else(|| requester.email.to_string()),
            email: requester.email.to_string(),
            account_name: offer.account_name.clone(),
            role: request.role.to_string(),
            link: link.clone(),
        };
        let key = format!("join-requested:{}:{}:{}", request.account_id, request.user_id, member.user_id);
        staged.push(s.jobs().stage(Job::SendEmail { to: admin.email, email }, Some(key))?);
    }
    Ok(staged)
}

/// A request to join as the account's admins see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JoinRequestView {
    /// The request.
    #[serde(flatten)]
    pub request: JoinRequest,
    /// The requester's address.
    pub email: String,
    /// Their name.
    pub name: Option<String>,
}

/// A page of requests to join.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JoinRequestList {
    /// Requests waiting (not expired), oldest first.
    pub join_requests: Vec<JoinRequestView>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// The account's waiting requests to join (admins: `manage_members`).
#[utoipa::path(get, path = "/accounts/{account_id}/join-requests", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path), PageParams),
    responses((status = 200, body = JoinRequestList), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 400, description = "A cursor this server did not issue (`invalid_cursor`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_join_requests(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Query(p): Query<PageParams>,
) -> Result<Json<JoinRequestList>, ApiError> {
    scope.require(Action::ManageMembers)?;
    let (all, next): (Vec<JoinRequest>, _) =
        tenancy::list(s.store.as_ref(), &scope, "JOIN_REQUEST", p.limit(), p.cursor()?).await?;
    let now = s.clock.now_ms();
    let mut join_requests = Vec::new();
    for request in all.into_iter().filter(|r| r.expires_at_ms > now && r.declined_at_ms.is_none()) {
        // An erased user's request has no one left to admit.
        if let Some(user) = users::by_id(s.store.as_ref(), request.user_id).await? {
            join_requests.push(JoinRequestView { email: user.email.to_string(), name: user.name, request });
        }
    }
    Ok(Json(JoinRequestList { join_requests, next_cursor: next.map(|c| c.encode()) }))
}

async fn load_request(s: &Services, account: AccountId, user: UserId) -> Result<(JoinRequest, u64), ApiError> {
    let item = s.store.get(&keys::join_request(account, user)).await?.ok_or(ApiError::NotFound)?;
    let request: JoinRequest = item.record()?;
    if request.expires_at_ms <= s.clock.now_ms() || request.declined_at_ms.is_some() {
        return Err(ApiError::NotFound);
    }
    Ok((request, item.version))
}

/// Approves a request to join: the user becomes a member with the role the domain offered
/// (admins: `manage_members`, and only roles they may grant).
#[utoipa::path(post, path = "/accounts/{account_id}/join-requests/{user_id}/approve", tag = "tenancy",
    security(("bearer" = [])), params(("account_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = tenancy::Membership), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "A member already (`already_member`) or no seat left (`seat_limit`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn approve_join_request(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, UserId)>,
) -> Result<Json<tenancy::Membership>, ApiError> {
    let user = ids.1;
    scope.require(Action::ManageMembers)?;
    let account = scope.account_id();
    let (request, version) = load_request(&s, account, user).await?;
    if !may_assign(scope.role(), request.role) {
        return Err(ApiError::Forbidden);
    }
    if users::by_id(s.store.as_ref(), user).await?.is_none() {
        s.store.delete(Delete::new(keys::join_request(account, user))).await?;
        return Err(ApiError::NotFound);
    }
    let taken = TxOp::Delete(Delete::new(keys::join_request(account, user)).when(Condition::VersionIs(version)));
    let event_id = format!("member-joined-request-{account}-{user}-{}", request.requested_at_ms);
    crate::invitations::add_member(&s, account, user, request.role, event_id, vec![taken]).await?;
    let detail = json!({"role": request.role, "domain": request.domain});
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::JoinRequestApproved, Some(user.to_string()), ctx.origin(), detail).await,
        AuditAction::JoinRequestApproved.as_str(),
    );
    let (membership, _) = tenancy::load_membership(s.store.as_ref(), account, user).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(membership))
}

/// Declines a request to join (admins: `manage_members`). The request is kept, declined,
/// until it expires, so the user cannot ask again before then.
#[utoipa::path(delete, path = "/accounts/{account_id}/join-requests/{user_id}", tag = "tenancy",
    security(("bearer" = [])), params(("account_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn decline_join_request(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, UserId)>,
) -> Result<StatusCode, ApiError> {
    let user = ids.1;
    scope.require(Action::ManageMembers)?;
    let account = scope.account_id();
    let (mut request, version) = load_request(&s, account, user).await?;
    request.declined_at_ms = Some(s.clock.now_ms());
    let mut item =
        Item::from_record(keys::join_request(account, user), &request)?.expiring_at(request.expires_at_ms / 1000);
    item.version = version;
    s.store.put(Put::new(item).if_unchanged()).await?;
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::JoinRequestDeclined, Some(user.to_string()), ctx.origin(), json!({})).await,
        AuditAction::JoinRequestDeclined.as_str(),
    );
    Ok(StatusCode::NO_CONTENT)
}
