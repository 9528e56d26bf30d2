//! Organizations: an optional umbrella over accounts that holds enterprise SSO settings.
//! The creator is its first admin; an account joins when an org admin who also owns the
//! account attaches it.
//!
//! - `ORG#<id>` / `ORG`: the [`Organization`];
//! - `ORG#<id>` / `ACCOUNT#<account>`: an attached account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::auth::AuthUser;
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, RequestContext, json_with_status};
use shared::id::{AccountId, OrgId, UserId};
use shared::keys;
use shared::secret::Secret;
use shared::services::Services;
use shared::store::{Item, Put, Query, StoreExt as _, TxOp};
use shared::tenancy::Caller;
use shared::tenancy::{self, Action, Deleted, Role, SsoConfig};

/// An organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its name.
    pub name: String,
    /// Who created it.
    pub created_by: UserId,
    /// When (Unix ms).
    pub created_at_ms: i64,
    /// Its admins.
    pub admins: Vec<UserId>,
    /// Enterprise SSO, once configured.
    #[serde(default)]
    pub sso: Option<SsoConfig>,
    /// SAML SSO, once configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<tenancy::saml_connection::SamlConfig>,
}

/// SSO settings as shown (no secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SsoView {
    /// The issuer.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// Allowed email domains.
    pub allowed_domains: Vec<String>,
    /// The account users join on first sign-in.
    pub jit_account_id: Option<String>,
    /// Their role there.
    pub jit_role: Role,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
}

/// An organization as its admins see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrgView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its admins (user ids).
    pub admins: Vec<String>,
    /// Its accounts.
    pub account_ids: Vec<String>,
    /// Its SSO settings.
    pub sso: Option<SsoView>,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
}

async fn org_view(s: &Services, org: &Organization) -> Result<OrgView, ApiError> {
    let items =
        s.store.query_all(Query::partition(keys::org_partition(org.id)).begins_with(keys::ORG_ACCOUNT_PREFIX)).await?;
    let account_ids =
        items.iter().filter_map(|i| i.key.sk.strip_prefix(keys::ORG_ACCOUNT_PREFIX).map(str::to_owned)).collect();
    Ok(OrgView {
        id: org.id.to_string(),
        name: org.name.clone(),
        admins: org.admins.iter().map(ToString::to_string).collect(),
        account_ids,
        sso: org.sso.as_ref().map(|c| SsoView {
            issuer: c.issuer.clone(),
            client_id: c.client_id.clone(),
            allowed_domains: c.allowed_domains.clone(),
            jit_account_id: c.jit_account_id.map(|a| a.to_string()),
            jit_role: c.jit_role,
            updated_at_ms: c.updated_at_ms,
        }),
        created_at_ms: org.created_at_ms,
    })
}

pub(crate) async fn record(
    s: &Services,
    org: OrgId,
    actor: UserId,
    action: AuditAction,
    ctx: &RequestContext,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let event = NewEvent::new(Actor::User(actor), action, ctx.origin()).target(org).detail(detail);
    s.audit(AuditStream::Organization(org), event).await?;
    Ok(())
}

/// An organization as an admin may change it; anyone else gets 404.
pub(crate) async fn load_as_admin(s: &Services, id: OrgId, user: UserId) -> Result<(Organization, u64), ApiError> {
    let item = s.store.get(&keys::organization(id)).await?.ok_or(ApiError::NotFound)?;
    let org: Organization = item.record()?;
    if !org.admins.contains(&user) {
        return Err(ApiError::NotFound);
    }
    Ok((org, item.version))
}

/// A new organization.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganization {
    /// Its name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
}

