//! The auth function's routes, one module per group, each owning its request and response
//! types and its router fragment; the helpers they share are here.

pub mod login;
pub mod me;
pub mod mfa;
pub mod oidc;
pub mod password;
pub mod saml;
pub mod sessions;
pub mod signup;
pub mod well_known;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::auth::password::{WeakPassword, check_strength};
use shared::error::ApiError;
use shared::http::RequestContext;
use shared::mail::EmailAddress;
use shared::secret::Secret;
use shared::services::Services;

/// How long an email verification link works.
pub const VERIFY_TTL_HOURS: u32 = 24;
/// How long a password reset link works.
pub const RESET_TTL_MINUTES: u32 = 60;
/// The longest display name accepted.
pub const MAX_NAME_CHARS: usize = 100;

/// In rent-auth mode the external issuer signs people in; our own sign-in routes refuse.
fn own_auth(s: &Services) -> Result<(), ApiError> {
    match &s.tokens.external {
        None => Ok(()),
        Some(_) => Err(ApiError::Conflict {
            code: "external_auth",
            detail: "sign-in is handled by the external identity provider".into(),
        }),
    }
}

fn email(s: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(s)
        .map_err(|_| ApiError::Invalid { code: "invalid_email", detail: "not a valid email address".into() })
}

fn strong(p: &Secret<String>, email: &EmailAddress, services: &Services) -> Result<(), ApiError> {
    let local = email.as_str().split('@').next().unwrap_or_default();
    check_strength(p, &[email.as_str(), local, &services.config.server.app_name])
        .map_err(|WeakPassword(detail)| ApiError::Invalid { code: "weak_password", detail })
}

/// 422 `breached_password` for a password found in known breaches (Pwned Passwords), when
/// the check is on; an unanswered check lets the password through (see
/// `shared::auth::breached`).
async fn not_breached(p: &Secret<String>, services: &Services) -> Result<(), ApiError> {
    match &services.pwned_passwords {
        Some(check) if check.is_breached(p).await => Err(ApiError::Invalid {
            code: "breached_password",
            detail: "this password appears in known data breaches (Have I Been Pwned): choose another".into(),
        }),
        _ => Ok(()),
    }
}

/// The bot check of a public form, when the deployment turns it on. A token over the
/// documented length is refused either way.
async fn bot_check(s: &Services, token: Option<&str>, ctx: &RequestContext) -> Result<(), ApiError> {
    let max = shared::auth::challenge::MAX_TOKEN_CHARS;
    if token.is_some_and(|t| t.chars().count() > max) {
        return Err(ApiError::Invalid {
            code: "invalid_challenge_token",
            detail: format!("`challenge_token` is at most {max} characters"),
        });
    }
    match &s.challenge {
        Some(verifier) => verifier.verify(token, ctx.ip.as_deref()).await,
        None => Ok(()),
    }
}

/// Whether a link may be mailed to `address` now: not suppressed (it bounced for good or
/// complained), and under `per_address` (counted here). Sending to a suppressed address
/// would only add to the sending domain's bounce and complaint rates.
async fn mailable(
    s: &Services,
    address: &EmailAddress,
    per_address: shared::auth::rate_limit::Limit,
) -> Result<bool, ApiError> {
    let store = s.store.as_ref();
    if shared::mail::suppression::is_suppressed(store, address).await? {
        tracing::info!("a link for a suppressed address was not sent");
        return Ok(false);
    }
    // The count after this send decides, so concurrent requests cannot all slip under it.
    let sent = shared::auth::rate_limit::hit(store, per_address, address.as_str(), s.clock.now_ms()).await?;
    if sent > u64::from(per_address.max) {
        tracing::info!(limit = per_address.name, "a link over the per-address limit was not sent");
        return Ok(false);
    }
    Ok(true)
}

fn link(services: &Services, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", services.config.server.app_url)
}

fn client_key(ctx: &RequestContext) -> String {
    ctx.ip.clone().unwrap_or_else(|| "unknown".into())
}

/// An accepted request whose outcome is sent by email.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// `accepted`.
    pub status: &'static str,
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(Accepted { status: "accepted" })).into_response()
}

fn clean_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(name) = name else { return Ok(None) };
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            code: "invalid_name",
            detail: format!("a name is at most {MAX_NAME_CHARS} printable characters"),
        });
    }
    let n = name.trim();
    Ok((!n.is_empty()).then(|| n.to_owned()))
}

fn invalid_token() -> ApiError {
    ApiError::BadRequest { code: "invalid_token", detail: "the link is invalid, expired or already used".into() }
}
