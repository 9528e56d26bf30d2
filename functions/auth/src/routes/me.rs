//! The caller's profile, own audit log, data export and erasure (GDPR).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::audit::AuditPage;
use shared::auth::AuthUser;
use shared::auth::rate_limit::{self, LOGIN_PER_EMAIL};
use shared::auth::users::{self, User};
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Query, RequestContext};
use shared::secret::Secret;
use shared::services::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;
use crate::sessions::{self};

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me, erase_me))
        .routes(routes!(export_me))
        .routes(routes!(my_audit))
}

/// The caller's profile.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The user id.
    pub id: String,
    /// The email address.
    pub email: String,
    /// Whether it is confirmed.
    pub email_verified: bool,
    /// The display name.
    pub name: Option<String>,
    /// When the account was created (Unix ms).
    pub created_at_ms: i64,
}

impl From<&User> for Me {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.to_string(),
            email_verified: u.email_verified,
            name: u.name.clone(),
            created_at_ms: u.created_at_ms,
        }
    }
}

/// The caller's profile.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn get_me(State(s): State<Services>, caller: AuthUser) -> Result<Json<Me>, ApiError> {
    let user = users::by_id(s.store.as_ref(), caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    Ok(Json(Me::from(&user)))
}

/// Re-authentication for erasing the account.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The current password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret<String>,
}

/// Erases the caller (GDPR): personal fields are scrubbed (the record keeps only its id, the
/// pseudonym audit entries refer to), the address is released, memberships are removed and
/// every session ends. An account the caller alone owns is soft-deleted with them if nobody
/// else is in it; if others are, ownership must be handed over first (409 `sole_owner`).
#[utoipa::path(delete, path = "/me", tag = "auth", request_body = EraseRequest, security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn erase_me(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<EraseRequest>,
) -> Result<StatusCode, ApiError> {
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let (user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    // Counted before the password is tried (see `login`); a success takes it back.
    let attempt = rate_limit::claim(store, LOGIN_PER_EMAIL, user.email.as_str(), now).await?;
    let password_ok = match s.passwords.verify(&req.password, &user.password_hash).await {
        Ok(ok) => ok,
        Err(e) => {
            attempt.release(store).await?;
            return Err(e);
        }
    };
    if !password_ok {
        return Err(ApiError::Unauthenticated);
    }
    attempt.release(store).await?;
    shared::gdpr::erase_user(&s, &user, version, ctx.origin()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A started export.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExportStarted {
    /// The export; a link to it is emailed when it is ready.
    pub export_id: String,
}

/// Starts an export of everything about the caller (GDPR); the link arrives by email.
#[utoipa::path(post, path = "/me/export", tag = "auth", security(("bearer" = [])),
    responses((status = 202, body = ExportStarted), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn export_me(State(s): State<Services>, ctx: RequestContext, caller: AuthUser) -> Result<Response, ApiError> {
    let subject = shared::exports::ExportSubject::User(caller.user_id);
    let id = shared::gdpr::start_export(&s, subject, caller.user_id).await?;
    sessions::record(&s, caller.user_id, AuditAction::UserExportRequested, Some(id.to_string()), &ctx, json!({}))
        .await?;
    Ok(shared::http::json_with_status(StatusCode::ACCEPTED, &ExportStarted { export_id: id.to_string() }))
}

/// Profile changes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// A new display name (empty clears it).
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
}

/// Updates the caller's profile.
#[utoipa::path(patch, path = "/me", tag = "auth", request_body = UpdateMe, security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn update_me(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<UpdateMe>,
) -> Result<Json<Me>, ApiError> {
    let store = s.store.as_ref();
    let (mut user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    if let Some(name) = req.name {
        user.name = clean_name(Some(name))?;
    }
    users::save(store, &user, version).await?;
    sessions::record(&s, user.id, AuditAction::UserProfileUpdated, None, &ctx, json!({})).await?;
    Ok(Json(Me::from(&user)))
}

/// The caller's own audit events (sign-ins, password changes, sessions...), newest first.
#[utoipa::path(get, path = "/me/audit", tag = "auth", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn my_audit(
    State(s): State<Services>,
    caller: AuthUser,
    Query(p): Query<PageParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let stream = shared::audit::AuditStream::User(caller.user_id);
    Ok(Json(shared::audit::page_for(s.store.as_ref(), stream, p.limit(), p.cursor()?).await?))
}