/// Creates an organization; the caller is its admin.
#[utoipa::path(post, path = "/organizations", tag = "tenancy", request_body = NewOrganization, security(("bearer" = [])),
    responses((status = 201, body = OrgView), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<NewOrganization>,
) -> Result<Response, ApiError> {
    let org = Organization {
        id: OrgId::new(),
        name: crate::clean_name(&req.name)?,
        created_by: caller.user_id,
        created_at_ms: s.clock.now_ms(),
        admins: vec![caller.user_id],
        sso: None,
        saml: None,
    };
    s.store.put(Put::new(Item::from_record(keys::organization(org.id), &org)?).if_not_exists()).await?;
    record(&s, org.id, caller.user_id, AuditAction::OrganizationCreated, &ctx, json!({})).await?;
    Ok(json_with_status(StatusCode::CREATED, &org_view(&s, &org).await?))
}

/// Reads an organization (its admins only).
#[utoipa::path(get, path = "/organizations/{org_id}", tag = "tenancy", security(("bearer" = [])),
    params(("org_id" = String, Path)),
    responses((status = 200, body = OrgView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(s): State<Services>,
    caller: AuthUser,
    Path(id): Path<OrgId>,
) -> Result<Json<OrgView>, ApiError> {
    let (org, _) = load_as_admin(&s, id, caller.user_id).await?;
    Ok(Json(org_view(&s, &org).await?))
}

/// An account to attach.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attach {
    /// An account the caller owns.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub account_id: String,
}

/// Attaches an account to the organization: the caller must be an org admin and own the
/// account.
#[utoipa::path(post, path = "/organizations/{org_id}/accounts", tag = "tenancy", request_body = Attach,
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = OrgView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "No account of the caller's has this id (`unknown_account`)",
               body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn attach(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(id): Path<OrgId>,
    Json(req): Json<Attach>,
) -> Result<Json<OrgView>, ApiError> {
    let (org, _) = load_as_admin(&s, id, caller.user_id).await?;
    // 404 is about the URL (the organization); an account named in the body that the caller
    // cannot see is a value the request got wrong.
    let unknown = || ApiError::Invalid { code: "unknown_account", detail: "no account of yours has this id".into() };
    let account_id: AccountId = req.account_id.parse().map_err(|_| unknown())?;
    let scope = tenancy::authorize(s.store.as_ref(), Caller::User(caller.clone()), account_id, Deleted::Refuse)
        .await
        .map_err(|e| if matches!(e, ApiError::NotFound) { unknown() } else { e })?;
    scope.require(Action::TransferOwnership)?;
    let (mut account, version) = tenancy::load_account(s.store.as_ref(), account_id).await?.ok_or_else(unknown)?;
    if let Some(current) = account.org_id
        && current != id
    {
        return Err(ApiError::Conflict {
            code: "in_another_organization",
            detail: "the account belongs to another organization".into(),
        });
    }
    account.org_id = Some(id);
    let mut item = tenancy::account_item(&account)?;
    item.version = version;
    let link = Item::new(keys::org_account(id, account_id)).with("account_id", account_id.to_string());
    s.store.transact(vec![TxOp::Put(Put::new(item).if_unchanged()), TxOp::Put(Put::new(link))]).await?;
    record(&s, id, caller.user_id, AuditAction::OrganizationAccountAttached, &ctx, json!({"account_id": account_id}))
        .await?;
    shared::audit::logged_after_commit(
        scope
            .audit(&s, AuditAction::AccountAttachedToOrganization, Some(id.to_string()), ctx.origin(), json!({}))
            .await,
        AuditAction::AccountAttachedToOrganization.as_str(),
    );
    Ok(Json(org_view(&s, &org).await?))
}

