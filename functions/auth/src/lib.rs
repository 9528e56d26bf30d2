//! The auth function: email + password sign-up with verification, login, rotating refresh
//! tokens with reuse detection, sessions, password reset and change, the user's profile
//! and own audit log, and the public keys (JWKS and OpenID discovery) other services use to
//! verify access tokens.
//!
//! Answers never reveal whether an email is registered: sign-up and password-forgot always
//! answer 202 after the same work (a password hash), and login fails the same way for an
//! unknown email and a wrong password.

pub mod mfa;
pub mod oidc;
pub mod sessions;
pub mod users;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditPage;
use shared::auth::password::{self, WeakPassword};
use shared::auth::rate_limit::{
    self, LOGIN_PER_EMAIL, LOGIN_PER_IP, MFA_PER_USER, RESET_PER_EMAIL, RESET_PER_IP, SIGNUP_PER_IP,
};
use shared::auth::{AuthUser, session};
use shared::error::{ApiError, Problem};
use shared::http::PageParams;
use shared::http::{Json, Path, Query, RequestContext};
use shared::id::{SessionId, UserId};
use shared::jobs::{Job, enqueue};
use shared::mail::EmailAddress;
use shared::mail::templates::Email;
use shared::secret::Secret;
use shared::services::Services;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use sessions::TokenPair;
use users::{Purpose, User};

/// How long an email verification link works.
pub const VERIFY_TTL_HOURS: u32 = 24;
/// How long a password reset link works.
pub const RESET_TTL_MINUTES: u32 = 60;
/// The longest display name accepted.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(utoipa::OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    tags((name = "auth", description = "Sign-up, login, sessions, passwords, the caller's profile"))
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(signup))
        .routes(routes!(verify_email))
        .routes(routes!(login))
        .routes(routes!(login_mfa))
        .routes(routes!(totp_enroll))
        .routes(routes!(totp_confirm))
        .routes(routes!(totp_disable))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(password_forgot))
        .routes(routes!(password_reset))
        .routes(routes!(password_change))
        .routes(routes!(get_me, update_me, erase_me))
        .routes(routes!(export_me))
        .routes(routes!(my_audit))
        .routes(routes!(oidc_start))
        .routes(routes!(oidc_callback))
        .routes(routes!(jwks))
        .routes(routes!(openid_configuration))
}

shared::function_routes!();

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
    password::check_strength(p, &[email.as_str(), local, &services.config.app_name])
        .map_err(|WeakPassword(detail)| ApiError::Invalid { code: "weak_password", detail })
}

fn link(services: &Services, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", services.config.app_url)
}

fn client_key(ctx: &RequestContext) -> String {
    ctx.ip.clone().unwrap_or_else(|| "unknown".into())
}

/// The sign-up request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// The email address; a verification link is sent there.
    pub email: String,
    /// At least 10 characters, not easy to guess.
    #[schema(value_type = String, format = Password)]
    pub password: Secret<String>,
    /// A display name.
    pub name: Option<String>,
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

/// Signs up with email and password. Always 202: a verification email is sent to a new
/// address, or sent again to an unverified one; nothing tells whether it was registered.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 202, body = Accepted), (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn signup(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<SignupRequest>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    let address = email(&req.email)?;
    strong(&req.password, &address, &s)?;
    let name = clean_name(req.name)?;
    let now = s.clock.now_ms();
    rate_limit::take(s.store.as_ref(), SIGNUP_PER_IP, &client_key(&ctx), now).await?;
    // Hash first, always: the answer takes as long whether the address is new or not.
    let hash = password::hash(&req.password).await?;
    let user = User {
        id: UserId::new(),
        email: address.clone(),
        email_verified: false,
        name,
        password_hash: hash,
        created_at_ms: now,
        password_changed_at_ms: now,
        mfa: None,
        mfa_pending: None,
    };
    let target = if users::create(s.store.as_ref(), &user).await? {
        sessions::record(&s, user.id, "user.signed_up", Some(user.id.to_string()), &ctx, json!({})).await?;
        Some(user)
    } else {
        // Taken: resend the link if it was never confirmed; otherwise say nothing.
        users::by_email(s.store.as_ref(), &address).await?.filter(|u| !u.email_verified)
    };
    if let Some(u) = target {
        send_verification(&s, &u).await?;
    }
    Ok(accepted())
}

