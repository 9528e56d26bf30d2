//! Login with email and password, and its second step when TOTP is on. A wrong email and a
//! wrong password fail alike, after the same work.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::rate_limit::{self, BREACH_NOTICE_PER_USER, LOGIN_PER_EMAIL, LOGIN_PER_IP, MFA_PER_USER};
use shared::auth::users::{self, Purpose};
use shared::error::{ApiError, Problem};
use shared::http::{Json, RequestContext};
use shared::jobs::Job;
use shared::mail::EmailAddress;
use shared::mail::templates::Email;
use shared::secret::Secret;
use shared::services::Services;
use shared::tenancy::domains;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;
use crate::browser_session::{self, RefreshTokenDelivery};
use crate::sessions::{self, TokenPair};

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(login)).routes(routes!(login_mfa))
}

/// Email and password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The email address.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// The password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret<String>,
    /// Where the refresh token goes: `body` (default) or `cookie` (browsers; see
    /// `/auth/refresh`). The choice carries over to the second step of an MFA login only
    /// when sent there too.
    #[serde(default)]
    pub refresh_token_delivery: RefreshTokenDelivery,
}

fn login_failed() -> ApiError {
    ApiError::InvalidCredentials
}

/// What a login answers: tokens, or, for a user with two-factor authentication, a challenge
/// to complete at `/auth/login/mfa`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    /// Logged in.
    Tokens(TokenPair),
    /// A second factor is needed.
    Mfa(MfaChallenge),
}

/// A pending login waiting for its second factor.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MfaChallenge {
    /// Always true.
    pub mfa_required: bool,
    /// Send it back with the code to `/auth/login/mfa`.
    pub challenge: String,
    /// Seconds the challenge stays valid.
    pub expires_in: i64,
    /// Present (true) when the password just used appears in known data breaches.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub password_breached: bool,
}

/// How long a login waits for its second factor.
pub const MFA_CHALLENGE_SECS: i64 = 300;