/// Detaches an account from the organization: an org admin, or the account's owner, may.
/// Its members stop being able to sign in through the organization's SSO into it.
#[utoipa::path(delete, path = "/organizations/{org_id}/accounts/{account_id}", tag = "tenancy",
    security(("bearer" = [])), params(("org_id" = String, Path), ("account_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn detach(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(ids): Path<(OrgId, AccountId)>,
) -> Result<StatusCode, ApiError> {
    let (id, account_id) = ids;
    let org_item = s.store.get(&keys::organization(id)).await?.ok_or(ApiError::NotFound)?;
    let org: Organization = org_item.record()?;
    let is_admin = org.admins.contains(&caller.user_id);
    let owns = match tenancy::load_membership(s.store.as_ref(), account_id, caller.user_id).await? {
        Some((m, _)) => tenancy::allows(m.role, Action::TransferOwnership),
        None => false,
    };
    if !is_admin && !owns {
        return Err(ApiError::NotFound);
    }
    let link = keys::org_account(id, account_id);
    if s.store.get(&link).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let (mut account, version) =
        tenancy::load_account(s.store.as_ref(), account_id).await?.ok_or(ApiError::NotFound)?;
    account.org_id = None;
    let mut item = tenancy::account_item(&account)?;
    item.version = version;
    s.store
        .transact(vec![TxOp::Put(Put::new(item).if_unchanged()), TxOp::Delete(shared::store::Delete::new(link))])
        .await?;
    record(&s, id, caller.user_id, AuditAction::OrganizationAccountDetached, &ctx, json!({"account_id": account_id}))
        .await?;
    forget_jit_account(&s, id, account_id).await?;
    crate::domains::forget_account(&s, id, account_id, caller.user_id, &ctx).await?;
    crate::scim::directory::forget_account(&s, id, account_id, caller.user_id, &ctx).await?;
    let event = NewEvent::new(Actor::User(caller.user_id), AuditAction::AccountDetachedFromOrganization, ctx.origin())
        .target(id);
    s.audit(AuditStream::Account(account_id), event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a detached account out of the SSO settings' just-in-time membership (OIDC and
/// SAML), so the organization's IdP stops adding people to it.
async fn forget_jit_account(s: &Services, id: OrgId, account_id: AccountId) -> Result<(), ApiError> {
    loop {
        let Some(item) = s.store.get(&keys::organization(id)).await? else { return Ok(()) };
        let mut org: Organization = item.record()?;
        let mut changed = false;
        if let Some(sso) = org.sso.as_mut().filter(|c| c.jit_account_id == Some(account_id)) {
            sso.jit_account_id = None;
            changed = true;
        }
        if let Some(saml) = org.saml.as_mut().filter(|c| c.jit_account_id == Some(account_id)) {
            saml.jit_account_id = None;
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        let mut next = Item::from_record(keys::organization(id), &org)?;
        next.version = item.version;
        match s.store.put(Put::new(next).if_unchanged()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_condition_failure() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Another admin.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    /// An existing user's id.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub user_id: String,
}

/// Makes another user an admin of the organization (org admins).
#[utoipa::path(post, path = "/organizations/{org_id}/admins", tag = "tenancy", request_body = NewAdmin,
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = OrgView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn add_admin(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(id): Path<OrgId>,
    Json(req): Json<NewAdmin>,
) -> Result<Json<OrgView>, ApiError> {
    let (mut org, version) = load_as_admin(&s, id, caller.user_id).await?;
    let user: UserId = req.user_id.parse().map_err(|_| invalid("invalid_user_id", "user_id is not a user id"))?;
    if shared::auth::users::by_id(s.store.as_ref(), user).await?.is_none() {
        return Err(invalid("unknown_user", "no such user"));
    }
    if !org.admins.contains(&user) {
        org.admins.push(user);
        let mut item = Item::from_record(keys::organization(id), &org)?;
        item.version = version;
        s.store.put(Put::new(item).if_unchanged()).await?;
        record(&s, id, caller.user_id, AuditAction::OrganizationAdminAdded, &ctx, json!({"user_id": user})).await?;
    }
    Ok(Json(org_view(&s, &org).await?))
}

/// Removes an admin of the organization (org admins; never the last one).
#[utoipa::path(delete, path = "/organizations/{org_id}/admins/{user_id}", tag = "tenancy",
    security(("bearer" = [])), params(("org_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn remove_admin(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(ids): Path<(OrgId, UserId)>,
) -> Result<StatusCode, ApiError> {
    let (id, user) = ids;
    let (mut org, version) = load_as_admin(&s, id, caller.user_id).await?;
    if !org.admins.contains(&user) {
        return Err(ApiError::NotFound);
    }
    if org.admins.len() == 1 {
        return Err(ApiError::Conflict {
            code: "last_admin",
            detail: "an organization keeps at least one admin".into(),
        });
    }
    org.admins.retain(|a| *a != user);
    let mut item = Item::from_record(keys::organization(id), &org)?;
    item.version = version;
    s.store.put(Put::new(item).if_unchanged()).await?;
    record(&s, id, caller.user_id, AuditAction::OrganizationAdminRemoved, &ctx, json!({"user_id": user})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organization's audit events, newest first (its admins): its settings, admins,
/// accounts, domain claims and their checks.
#[utoipa::path(get, path = "/organizations/{org_id}/audit", tag = "tenancy", operation_id = "organization_audit",
    security(("bearer" = [])), params(("org_id" = String, Path), shared::http::PageParams),
    responses((status = 200, body = shared::audit::AuditPage), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 400, description = "A cursor this server did not issue (`invalid_cursor`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn audit(
    State(s): State<Services>,
    caller: AuthUser,
    Path(id): Path<OrgId>,
    shared::http::Query(p): shared::http::Query<shared::http::PageParams>,
) -> Result<Json<shared::audit::AuditPage>, ApiError> {
    load_as_admin(&s, id, caller.user_id).await?;
    let stream = AuditStream::Organization(id);
    Ok(Json(shared::audit::page_for(s.store.as_ref(), stream, p.limit(), p.cursor()?).await?))
}

/// Enterprise OIDC settings.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoRequest {
    /// The IdP's issuer URL: `https`, on a public address (Groundwork fetches its discovery
    /// document and keys through the guarded client).
    #[schema(max_length = 500, pattern = "^https://[^\\s\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub issuer: String,
    /// The client id.
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    pub client_id: String,
    /// The client secret.
    #[schema(value_type = String, min_length = 1, max_length = 1000)]
    pub client_secret: Secret<String>,
    /// Email domains allowed to sign in (1 to 50).
    #[schema(min_items = 1, max_items = 50)]
    pub allowed_domains: Vec<String>,
    /// An account of the organization that users join on first sign-in.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub jit_account_id: Option<String>,
    /// Their role there (default `member`; never `owner`).
    #[schema(value_type = Option<crate::GrantableRole>)]
    pub jit_role: Option<Role>,
}

pub(crate) fn invalid(code: &'static str, detail: &str) -> ApiError {
    ApiError::Invalid { code, detail: detail.into() }
}

/// The account `raw` names, if it is one of the organization's (`field` names it in errors).
///
/// # Errors
/// 422 `invalid_account` when it is no account id or not the organization's; store failures.
pub(crate) async fn account_of(s: &Services, org: OrgId, raw: &str, field: &str) -> Result<AccountId, ApiError> {
    let account: AccountId =
        raw.parse().map_err(|_| invalid("invalid_account", &format!("{field} is not an account id")))?;
    if s.store.get(&keys::org_account(org, account)).await?.is_none() {
        return Err(invalid("invalid_account", &format!("{field} is not an account of this organization")));
    }
    Ok(account)
}

/// The issuer as stored: an `https` URL whose host is public (checked after DNS, and again
/// at every call: [`shared::outbound::check_configured`]); `http` to loopback only where
/// `GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK` allows it (tests).
async fn checked_issuer(s: &Services, issuer: &str) -> Result<String, ApiError> {
    let refused = |why: String| invalid("invalid_issuer", &format!("the issuer must be a public https URL: {why}"));
    if issuer.chars().count() > 500 || issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refused("at most 500 characters, no spaces".into()));
    }
    shared::outbound::check_configured(issuer, s.config.outbound).await.map_err(|r| refused(r.to_string()))?;
    Ok(issuer.trim_end_matches('/').to_owned())
}

/// The email domains an organization's single sign-on may speak for: 1 to 50 domain names,
/// no free or disposable mail domain, none another organization verified.
///
/// # Errors
/// 422 `invalid_domain`, `shared_mail_domain`; 409 `domain_claimed`; store failures.
pub(crate) async fn sso_domains(s: &Services, id: OrgId, allowed: &[String]) -> Result<Vec<String>, ApiError> {
    let mut domains = Vec::new();
    for d in allowed {
        let d = tenancy::domains::normalize(d)
            .map_err(|_| invalid("invalid_domain", "allowed_domains holds domain names like example.com"))?;
        if shared::auth::email_policy::is_free_mail(&d) {
            return Err(invalid(
                "shared_mail_domain",
                &format!("{d} is a free or disposable mail domain: its addresses belong to anyone"),
            ));
        }
        if tenancy::domains::owner(s.store.as_ref(), &d).await?.is_some_and(|holder| holder != id) {
            return Err(ApiError::Conflict {
                code: "domain_claimed",
                detail: format!("another organization verified {d}: only its single sign-on may sign its addresses in"),
            });
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    if domains.is_empty() || domains.len() > 50 {
        return Err(invalid("invalid_domain", "give 1 to 50 allowed domains"));
    }
    Ok(domains)
}

/// Just-in-time membership as requested: one of the organization's accounts, and a role
/// that is not `owner` (default `member`).
///
/// # Errors
/// 422 `invalid_role`, `invalid_account`; store failures.
pub(crate) async fn jit_rule(
    s: &Services,
    id: OrgId,
    account: Option<&str>,
    role: Option<Role>,
) -> Result<(Option<AccountId>, Role), ApiError> {
    let jit_role = role.unwrap_or(Role::Member);
    if jit_role == Role::Owner {
        return Err(invalid("invalid_role", "single sign-on cannot make owners"));
    }
    let jit_account_id = match account {
        None => None,
        Some(raw) => Some(account_of(s, id, raw, "jit_account_id").await?),
    };
    Ok((jit_account_id, jit_role))
}

/// Sets the organization's enterprise OIDC configuration.
#[utoipa::path(put, path = "/organizations/{org_id}/sso", tag = "tenancy", request_body = SsoRequest,
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = OrgView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "An allowed domain another organization verified (`domain_claimed`)", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "A value that does not fit, such as a free mail domain (`shared_mail_domain`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_sso(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(id): Path<OrgId>,
    Json(req): Json<SsoRequest>,
) -> Result<Json<OrgView>, ApiError> {
    let (mut org, version) = load_as_admin(&s, id, caller.user_id).await?;
    let issuer = checked_issuer(&s, &req.issuer).await?;
    if req.client_id.trim().is_empty() || req.client_id.chars().count() > 500 {
        return Err(invalid("invalid_client_id", "the client id is 1 to 500 characters"));
    }
    if req.client_secret.expose().is_empty() || req.client_secret.expose().chars().count() > 1000 {
        return Err(invalid("invalid_client_secret", "the client secret is 1 to 1000 characters"));
    }
    let domains = sso_domains(&s, id, &req.allowed_domains).await?;
    let (jit_account_id, jit_role) = jit_rule(&s, id, req.jit_account_id.as_deref(), req.jit_role).await?;
    org.sso = Some(SsoConfig {
        issuer,
        client_id: req.client_id.trim().to_owned(),
        client_secret: req.client_secret.expose().clone(),
        allowed_domains: domains,
        jit_account_id,
        jit_role,
        updated_at_ms: s.clock.now_ms(),
    });
    let mut item = Item::from_record(keys::organization(id), &org)?;
    item.version = version;
    s.store.put(Put::new(item).if_unchanged()).await?;
    let detail = json!({"issuer": req.issuer, "client_id": req.client_id});
    record(&s, id, caller.user_id, AuditAction::OrganizationSsoConfigured, &ctx, detail).await?;
    Ok(Json(org_view(&s, &org).await?))
}