fn clean_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(n) = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else { return Ok(None) };
    if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            code: "invalid_name",
            detail: format!("a name is 1 to {MAX_NAME_CHARS} printable characters"),
        });
    }
    Ok(Some(n))
}

async fn send_verification(s: &Services, user: &User) -> Result<(), ApiError> {
    let expires = s.clock.now_secs() + i64::from(VERIFY_TTL_HOURS) * 3600;
    let token = users::issue_token(s.store.as_ref(), Purpose::VerifyEmail, user.id, expires).await?;
    let email = Email::VerifyEmail { link: link(s, "/verify-email", &token), expires_in_hours: VERIFY_TTL_HOURS };
    enqueue(s, Job::SendEmail { to: user.email.clone(), email }).await?;
    Ok(())
}

/// A token from an emailed link.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The `token` parameter of the link.
    #[schema(value_type = String)]
    pub token: Secret<String>,
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

fn invalid_token() -> ApiError {
    ApiError::BadRequest { code: "invalid_token", detail: "the link is invalid, expired or already used".into() }
}

/// Confirms an email address with the token from the verification email.
#[utoipa::path(post, path = "/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses((status = 200, body = Me), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn verify_email(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<TokenRequest>,
) -> Result<Json<Me>, ApiError> {
    let store = s.store.as_ref();
    let user_id = users::use_token(store, Purpose::VerifyEmail, req.token.expose()).await?.ok_or_else(invalid_token)?;
    let (mut user, version) = users::load_versioned(store, user_id).await?.ok_or_else(invalid_token)?;
    if !user.email_verified {
        user.email_verified = true;
        users::save(store, &user, version).await?;
        sessions::record(&s, user.id, "user.email_verified", None, &ctx, json!({})).await?;
        enqueue(&s, Job::SendEmail { to: user.email.clone(), email: Email::Welcome { name: user.name.clone() } })
            .await?;
    }
    Ok(Json(Me::from(&user)))
}

/// Email and password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The email address.
    pub email: String,
    /// The password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret<String>,
}

fn login_failed() -> ApiError {
    ApiError::Unauthenticated
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
}

/// How long a login waits for its second factor.
pub const MFA_CHALLENGE_SECS: i64 = 300;

/// Logs in: a new session and its tokens, or an MFA challenge. Wrong email and wrong
/// password fail alike.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn login(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    own_auth(&s)?;
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let ip = client_key(&ctx);
    let Ok(address) = EmailAddress::parse(&req.email) else {
        password::verify_dummy(&req.password).await;
        return Err(login_failed());
    };
    rate_limit::check(store, LOGIN_PER_IP, &ip, now).await?;
    rate_limit::check(store, LOGIN_PER_EMAIL, address.as_str(), now).await?;
    let user = users::by_email(store, &address).await?;
    let ok = match &user {
        Some(u) => password::verify(&req.password, &u.password_hash).await,
        None => {
            password::verify_dummy(&req.password).await;
            false
        }
    };
    let (true, Some(user)) = (ok, user.clone()) else {
        rate_limit::hit(store, LOGIN_PER_IP, &ip, now).await?;
        rate_limit::hit(store, LOGIN_PER_EMAIL, address.as_str(), now).await?;
        if let Some(u) = user {
            sessions::record(&s, u.id, "user.login_failed", None, &ctx, json!({"reason": "password"})).await?;
        }
        return Err(login_failed());
    };
    if !user.email_verified {
        return Err(ApiError::Conflict {
            code: "email_not_verified",
            detail: "confirm your email address first; a new link can be requested by signing up again".into(),
        });
    }
    rate_limit::clear(store, LOGIN_PER_EMAIL, address.as_str(), now).await?;
    if user.mfa.is_some() {
        let expires = s.clock.now_secs() + MFA_CHALLENGE_SECS;
        let challenge = users::issue_token(store, Purpose::MfaChallenge, user.id, expires).await?;
        sessions::record(&s, user.id, "user.password_verified", None, &ctx, json!({"next": "mfa"})).await?;
        let challenge = MfaChallenge { mfa_required: true, challenge, expires_in: MFA_CHALLENGE_SECS };
        return Ok(Json(LoginResponse::Mfa(challenge)));
    }
    let pair = sessions::start(&s, user.id, &ctx, false).await?;
    sessions::record(&s, user.id, "user.logged_in", Some(pair.session_id.clone()), &ctx, json!({})).await?;
    Ok(Json(LoginResponse::Tokens(pair)))
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
}