/// Logs in: a new session and its tokens, or an MFA challenge. Wrong email and wrong
/// password fail alike. With `refresh_token_delivery: cookie` the refresh token is set as the
/// `gw_refresh` cookie (`HttpOnly`, scoped to `/auth/refresh` and `/auth/logout`) instead of
/// being answered, and the request must come from an allowed `Origin` with an
/// `X-Requested-With` header (403 `csrf_origin` / `csrf_header`).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    params(("X-Requested-With" = Option<String>, Header, description = "Required (any value) with `refresh_token_delivery: cookie`")),
    responses((status = 200, body = LoginResponse, headers(("Set-Cookie" = String, description = "The refresh cookie, with `refresh_token_delivery: cookie`"))),
              (status = 409, description = "Rent-auth mode: sign-in belongs to the external issuer (`external_auth`)", body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "A cookie delivery from an origin that is not allowed (`csrf_origin`) or without `X-Requested-With` (`csrf_header`); an address whose verified domain requires its organization's single sign-on (`sso_required`); a user their organization's directory deactivated (`user_suspended`)", body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn login(
    State(s): State<Services>,
    ctx: RequestContext,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    if req.refresh_token_delivery == RefreshTokenDelivery::Cookie {
        // A login is not cookie-authenticated, but one from a page of another site would
        // plant that site's session in the browser (login CSRF).
        browser_session::check_csrf(&s, &headers)?;
    }
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let ip = client_key(&ctx);
    let Ok(address) = EmailAddress::parse(&req.email) else {
        s.passwords.verify_dummy(&req.password).await?;
        return Err(login_failed());
    };
    // Told by the address's domain alone, so it says nothing about whether the user exists.
    if let Some(org) = domains::sso_required(store, address.as_str()).await? {
        return Err(domains::sso_required_error(org));
    }
    // Counted before the password is tried, so a burst of parallel guesses cannot all
    // pass a check made before any of them failed; a success takes its count back.
    let per_ip = rate_limit::claim(store, LOGIN_PER_IP, &ip, now).await?;
    let per_email = match rate_limit::claim(store, LOGIN_PER_EMAIL, address.as_str(), now).await {
        Ok(claim) => claim,
        Err(e) => {
            per_ip.release(store).await?;
            return Err(e);
        }
    };
    let user = users::by_email(store, &address).await?;
    let verified = match &user {
        Some(u) => s.passwords.verify(&req.password, &u.password_hash).await,
        None => s.passwords.verify_dummy(&req.password).await.map(|()| false),
    };
    let ok = match verified {
        Ok(ok) => ok,
        Err(e) => {
            // Refused before the password was tried (a full hashing queue): no attempt.
            per_ip.release(store).await?;
            per_email.release(store).await?;
            return Err(e);
        }
    };
    let (true, Some(user)) = (ok, user.clone()) else {
        // The claims stay counted: they are this failed attempt.
        if let Some(u) = user {
            sessions::record(&s, u.id, AuditAction::UserLoginFailed, None, &ctx, json!({"reason": "password"})).await?;
        }
        return Err(login_failed());
    };
    per_ip.release(store).await?;
    per_email.release(store).await?;
    if !user.email_verified {
        return Err(ApiError::Conflict {
            code: "email_not_verified",
            detail: "confirm your email address first; a new link can be requested by signing up again".into(),
        });
    }
    rate_limit::clear(store, LOGIN_PER_EMAIL, address.as_str(), now).await?;
    let breached = breached(&s, &user, &req.password).await;
    if user.mfa.is_some() {
        let expires = s.clock.now_secs() + MFA_CHALLENGE_SECS;
        let challenge = users::issue_token(store, Purpose::MfaChallenge, user.id, expires).await?;
        sessions::record(&s, user.id, AuditAction::UserPasswordVerified, None, &ctx, json!({"next": "mfa"})).await?;
        let challenge =
            MfaChallenge { mfa_required: true, challenge, expires_in: MFA_CHALLENGE_SECS, password_breached: breached };
        return Ok(Json(LoginResponse::Mfa(challenge)).into_response());
    }
    let mut pair = sessions::start(&s, user.id, &ctx, false).await?;
    pair.password_breached = breached;
    sessions::record_after_commit(
        &s,
        user.id,
        AuditAction::UserLoggedIn,
        Some(pair.session_id.clone()),
        &ctx,
        json!({}),
    )
    .await;
    Ok(browser_session::respond(&s, req.refresh_token_delivery, pair, LoginResponse::Tokens))
}

/// Whether the password `user` just signed in with appears in known breaches (when the check
/// is on). They may still sign in (NIST SP 800-63B refuses such passwords when they are
/// chosen, not when they are used): the answer says so, and they are emailed, at most once a
/// day. Nothing here fails the login.
async fn breached(s: &Services, user: &users::User, password: &Secret<String>) -> bool {
    let Some(check) = &s.pwned_passwords else { return false };
    if !check.is_breached(password).await {
        return false;
    }
    let now = s.clock.now_ms();
    let notices = rate_limit::hit(s.store.as_ref(), BREACH_NOTICE_PER_USER, &user.id.to_string(), now).await;
    if notices.is_ok_and(|n| n <= u64::from(BREACH_NOTICE_PER_USER.max)) {
        let email =
            Job::SendEmail { to: user.email.clone(), email: Email::PasswordBreached { name: user.name.clone() } };
        if let Err(e) = s.jobs().enqueue(email).await {
            tracing::warn!(user_id = %user.id, error = %e, "could not queue the breached-password notice");
        }
    }
    true
}

/// The second step of a login.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLoginRequest {
    /// The challenge from `/auth/login`.
    #[schema(value_type = String)]
    pub challenge: Secret<String>,
    /// A code from the authenticator app...
    #[schema(value_type = Option<String>)]
    pub code: Option<Secret<String>>,
    /// ...or one of the recovery codes.
    #[schema(value_type = Option<String>)]
    pub recovery_code: Option<Secret<String>>,
    /// Where the refresh token goes, as at `/auth/login`.
    #[serde(default)]
    pub refresh_token_delivery: RefreshTokenDelivery,
}

/// Completes a login with a TOTP code or a recovery code.
#[utoipa::path(post, path = "/auth/login/mfa", tag = "auth", request_body = MfaLoginRequest,
    params(("X-Requested-With" = Option<String>, Header, description = "Required (any value) with `refresh_token_delivery: cookie`")),
    responses((status = 200, body = TokenPair, headers(("Set-Cookie" = String, description = "The refresh cookie, with `refresh_token_delivery: cookie`"))),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "A cookie delivery from an origin that is not allowed (`csrf_origin`) or without `X-Requested-With` (`csrf_header`); a user their organization's directory deactivated (`user_suspended`)", body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn login_mfa(
    State(s): State<Services>,
    ctx: RequestContext,
    headers: HeaderMap,
    Json(req): Json<MfaLoginRequest>,
) -> Result<Response, ApiError> {
    if req.refresh_token_delivery == RefreshTokenDelivery::Cookie {
        browser_session::check_csrf(&s, &headers)?;
    }
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let user_id = users::peek_token(store, Purpose::MfaChallenge, req.challenge.expose())
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let subject = user_id.to_string();
    // Counted before the code is tried (see `login`); a success clears the count.
    let _attempt = rate_limit::claim(store, MFA_PER_USER, &subject, now).await?;
    let (mut user, version) = users::load_versioned(store, user_id).await?.ok_or(ApiError::Unauthenticated)?;
    let Some(mut factor) = user.mfa.clone() else { return Err(ApiError::Unauthenticated) };
    let method = match (&req.code, &req.recovery_code) {
        (Some(code), None) => {
            let totp = mfa::totp(&factor.secret, &s.config.server.app_name, user.email.as_str())?;
            mfa::accept(&totp, code.expose(), s.clock.now_secs(), factor.last_step).map(|step| {
                factor.last_step = step;
                "totp"
            })
        }
        (None, Some(code)) => {
            let hash = mfa::recovery_hash(code.expose());
            factor.recovery_hashes.iter().position(|h| *h == hash && !hash.is_empty()).map(|i| {
                factor.recovery_hashes.remove(i);
                "recovery_code"
            })
        }
        _ => {
            return Err(ApiError::BadRequest {
                code: "one_factor",
                detail: "send either `code` or `recovery_code`".into(),
            });
        }
    };
    let Some(method) = method else {
        sessions::record(&s, user.id, AuditAction::UserLoginFailed, None, &ctx, json!({"reason": "second_factor"}))
            .await?;
        return Err(ApiError::InvalidCredentials);
    };
    user.mfa = Some(factor);
    // The version check makes a code (or a recovery code) work once, even under a race.
    users::save(store, &user, version).await.map_err(|_| ApiError::Unauthenticated)?;
    if users::use_token(store, Purpose::MfaChallenge, req.challenge.expose()).await?.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    rate_limit::clear(store, MFA_PER_USER, &subject, now).await?;
    let pair = sessions::start(&s, user.id, &ctx, true).await?;
    sessions::record(
        &s,
        user.id,
        AuditAction::UserLoggedIn,
        Some(pair.session_id.clone()),
        &ctx,
        json!({"mfa": method}),
    )
    .await?;
    Ok(browser_session::respond(&s, req.refresh_token_delivery, pair, |p| p))
}
