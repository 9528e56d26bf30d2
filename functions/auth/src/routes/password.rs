//! Passwords: the emailed reset link and the signed-in change. A reset ends every session,
//! a change every other one; both are emailed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::AuthUser;
use shared::auth::rate_limit::{self, RESET_PER_EMAIL, RESET_PER_IP};
use shared::auth::users::{self, Purpose, User};
use shared::error::{ApiError, Problem};
use shared::http::{Json, RequestContext};
use shared::id::UserId;
use shared::jobs::Job;
use shared::mail::templates::Email;
use shared::secret::Secret;
use shared::services::Services;
use shared::store::TxOp;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;
use crate::sessions::{self};

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(password_forgot))
        .routes(routes!(password_reset))
        .routes(routes!(password_change))
}

/// An email address.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    /// The account's email address.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// The token of the page's bot check, required when the deployment turns the check on
    /// (`GROUNDWORK_CHALLENGE_PROVIDER`).
    #[schema(max_length = 2048)]
    pub challenge_token: Option<String>,
}

/// Sends a password reset link if the address has an account. Always 202.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotRequest,
    responses((status = 409, description = "Rent-auth mode: sign-in belongs to the external issuer (`external_auth`)", body = Problem, content_type = "application/problem+json"),
              (status = 202, body = Accepted), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn password_forgot(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<ForgotRequest>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    let address = email(&req.email)?;
    let now = s.clock.now_ms();
    rate_limit::take(s.store.as_ref(), RESET_PER_IP, &client_key(&ctx), now).await?;
    bot_check(&s, req.challenge_token.as_deref(), &ctx).await?;
    // Over the per-address limit, or suppressed: answer as usual, send nothing more.
    if !mailable(&s, &address, RESET_PER_EMAIL).await? {
        return Ok(accepted());
    }
    if let Some(user) = users::by_email(s.store.as_ref(), &address).await? {
        send_reset_link(&s, &user).await?;
        sessions::record(&s, user.id, AuditAction::PasswordResetRequested, None, &ctx, json!({})).await?;
    }
    Ok(accepted())
}

/// Emails `user` a password reset link (which ends their earlier ones).
pub(crate) async fn send_reset_link(s: &Services, user: &User) -> Result<(), ApiError> {
    let expires = s.clock.now_secs() + i64::from(RESET_TTL_MINUTES) * 60;
    let token = users::issue_token(s.store.as_ref(), Purpose::ResetPassword, user.id, expires).await?;
    let email =
        Email::PasswordReset { link: link(s, "/reset-password", &token), expires_in_minutes: RESET_TTL_MINUTES };
    s.jobs().enqueue(Job::SendEmail { to: user.email.clone(), email }).await?;
    Ok(())
}

/// A reset token and the new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The `token` parameter of the emailed link.
    #[schema(value_type = String)]
    pub token: Secret<String>,
    /// The new password.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 128)]
    pub password: Secret<String>,
}

/// The writes that set `user_id`'s password to `new` (the record, and the "your password
/// changed" email staged with it), for the caller's transaction; then dispatch the job.
async fn new_password(
    s: &Services,
    user_id: UserId,
    new: &Secret<String>,
) -> Result<(Vec<TxOp>, shared::jobs::outbox::StagedJob), ApiError> {
    let store = s.store.as_ref();
    let (mut user, version) = users::load_versioned(store, user_id).await?.ok_or(ApiError::NotFound)?;
    user.password_hash = s.passwords.hash(new).await?;
    user.password_changed_at_ms = s.clock.now_ms();
    // A reset proves control of the address (and settles a contested sign-up).
    user.email_verified = true;
    user.contested = false;
    let email = Job::SendEmail { to: user.email.clone(), email: Email::PasswordChanged { name: user.name.clone() } };
    let email = s.jobs().stage(email, None)?;
    Ok((vec![users::save_op(&user, version)?, email.op()], email))
}