/// Completes a login with a TOTP code or a recovery code.
#[utoipa::path(post, path = "/auth/login/mfa", tag = "auth", request_body = MfaLoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn login_mfa(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<MfaLoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let user_id = users::peek_token(store, Purpose::MfaChallenge, req.challenge.expose())
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let subject = user_id.to_string();
    rate_limit::check(store, MFA_PER_USER, &subject, now).await?;
    let (mut user, version) = users::load_versioned(store, user_id).await?.ok_or(ApiError::Unauthenticated)?;
    let Some(mut factor) = user.mfa.clone() else { return Err(ApiError::Unauthenticated) };
    let method = match (&req.code, &req.recovery_code) {
        (Some(code), None) => {
            let totp = mfa::totp(&factor.secret, &s.config.app_name, user.email.as_str())?;
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
        rate_limit::hit(store, MFA_PER_USER, &subject, now).await?;
        sessions::record(&s, user.id, "user.login_failed", None, &ctx, json!({"reason": "second_factor"})).await?;
        return Err(ApiError::Unauthenticated);
    };
    user.mfa = Some(factor);
    // The version check makes a code (or a recovery code) work once, even under a race.
    users::save(store, &user, version).await.map_err(|_| ApiError::Unauthenticated)?;
    if users::use_token(store, Purpose::MfaChallenge, req.challenge.expose()).await?.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    rate_limit::clear(store, MFA_PER_USER, &subject, now).await?;
    let pair = sessions::start(&s, user.id, &ctx, true).await?;
    sessions::record(&s, user.id, "user.logged_in", Some(pair.session_id.clone()), &ctx, json!({"mfa": method}))
        .await?;
    Ok(Json(pair))
}

/// A TOTP enrolment: add the secret to an authenticator app, then confirm with a code.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret, base32, for typing in by hand.
    pub secret: String,
    /// The `otpauth://` URI authenticator apps read.
    pub otpauth_uri: String,
    /// The URI as a QR code, SVG.
    pub qr_svg: String,
}

/// Starts TOTP enrolment (or restarts it, if it was never confirmed).
#[utoipa::path(post, path = "/auth/mfa/totp/enroll", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Enrolment), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn totp_enroll(State(s): State<Services>, caller: AuthUser) -> Result<Json<Enrolment>, ApiError> {
    let store = s.store.as_ref();
    let (mut user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    if user.mfa.is_some() {
        return Err(ApiError::Conflict {
            code: "mfa_already_enabled",
            detail: "disable two-factor authentication first".into(),
        });
    }
    let secret = mfa::new_secret()?;
    let totp = mfa::totp(&secret, &s.config.app_name, user.email.as_str())?;
    let uri = totp.to_url().map_err(|e| anyhow::anyhow!("otpauth URI: {e:?}"))?;
    let qr_svg = mfa::qr_svg(&uri)?;
    user.mfa_pending = Some(secret.clone());
    users::save(store, &user, version).await?;
    Ok(Json(Enrolment { secret, otpauth_uri: uri, qr_svg }))
}

/// A TOTP code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The 6-digit code from the authenticator app.
    #[schema(value_type = String)]
    pub code: Secret<String>,
}

/// Recovery codes, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// Each works once, in place of a TOTP code. Store them somewhere safe.
    pub recovery_codes: Vec<String>,
}

