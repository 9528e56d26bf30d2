//! API keys, the account's audit log, and data exports (request and download).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditPage;
use shared::auth::api_keys::{self, ApiKey};
use shared::auth::hash_secret;
use shared::error::{ApiError, Problem};
use shared::exports::{Download, ExportRecord, ExportSubject};
use shared::http::{Json, PageParams, Path, Query, RequestContext, json_with_status};
use shared::id::{AccountId, ApiKeyId, ExportId};
use shared::services::Services;
use shared::tenancy::{Action, Role, Tenant, may_assign};

/// The longest API key name.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// A new API key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// A label ("CI deploys").
    pub name: String,
    /// What it may do: `admin`, `member`, `billing` or `read_only` (default `read_only`).
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
    scope.audit(&s, "api_key.created", Some(key.id.to_string()), ctx.origin(), json!({"role": role})).await?;
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
    scope.audit(&s, "api_key.revoked", Some(key_id.to_string()), ctx.origin(), json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's audit events, newest first.
#[utoipa::path(get, path = "/accounts/{account_id}/audit", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path), PageParams),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn account_audit(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Query(p): Query<PageParams>,
) -> Result<Json<AuditPage>, ApiError> {
    scope.require(Action::ReadAudit)?;
    let stream = format!("account:{}", scope.account_id());
    Ok(Json(shared::audit::page_for(s.store.as_ref(), &stream, &p).await?))
}

/// A started export.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExportStarted {
    /// The export; a link to it is emailed when it is ready.
    pub export_id: String,
}

/// Starts an export of all the account's data; the requester gets a download link by email.
#[utoipa::path(post, path = "/accounts/{account_id}/export", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 202, body = ExportStarted), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn export_account(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
) -> Result<Response, ApiError> {
    scope.require(Action::ExportData)?;
    let user = scope.require_user()?;
    let id = shared::exports::start(&s, ExportSubject::Account(scope.account_id()), user).await?;
    scope.audit(&s, "account.export_requested", Some(id.to_string()), ctx.origin(), json!({})).await?;
    Ok(json_with_status(StatusCode::ACCEPTED, &ExportStarted { export_id: id.to_string() }))
}

/// The download link's token.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct DownloadParams {
    /// The `token` of the emailed link.
    pub token: String,
}

fn no_export() -> ApiError {
    ApiError::Gone { code: "export_unavailable", detail: "the link is invalid or has expired".into() }
}

/// Downloads an export with the token of its emailed link (the link is the credential, so
/// it works from an email client): the JSON document, or a redirect to short-lived storage.
#[utoipa::path(get, path = "/exports/{export_id}", tag = "tenancy", params(("export_id" = String, Path), DownloadParams),
    responses((status = 200, description = "The export, JSON", content_type = "application/json"),
              (status = 302, description = "To the stored document"),
              (status = 410, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn download_export(
    State(s): State<Services>,
    Path(id): Path<ExportId>,
    Query(p): Query<DownloadParams>,
) -> Result<Response, ApiError> {
    let record: ExportRecord = {
        use shared::store::StoreExt as _;
        s.store.get_record(&shared::exports::key(id)).await?.ok_or_else(no_export)?
    };
    let presented = hash_secret(&p.token);
    let matches =
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), record.token_hash.as_bytes()).is_ok();
    if record.ready_at_ms.is_none() || record.token_hash.is_empty() || !matches {
        return Err(no_export());
    }
    match s.exports.download(id).await.map_err(ApiError::Unavailable)? {
        Download::Bytes(bytes) => {
            let mut res = bytes.into_response();
            let headers = res.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"export-{id}.json\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(res)
        }
        Download::Redirect(url) => Ok(Redirect::to(&url).into_response()),
        Download::Missing => Err(no_export()),
    }
}

/// The account's feature flags, evaluated (for the frontend).
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlagValues {
    /// Each flag: on or off, its variant, and why.
    #[schema(value_type = Object)]
    pub flags: std::collections::BTreeMap<String, shared::flags::Evaluation>,
}

/// The account's feature flags, evaluated for it.
#[utoipa::path(get, path = "/accounts/{account_id}/flags", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)), responses((status = 200, body = FlagValues)))]
pub(crate) async fn account_flags(
    State(s): State<Services>,
    Tenant(scope): Tenant,
) -> Result<Json<FlagValues>, ApiError> {
    scope.require(Action::ReadAccount)?;
    let flags = shared::flags::for_account(&s, scope.account_id()).await.map_err(ApiError::Unexpected)?;
    Ok(Json(FlagValues { flags }))
}
