//! API keys: machine access to one account, with a role (never owner); the secret is shown once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, RequestContext, json_with_status};
use shared::id::{AccountId, ApiKeyId};
use shared::services::Services;
use shared::tenancy::api_keys::{self, ApiKey};
use shared::tenancy::{Action, Role, Tenant, may_assign};

/// The longest API key name.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// A new API key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// A label ("CI deploys").
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    /// What it may do: `admin`, `member`, `billing` or `read_only` (default `read_only`).
    #[schema(value_type = Option<crate::GrantableRole>)]
    pub role: Option<Role>,
}

/// A created key: the secret is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKey,
    /// `Authorization: Bearer <secret>`. Store it now: it is never shown again.
    pub secret: String,
}

/// Creates an API key for the account.
#[utoipa::path(post, path = "/accounts/{account_id}/api-keys", tag = "tenancy", request_body = NewApiKey,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 201, body = CreatedApiKey), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn create_key(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(req): Json<NewApiKey>,
) -> Result<Response, ApiError> {
    scope.require(Action::ManageApiKeys)?;
    // A key is made by a person, who answers for it.
    let user = scope.require_user()?;
    let name = crate::clean_name(&req.name)?;
    let role = req.role.unwrap_or(Role::ReadOnly);
    if role == Role::Owner {
        return Err(ApiError::Invalid { code: "invalid_role", detail: "an API key cannot be an owner".into() });
    }
    if !may_assign(scope.role(), role) {
        return Err(ApiError::Forbidden);
    }
    let (key, secret) =
        api_keys::create(s.store.as_ref(), scope.account_id(), name, role, user, s.clock.now_ms()).await?;
    shared::audit::logged_after_commit(
        scope
            .audit(&s, AuditAction::ApiKeyCreated, Some(key.id.to_string()), ctx.origin(), json!({"role": role}))
            .await,
        AuditAction::ApiKeyCreated.as_str(),
    );
    Ok(json_with_status(StatusCode::CREATED, &CreatedApiKey { key, secret }))
}

/// The account's API keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    /// Every key, revoked ones marked.
    pub api_keys: Vec<ApiKey>,
}

/// Lists the account's API keys (never their secrets).
#[utoipa::path(get, path = "/accounts/{account_id}/api-keys", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)), responses((status = 200, body = ApiKeyList)))]
pub(crate) async fn list_keys(State(s): State<Services>, Tenant(scope): Tenant) -> Result<Json<ApiKeyList>, ApiError> {
    scope.require(Action::ManageApiKeys)?;
    Ok(Json(ApiKeyList { api_keys: api_keys::list(s.store.as_ref(), scope.account_id()).await? }))
}

/// Revokes an API key: it stops working at once.
#[utoipa::path(delete, path = "/accounts/{account_id}/api-keys/{key_id}", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn revoke_key(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, ApiKeyId)>,
) -> Result<StatusCode, ApiError> {
    let key_id = ids.1;
    scope.require(Action::ManageApiKeys)?;
    api_keys::revoke(s.store.as_ref(), scope.account_id(), key_id, s.clock.now_ms())
        .await?
        .ok_or(ApiError::NotFound)?;
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::ApiKeyRevoked, Some(key_id.to_string()), ctx.origin(), json!({})).await,
        AuditAction::ApiKeyRevoked.as_str(),
    );
    Ok(StatusCode::NO_CONTENT)
}