/// Confirms TOTP enrolment with a first code; returns the recovery codes.
#[utoipa::path(post, path = "/auth/mfa/totp/confirm", tag = "auth", request_body = CodeRequest, security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn totp_confirm(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<CodeRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let store = s.store.as_ref();
    let (mut user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    let Some(secret) = user.mfa_pending.clone() else {
        return Err(ApiError::Conflict { code: "no_enrolment", detail: "start with /auth/mfa/totp/enroll".into() });
    };
    let totp = mfa::totp(&secret, &s.config.app_name, user.email.as_str())?;
    let Some(step) = mfa::accept(&totp, req.code.expose(), s.clock.now_secs(), 0) else {
        return Err(ApiError::Invalid {
            code: "invalid_code",
            detail: "the code does not match; check the device's clock".into(),
        });
    };
    let (codes, hashes) = mfa::recovery_codes()?;
    user.mfa = Some(mfa::Mfa { secret, enabled_at_ms: s.clock.now_ms(), last_step: step, recovery_hashes: hashes });
    user.mfa_pending = None;
    users::save(store, &user, version).await?;
    sessions::record(&s, user.id, "mfa.enabled", None, &ctx, json!({"method": "totp"})).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Re-authentication to disable two-factor authentication.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// The password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret<String>,
    /// A current TOTP code (or a recovery code).
    #[schema(value_type = String)]
    pub code: Secret<String>,
}

