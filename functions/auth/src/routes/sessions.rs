//! The caller's sessions: refresh token rotation, logout, listing and revoking.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::{AuthUser, session};
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, RequestContext};
use shared::id::SessionId;
use shared::secret::Secret;
use shared::services::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;
use crate::browser_session::{self, RefreshTokenDelivery};
use crate::sessions::{self, TokenPair};

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
}

/// A refresh token, in the body or (an empty object) in the session cookie.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of the last pair; leave it out to use the `gw_refresh` cookie.
    #[schema(value_type = Option<String>)]
    pub refresh_token: Option<Secret<String>>,
}

/// Exchanges a refresh token for a new pair. A token works once; reusing one ends its session.
/// Without `refresh_token` in the body, the `gw_refresh` cookie is used (and answered as a
/// cookie again); such a request must come from an allowed `Origin` with an
/// `X-Requested-With` header.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    security((), ("refresh_cookie" = [])),
    params(("X-Requested-With" = Option<String>, Header, description = "Required (any value) when the cookie is used")),
    responses((status = 409, description = "Rent-auth mode: sign-in belongs to the external issuer (`external_auth`)", body = Problem, content_type = "application/problem+json"),
              (status = 200, body = TokenPair, headers(("Set-Cookie" = String, description = "The next refresh cookie, when the cookie was used"))),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "The cookie, from an origin that is not allowed (`csrf_origin`) or without `X-Requested-With` (`csrf_header`); a session not opened through the single sign-on the user's verified domain now requires, which is ended (`sso_required`)", body = Problem, content_type = "application/problem+json")))]
async fn refresh(
    State(s): State<Services>,
    ctx: RequestContext,
    headers: HeaderMap,
    Json(req): Json<RefreshRequest>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    if let Some(token) = req.refresh_token {
        let pair = sessions::refresh(&s, token.expose(), &ctx).await?;
        return Ok(browser_session::respond(&s, RefreshTokenDelivery::Body, pair, |p| p));
    }
    let Some(token) = browser_session::token(&headers) else { return Err(ApiError::Unauthenticated) };
    browser_session::check_csrf(&s, &headers)?;
    match sessions::refresh(&s, &token, &ctx).await {
        Ok(pair) => Ok(browser_session::respond(&s, RefreshTokenDelivery::Cookie, pair, |p| p)),
        // A cookie that no longer works is removed, so the page stops sending it.
        Err(ApiError::Unauthenticated) => Ok((browser_session::cleared(&s), ApiError::Unauthenticated).into_response()),
        Err(e) => Err(e),
    }
}

/// Ends this session: the bearer token's, or without a live one the `gw_refresh` cookie's
/// (which then needs an allowed `Origin` and `X-Requested-With`). The cookie is removed
/// either way.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = []), ("refresh_cookie" = [])),
    params(("X-Requested-With" = Option<String>, Header, description = "Required (any value) when the cookie is used")),
    responses((status = 204, headers(("Set-Cookie" = String, description = "Removes the refresh cookie"))),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "The cookie, from an origin that is not allowed (`csrf_origin`) or without `X-Requested-With` (`csrf_header`)", body = Problem, content_type = "application/problem+json")))]
async fn logout(
    State(s): State<Services>,
    ctx: RequestContext,
    headers: HeaderMap,
    caller: Result<AuthUser, ApiError>,
) -> Result<Response, ApiError> {
    let cookie = browser_session::token(&headers);
    let ended = match (caller, cookie) {
        (Ok(caller), _) => Some((caller.user_id, caller.session_id)),
        // An expired access token beside the cookie: the cookie says which session to end.
        (Err(_), Some(token)) => {
            browser_session::check_csrf(&s, &headers)?;
            // A cookie whose session already ended logs out nothing, and still succeeds.
            sessions::owner_of(&s, &token).await?
        }
        (Err(e), None) => return Err(e),
    };
    if let Some((user, sid)) = ended
        && sessions::revoke(&s, user, sid).await?
    {
        sessions::record(&s, user, AuditAction::SessionLoggedOut, Some(sid.to_string()), &ctx, json!({})).await?;
    }
    Ok((StatusCode::NO_CONTENT, browser_session::cleared(&s)).into_response())
}

/// Ends every session of the caller, this one included.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn logout_all(State(s): State<Services>, ctx: RequestContext, caller: AuthUser) -> Result<StatusCode, ApiError> {
    let ended = sessions::revoke_all(&s, caller.user_id, None).await?;
    sessions::record(
        &s,
        caller.user_id,
        AuditAction::SessionLoggedOutEverywhere,
        None,
        &ctx,
        json!({"sessions": ended}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One session, as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session id.
    pub id: String,
    /// When it started (Unix ms).
    pub created_at_ms: i64,
    /// When it was last refreshed (Unix ms).
    pub last_used_at_ms: i64,
    /// Where it started.
    pub ip: Option<String>,
    /// With which client.
    pub user_agent: Option<String>,
    /// Whether it is the caller's own.
    pub current: bool,
}

/// The caller's sessions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Sessions {
    /// Newest first.
    pub sessions: Vec<SessionView>,
}

/// Lists the caller's sessions.
#[utoipa::path(get, path = "/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Sessions), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn list_sessions(State(s): State<Services>, caller: AuthUser) -> Result<Json<Sessions>, ApiError> {
    let mut list = session::list(s.store.as_ref(), caller.user_id).await?;
    list.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
    let sessions = list
        .into_iter()
        .map(|x| SessionView {
            id: x.id.to_string(),
            created_at_ms: x.created_at_ms,
            last_used_at_ms: x.last_used_at_ms,
            ip: x.ip,
            user_agent: x.user_agent,
            current: x.id == caller.session_id,
        })
        .collect();
    Ok(Json(Sessions { sessions }))
}

/// Ends one of the caller's sessions.
#[utoipa::path(delete, path = "/auth/sessions/{session_id}", tag = "auth", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "The session to end")),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn revoke_session(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(session_id): Path<SessionId>,
) -> Result<StatusCode, ApiError> {
    // Keyed under the caller: another user's session id finds nothing.
    if !sessions::revoke(&s, caller.user_id, session_id).await? {
        return Err(ApiError::NotFound);
    }
    sessions::record(&s, caller.user_id, AuditAction::SessionRevoked, Some(session_id.to_string()), &ctx, json!({}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
