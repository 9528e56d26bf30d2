//! The tenancy function: accounts (the tenant), memberships and roles, invitations, API
//! keys, organizations with their enterprise SSO settings, the account's audit log, soft
//! delete and restore, account data exports, and the account's outbound webhook endpoints.
//!
//! Every route under `/accounts/{account_id}` takes [`Tenant`]: the membership check of
//! [`shared::tenancy`] runs before the handler, and what the caller may do is asked of the
//! one permission table (`scope.require(Action::...)`).

pub mod api_keys;
pub mod audit;
pub mod domains;
pub mod exports;
pub mod flags;
pub mod invitations;
pub mod members;
pub mod orgs;
pub mod product_events;
pub mod saml;
pub mod scim;
pub mod webhooks;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::auth::AuthUser;
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Path, Query, RequestContext, json_with_status};
use shared::id::AccountId;
use shared::keys;
use shared::services::Services;
use shared::soft_delete::{self, RestoreError};
use shared::store::{Condition, Delete, Index, Put, Query as StoreQuery, TxOp};
use shared::tenancy::Caller;
use shared::tenancy::{self, Account, Action, Deleted, Membership, Role, Tenant, TenantScope, membership_item};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The longest account or organization name.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(utoipa::OpenApi)]
#[openapi(tags((name = "tenancy", description = "Accounts, members, invitations, API keys, organizations"),
    (name = "webhooks", description = "The account's webhook endpoints, their delivery logs, replays and test messages")))]
struct ApiDoc;

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_account, list_accounts))
        .routes(routes!(get_account, update_account, delete_account))
        .routes(routes!(restore_account))
        .routes(routes!(members::list_members))
        .routes(routes!(members::change_role, members::remove_member))
        .routes(routes!(members::leave))
        .routes(routes!(members::transfer_ownership))
        .routes(routes!(invitations::invite, invitations::list))
        .routes(routes!(invitations::revoke))
        .routes(routes!(invitations::resend))
        .routes(routes!(invitations::accept))
        .routes(routes!(api_keys::create_key, api_keys::list_keys))
        .routes(routes!(api_keys::revoke_key))
        .routes(routes!(audit::account_audit))
        .routes(routes!(flags::account_flags))
        .routes(routes!(product_events::record))
        .routes(routes!(exports::export_account))
        .routes(routes!(exports::download_export))
        .routes(routes!(orgs::create))
        .routes(routes!(orgs::get))
        .routes(routes!(orgs::attach))
        .routes(routes!(orgs::detach))
        .routes(routes!(orgs::add_admin))
        .routes(routes!(orgs::remove_admin))
        .routes(routes!(orgs::put_sso))
        .routes(routes!(saml::put_saml, saml::get_saml, saml::delete_saml))
        .routes(routes!(orgs::audit))
        .routes(routes!(domains::create, domains::list))
        .routes(routes!(domains::get, domains::update, domains::delete))
        .routes(routes!(domains::verify))
        .routes(routes!(domains::my_enrollments))
        .routes(routes!(domains::enroll))
        .routes(routes!(domains::list_join_requests))
        .routes(routes!(domains::approve_join_request))
        .routes(routes!(domains::decline_join_request))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::replay))
        .routes(routes!(webhooks::test))
        .routes(routes!(scim::directory::get, scim::directory::put, scim::directory::delete))
        .routes(routes!(scim::directory::rotate_token))
}

/// This function's routes, without the shared conventions (the local stack merges them):
/// the API description's and SCIM's.
pub fn routes(services: Services) -> axum::Router {
    shared::http::routes_of(openapi_router(), services.clone()).merge(scim::protocol::router().with_state(services))
}

/// This function's routes with the shared HTTP conventions: what Lambda serves. SCIM's
/// routes take the directory token, not a bearer credential of the API, so the API's rate
/// limits and idempotency keys (which key on that credential) are not layered on them.
pub fn app(services: Services) -> axum::Router {
    let settings = services.config.http.clone();
    let (routes, doc) = openapi_router().split_for_parts();
    let limited = shared::http::rate_limits::LimitedRoutes::of(&doc);
    let api = shared::http::guarded(routes.with_state(services.clone()), services.clone(), limited);
    shared::http::finish(api.merge(scim::protocol::router().with_state(services)), &settings)
}

/// This function's part of the OpenAPI document (SCIM's routes describe themselves).
pub fn api() -> utoipa::openapi::OpenApi {
    shared::http::api_of(openapi_router())
}

/// A trimmed name of 1 to [`MAX_NAME_CHARS`] printable characters.
///
/// # Errors
/// 422 `invalid_name`.
pub fn clean_name(name: &str) -> Result<String, ApiError> {
    let n = name.trim();
    if n.is_empty() || name.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            code: "invalid_name",
            detail: format!("a name is 1 to {MAX_NAME_CHARS} printable characters"),
        });
    }
    Ok(n.to_owned())
}

/// A role that can be granted to an API key or by single sign-on: every role but `owner`
/// (documentation only: the routes take `Role` and refuse `owner` themselves).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GrantableRole {
    /// Manages members, settings and billing.
    Admin,
    /// Works in the account.
    Member,
    /// Manages billing.
    Billing,
    /// Reads only.
    ReadOnly,
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
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
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
            TxOp::Put(Put::new(tenancy::account_item(&account)?).if_not_exists()),
            TxOp::Put(Put::new(membership_item(&membership)?).if_not_exists()),
            shared::product_events::lifecycle("account.created", account.id, Some(caller.user_id), now, &[], None)?,
        ])
        .await?;
    let event = NewEvent::new(Actor::User(caller.user_id), AuditAction::AccountCreated, ctx.origin())
        .detail(json!({"name": account.name}));
    shared::audit::logged_after_commit(s.audit(AuditStream::Account(account.id), event).await, "account created");
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
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
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
    let mut item = tenancy::account_item(&account)?;
    item.version = version;
    store
        .put(
            Put::new(item)
                .if_unchanged()
                .when(Condition::All(vec![Condition::VersionIs(version), Condition::Missing("deleted_at_ms".into())])),
        )
        .await?;
    let detail = json!({"name": req.name.is_some(), "require_mfa": req.require_mfa});
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::AccountUpdated, None, ctx.origin(), detail).await,
        AuditAction::AccountUpdated.as_str(),
    );
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
    // The subscription's cancellation goes out with the deletion (the job outbox).
    let cancel = s.jobs().stage(shared::jobs::Job::CancelForDeletedAccount { account_id: id }, None)?;
    let mut ops = tenancy::delete_account_ops(id, now, s.config.soft_delete.retention);
    ops.push(cancel.op());
    s.store.transact(ops).await?;
    s.jobs().dispatch(cancel).await;
    let retention = s.config.soft_delete.retention;
    let until = now + i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    let detail = json!({"restorable_until_ms": until});
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::AccountDeleted, None, ctx.origin(), detail).await,
        "account deleted",
    );
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
    let scope = tenancy::authorize(s.store.as_ref(), caller, account_id, Deleted::Allow).await?;
    shared::http::record_tenant(&account_id);
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
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::AccountRestored, None, ctx.origin(), json!({})).await,
        AuditAction::AccountRestored.as_str(),
    );
    let mut account: Account = item.record()?;
    account.deleted_at_ms = None;
    account.purge_after_ms = None;
    Ok(Json(AccountView { account, role: scope.role() }))
}