/// Disables TOTP, after re-authentication with the password and a code.
#[utoipa::path(delete, path = "/auth/mfa/totp", tag = "auth", request_body = DisableRequest, security(("bearer" = [])),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn totp_disable(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<DisableRequest>,
) -> Result<StatusCode, ApiError> {
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let subject = caller.user_id.to_string();
    rate_limit::check(store, MFA_PER_USER, &subject, now).await?;
    let (mut user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    let Some(factor) = user.mfa.clone() else {
        return Err(ApiError::Conflict {
            code: "mfa_not_enabled",
            detail: "two-factor authentication is not enabled".into(),
        });
    };
    let totp = mfa::totp(&factor.secret, &s.config.app_name, user.email.as_str())?;
    let code_ok = mfa::accept(&totp, req.code.expose(), s.clock.now_secs(), factor.last_step).is_some()
        || factor.recovery_hashes.contains(&mfa::recovery_hash(req.code.expose()));
    if !(password::verify(&req.password, &user.password_hash).await && code_ok) {
        rate_limit::hit(store, MFA_PER_USER, &subject, now).await?;
        sessions::record(&s, user.id, "mfa.disable_failed", None, &ctx, json!({})).await?;
        return Err(ApiError::Forbidden);
    }
    user.mfa = None;
    users::save(store, &user, version).await?;
    sessions::record(&s, user.id, "mfa.disabled", None, &ctx, json!({"method": "totp"})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A refresh token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of the last pair.
    #[schema(value_type = String)]
    pub refresh_token: Secret<String>,
}

/// Exchanges a refresh token for a new pair. A token works once; reusing one ends its session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn refresh(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    own_auth(&s)?;
    Ok(Json(sessions::refresh(&s, req.refresh_token.expose(), &ctx).await?))
}

/// Ends this session.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn logout(State(s): State<Services>, ctx: RequestContext, caller: AuthUser) -> Result<StatusCode, ApiError> {
    sessions::revoke(&s, caller.user_id, caller.session_id).await?;
    sessions::record(&s, caller.user_id, "session.logged_out", Some(caller.session_id.to_string()), &ctx, json!({}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller, this one included.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn logout_all(State(s): State<Services>, ctx: RequestContext, caller: AuthUser) -> Result<StatusCode, ApiError> {
    let ended = sessions::revoke_all(&s, caller.user_id, None).await?;
    sessions::record(&s, caller.user_id, "session.logged_out_everywhere", None, &ctx, json!({"sessions": ended}))
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
    sessions::record(&s, caller.user_id, "session.revoked", Some(session_id.to_string()), &ctx, json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An email address.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    /// The account's email address.
    pub email: String,
}

/// Sends a password reset link if the address has an account. Always 202.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotRequest,
    responses((status = 202, body = Accepted), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn password_forgot(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<ForgotRequest>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    let address = email(&req.email)?;
    let now = s.clock.now_ms();
    rate_limit::take(s.store.as_ref(), RESET_PER_IP, &client_key(&ctx), now).await?;
    if rate_limit::check(s.store.as_ref(), RESET_PER_EMAIL, address.as_str(), now).await.is_err() {
        // Over the per-address limit: answer as usual, send nothing more.
        return Ok(accepted());
    }
    rate_limit::hit(s.store.as_ref(), RESET_PER_EMAIL, address.as_str(), now).await?;
    if let Some(user) = users::by_email(s.store.as_ref(), &address).await? {
        let expires = s.clock.now_secs() + i64::from(RESET_TTL_MINUTES) * 60;
        let token = users::issue_token(s.store.as_ref(), Purpose::ResetPassword, user.id, expires).await?;
        let email =
            Email::PasswordReset { link: link(&s, "/reset-password", &token), expires_in_minutes: RESET_TTL_MINUTES };
        enqueue(&s, Job::SendEmail { to: user.email.clone(), email }).await?;
        sessions::record(&s, user.id, "password.reset_requested", None, &ctx, json!({})).await?;
    }
    Ok(accepted())
}

/// A reset token and the new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The `token` parameter of the emailed link.
    #[schema(value_type = String)]
    pub token: Secret<String>,
    /// The new password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret<String>,
}

async fn set_password(s: &Services, user_id: UserId, new: &Secret<String>) -> Result<User, ApiError> {
    let store = s.store.as_ref();
    let (mut user, version) = users::load_versioned(store, user_id).await?.ok_or(ApiError::NotFound)?;
    strong(new, &user.email, s)?;
    user.password_hash = password::hash(new).await?;
    user.password_changed_at_ms = s.clock.now_ms();
    // A reset proves control of the address.
    user.email_verified = true;
    users::save(store, &user, version).await?;
    enqueue(s, Job::SendEmail { to: user.email.clone(), email: Email::PasswordChanged { name: user.name.clone() } })
        .await?;
    Ok(user)
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
    let user_id = users::use_token(s.store.as_ref(), Purpose::ResetPassword, req.token.expose())
        .await?
        .ok_or_else(invalid_token)?;
    set_password(&s, user_id, &req.password).await?;
    let ended = sessions::revoke_all(&s, user_id, None).await?;
    sessions::record(&s, user_id, "password.reset", None, &ctx, json!({"sessions_ended": ended})).await?;
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
    #[schema(value_type = String, format = Password)]
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
    if !password::verify(&req.current_password, &user.password_hash).await {
        sessions::record(&s, user.id, "password.change_failed", None, &ctx, json!({})).await?;
        return Err(ApiError::Forbidden);
    }
    set_password(&s, user.id, &req.new_password).await?;
    let ended = sessions::revoke_all(&s, user.id, Some(caller.session_id)).await?;
    sessions::record(&s, user.id, "password.changed", None, &ctx, json!({"sessions_ended": ended})).await?;
    Ok(StatusCode::NO_CONTENT)
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
    use shared::store::{Delete, Index, Item, Put, Query as StoreQuery, StoreExt as _, TxOp};
    use shared::tenancy::{self, Membership, Role};
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let (user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    rate_limit::check(store, LOGIN_PER_EMAIL, user.email.as_str(), now).await?;
    if !password::verify(&req.password, &user.password_hash).await {
        rate_limit::hit(store, LOGIN_PER_EMAIL, user.email.as_str(), now).await?;
        return Err(ApiError::Unauthenticated);
    }
    let index = StoreQuery::index(Index::Gsi1, format!("MEMBERSHIPS#{}", user.id));
    let memberships: Vec<Membership> = store
        .query_all(index)
        .await?
        .iter()
        .filter(|i| !shared::soft_delete::is_deleted(i))
        .map(Item::record)
        .collect::<Result<_, _>>()?;
    let mut ops = Vec::new();
    let mut blocking = Vec::new();
    for m in &memberships {
        ops.push(TxOp::Delete(Delete::new(tenancy::membership_key(m.account_id, m.user_id))));
        if m.role != Role::Owner {
            continue;
        }
        let others = tenancy::members(store, m.account_id).await?;
        if others.iter().any(|o| o.user_id != user.id && o.role == Role::Owner) {
            continue;
        }
        if others.iter().any(|o| o.user_id != user.id) {
            blocking.push(m.account_id.to_string());
        } else if let Some((account, _)) = tenancy::load_account(store, m.account_id).await?
            && account.deleted_at_ms.is_none()
        {
            ops.extend(tenancy::delete_account_ops(account.id, now, s.config.soft_delete_retention()));
        }
    }
    if !blocking.is_empty() {
        return Err(ApiError::Conflict {
            code: "sole_owner",
            detail: format!("transfer ownership of these accounts first: {}", blocking.join(", ")),
        });
    }
    for key in oidc::identities_of(&s, user.id).await? {
        ops.push(TxOp::Delete(Delete::new(key)));
    }
    let mut tombstone = Item::new(users::user_key(user.id)).with("id", user.id.to_string()).with("erased_at_ms", now);
    tombstone.version = version;
    ops.push(TxOp::Put(Put::new(tombstone).if_unchanged()));
    ops.push(TxOp::Delete(Delete::new(users::email_key(&user.email))));
    // One transaction holds at most 100 operations; members of that many accounts are rare.
    for chunk in ops.chunks(100) {
        store.transact(chunk.to_vec()).await?;
    }
    for op in &ops {
        if let shared::store::TxOp::Put(p) = op
            && p.item.key.pk == "BILLING#PENDING_CANCELLATION"
            && let Ok(account) = p.item.key.sk.parse()
        {
            shared::jobs::enqueue(&s, shared::jobs::Job::CancelForDeletedAccount { account_id: account }).await?;
        }
    }
    sessions::revoke_all(&s, user.id, None).await?;
    sessions::record(&s, user.id, "user.erased", None, &ctx, json!({"memberships_removed": memberships.len()})).await?;
    for m in &memberships {
        let actor = Some(user.id.to_string());
        tenancy::record(&s, m.account_id, actor, "member.erased", Some(user.id.to_string()), ctx.origin(), json!({}))
            .await?;
        shared::billing::seats_changed(&s, m.account_id).await?;
    }
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
    let id = shared::exports::start(&s, subject, caller.user_id).await?;
    sessions::record(&s, caller.user_id, "user.export_requested", Some(id.to_string()), &ctx, json!({})).await?;
    Ok(shared::http::json_with_status(StatusCode::ACCEPTED, &ExportStarted { export_id: id.to_string() }))
}

/// Profile changes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// A new display name (empty clears it).
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
    sessions::record(&s, user.id, "user.profile_updated", None, &ctx, json!({})).await?;
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
    Ok(Json(shared::audit::page_for(s.store.as_ref(), &format!("user:{}", caller.user_id), &p).await?))
}

/// Options of an OpenID Connect login.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct OidcStartParams {
    /// Passed to the provider to preselect an account.
    pub login_hint: Option<String>,
}

/// Starts an OpenID Connect login: redirects to the provider (`google` and the other
/// configured social providers, or `org-<org id>` for an organization's enterprise SSO).
#[utoipa::path(get, path = "/auth/oidc/{provider}/start", tag = "auth",
    params(("provider" = String, Path), OidcStartParams),
    responses((status = 302, description = "To the provider's login page"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn oidc_start(
    State(s): State<Services>,
    Path(provider): Path<String>,
    Query(p): Query<OidcStartParams>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    let provider = oidc::provider(&s, &provider).await?.ok_or(ApiError::NotFound)?;
    let hint = p.login_hint.filter(|h| h.len() <= 254 && !h.chars().any(char::is_control));
    let url = oidc::start(&s, &provider, hint.as_deref()).await?;
    let location = axum::http::HeaderValue::from_str(&url).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok((StatusCode::FOUND, [(axum::http::header::LOCATION, location)]).into_response())
}

/// What the provider sends back.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct OidcCallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The state of `/start`.
    pub state: Option<String>,
    /// The provider's error code, when the login did not happen.
    pub error: Option<String>,
    /// The provider's explanation (not shown).
    pub error_description: Option<String>,
    /// The issuer (RFC 9207), checked when present.
    pub iss: Option<String>,
}

/// The provider's redirect back: verifies the answer and signs the user in (creating them,
/// or linking the identity to the user with that verified email), returning tokens.
#[utoipa::path(get, path = "/auth/oidc/{provider}/callback", tag = "auth",
    params(("provider" = String, Path), OidcCallbackParams),
    responses((status = 200, body = TokenPair), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn oidc_callback(
    State(s): State<Services>,
    ctx: RequestContext,
    Path(provider): Path<String>,
    Query(q): Query<OidcCallbackParams>,
) -> Result<Json<TokenPair>, ApiError> {
    let provider = oidc::provider(&s, &provider).await?.ok_or(ApiError::NotFound)?;
    if let Some(error) = q.error {
        let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return Err(ApiError::BadRequest { code: "provider_refused", detail: format!("the provider answered {code}") });
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(ApiError::BadRequest { code: "missing_code", detail: "code and state are required".into() });
    };
    if q.iss.as_deref().is_some_and(|iss| iss.trim_end_matches('/') != provider.issuer) {
        tracing::warn!("OpenID Connect callback names another issuer");
        return Err(ApiError::Unauthenticated);
    }
    let identity = oidc::finish(&s, &provider, &code, &state).await?;
    if let (Some((_, sso)), Some(email)) = (&provider.org, &identity.email) {
        oidc::check_domain(sso, email)?;
    }
    let user = sso_user(&s, &provider, &identity, &ctx).await?;
    if let Some((org, sso)) = &provider.org {
        oidc::join_jit(&s, *org, sso, user.id).await?;
    }
    let pair = sessions::start(&s, user.id, &ctx, false).await?;
    let detail = json!({"method": "oidc", "provider": provider.name});
    sessions::record(&s, user.id, "user.logged_in", Some(pair.session_id.clone()), &ctx, detail).await?;
    Ok(Json(pair))
}

/// The user an OpenID Connect identity signs in as.
async fn sso_user(
    s: &Services,
    provider: &oidc::Provider,
    identity: &oidc::Identity,
    ctx: &RequestContext,
) -> Result<User, ApiError> {
    let store = s.store.as_ref();
    if let Some(id) = oidc::linked_user(s, identity).await? {
        return users::by_id(store, id).await.ok().flatten().ok_or(ApiError::Unauthenticated);
    }
    let Some(email) = &identity.email else {
        return Err(ApiError::ForbiddenBecause {
            code: "email_not_verified",
            detail: "the provider did not vouch for an email address".into(),
        });
    };
    if let Some((_, sso)) = &provider.org {
        oidc::check_domain(sso, email)?;
    }
    let address = self::email(email)?;
    let user = match users::by_email(store, &address).await? {
        Some(existing) if existing.email_verified => existing,
        Some(unverified) => {
            // Someone registered this address without proving it; the provider just did. Their
            // password and sessions go, so a squatter keeps nothing.
            let (mut u, version) =
                users::load_versioned(store, unverified.id).await?.ok_or(ApiError::Unauthenticated)?;
            u.email_verified = true;
            u.password_hash = String::new();
            users::save(store, &u, version).await?;
            sessions::revoke_all(s, u.id, None).await?;
            u
        }
        None => {
            let now = s.clock.now_ms();
            let user = User {
                id: UserId::new(),
                email: address.clone(),
                email_verified: true,
                name: clean_name(identity.name.clone()).ok().flatten(),
                // No password: this user signs in through the provider (or sets one by reset).
                password_hash: String::new(),
                created_at_ms: now,
                password_changed_at_ms: now,
                mfa: None,
                mfa_pending: None,
            };
            if !users::create(store, &user).await? {
                return Err(ApiError::Conflict { code: "conflict", detail: "retry the login".into() });
            }
            let detail = json!({"method": "oidc", "provider": provider.name});
            sessions::record(s, user.id, "user.signed_up", Some(user.id.to_string()), ctx, detail).await?;
            user
        }
    };
    oidc::link(s, identity, user.id).await?;
    sessions::record(s, user.id, "user.identity_linked", None, ctx, json!({"provider": provider.name})).await?;
    Ok(user)
}

/// The public keys that verify access tokens (JSON Web Key Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The JWKS", content_type = "application/json")))]
async fn jwks(State(s): State<Services>) -> Result<Response, ApiError> {
    let mut res = axum::Json(s.tokens.signing_keys().await?.jwks().clone()).into_response();
    res.headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("public, max-age=300"));
    Ok(res)
}

/// Issuer metadata (OpenID Connect discovery), so any verifier finds the keys.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "auth",
    responses((status = 200, description = "Issuer metadata", content_type = "application/json")))]
async fn openid_configuration(State(s): State<Services>) -> Response {
    let issuer = &s.tokens.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint": format!("{issuer}/auth/login"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }))
    .into_response()
}