/// Ends `user`'s sessions but `keep` once more after a committed password change: a login
/// with the old password between the first ending and the commit must not survive it. Best
/// effort (the change is made); returns how many ended.
async fn end_sessions_again(s: &Services, user: UserId, keep: Option<shared::id::SessionId>) -> usize {
    sessions::revoke_all(s, user, keep).await.unwrap_or_else(|e| {
        tracing::error!(user_id = %user, error = ?e, "ending sessions after a password change failed");
        0
    })
}

/// Sets a new password with the token from the reset email; ends every session.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetRequest,
    responses((status = 204), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn password_reset(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    // Check the new password (against the user's own address too) before using up the
    // token, so a weak one can be corrected with the same link.
    let holder = users::peek_token(s.store.as_ref(), Purpose::ResetPassword, req.token.expose())
        .await?
        .ok_or_else(invalid_token)?;
    let user = users::by_id(s.store.as_ref(), holder).await?.ok_or_else(invalid_token)?;
    strong(&req.password, &user.email, &s)?;
    not_breached(&req.password, &s).await?;
    let token = users::redeemable(s.store.as_ref(), Purpose::ResetPassword, req.token.expose())
        .await?
        .ok_or_else(invalid_token)?;
    let user_id = token.link.user_id;
    // Sessions end first: repeating that is harmless, so a failure anywhere before the
    // commit leaves the link working for the retry and no session alive.
    let mut ended = sessions::revoke_all(&s, user_id, None).await?;
    let (writes, email) = new_password(&s, user_id, &req.password).await?;
    // The link is used (the newest: the older ones end with it) in the transaction that sets
    // the password.
    if !users::redeem(s.store.as_ref(), token, writes).await? {
        return Err(invalid_token());
    }
    s.jobs().dispatch(email).await;
    ended += end_sessions_again(&s, user_id, None).await;
    sessions::record_after_commit(
        &s,
        user_id,
        AuditAction::PasswordReset,
        None,
        &ctx,
        json!({"sessions_ended": ended}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The current and the new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// The current password.
    #[schema(value_type = String, format = Password)]
    pub current_password: Secret<String>,
    /// The new password.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 128)]
    pub new_password: Secret<String>,
}

/// Changes the password; every other session ends.
#[utoipa::path(post, path = "/auth/password/change", tag = "auth", request_body = ChangeRequest, security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn password_change(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<ChangeRequest>,
) -> Result<StatusCode, ApiError> {
    let user = users::by_id(s.store.as_ref(), caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    if !s.passwords.verify(&req.current_password, &user.password_hash).await? {
        sessions::record(&s, user.id, AuditAction::PasswordChangeFailed, None, &ctx, json!({})).await?;
        return Err(ApiError::Forbidden);
    }
    // The new password is checked before anything changes: a refused one ends no session.
    strong(&req.new_password, &user.email, &s)?;
    not_breached(&req.new_password, &s).await?;
    // What must hold once the password changed, done first (repeating it is harmless): a
    // reset link requested before the change must not undo it; the other sessions end.
    users::end_links(s.store.as_ref(), user.id, Purpose::ResetPassword).await?;
    let mut ended = sessions::revoke_all(&s, user.id, Some(caller.session_id)).await?;
    let (writes, email) = new_password(&s, user.id, &req.new_password).await?;
    match s.store.transact(writes).await {
        Ok(()) => {}
        Err(e) if e.is_condition_failure() => {
            return Err(ApiError::Conflict { code: "conflict", detail: "the account changed meanwhile: retry".into() });
        }
        Err(e) => return Err(e.into()),
    }
    s.jobs().dispatch(email).await;
    ended += end_sessions_again(&s, user.id, Some(caller.session_id)).await;
    sessions::record_after_commit(
        &s,
        user.id,
        AuditAction::PasswordChanged,
        None,
        &ctx,
        json!({"sessions_ended": ended}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
