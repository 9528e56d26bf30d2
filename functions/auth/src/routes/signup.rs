//! Sign-up and email verification. Sign-up always answers 202 after the same work (a
//! password hash), so answers never tell whether an address is registered.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::rate_limit::{self, SIGNUP_PER_IP, VERIFY_PER_EMAIL};
use shared::auth::users::{self, Purpose, User};
use shared::error::{ApiError, Problem};
use shared::http::{Json, RequestContext};
use shared::jobs::Job;
use shared::mail::templates::Email;
use shared::secret::Secret;
use shared::services::Services;
use shared::tenancy::domains;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::me::Me;
use super::*;
use crate::sessions::{self};

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(signup)).routes(routes!(verify_email))
}

/// The sign-up request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// The email address; a verification link is sent there.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// At least 10 characters, not easy to guess.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 128)]
    pub password: Secret<String>,
    /// A display name.
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
    /// The token of the page's bot check (Turnstile, hCaptcha or reCAPTCHA), required when
    /// the deployment turns the check on (`GROUNDWORK_CHALLENGE_PROVIDER`).
    #[schema(max_length = 2048)]
    pub challenge_token: Option<String>,
}

/// Signs up with email and password. Always 202: a verification email is sent to a new
/// address, or sent again to an unverified one; nothing tells whether it was registered.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 409, description = "Rent-auth mode: sign-in belongs to the external issuer (`external_auth`)", body = Problem, content_type = "application/problem+json"),
              (status = 202, body = Accepted), (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "The address's verified domain requires its organization's single sign-on (`sso_required`)", body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn signup(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<SignupRequest>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    let address = email(&req.email)?;
    if let Some(org) = domains::sso_required(s.store.as_ref(), address.as_str()).await? {
        return Err(domains::sso_required_error(org));
    }
    strong(&req.password, &address, &s)?;
    let name = clean_name(req.name)?;
    let now = s.clock.now_ms();
    let attempt = rate_limit::claim(s.store.as_ref(), SIGNUP_PER_IP, &client_key(&ctx), now).await?;
    // After the limit: each check is a call out, which a flood must not multiply.
    bot_check(&s, req.challenge_token.as_deref(), &ctx).await?;
    shared::auth::email_policy::check(s.config.auth.signup_email_policy, &address)?;
    not_breached(&req.password, &s).await?;
    // Hash first, always: the answer takes as long whether the address is new or not.
    let hash = match s.passwords.hash(&req.password).await {
        Ok(hash) => hash,
        Err(e) => {
            // Refused (a full hashing queue) before anything happened: the client is told
            // to retry shortly, so this sign-up does not count against its client.
            attempt.release(s.store.as_ref()).await?;
            return Err(e);
        }
    };
    let user = User::new(address.clone(), false, name, hash.clone(), now);
    let target = if users::create(s.store.as_ref(), &user).await? {
        // The same work as a sign-up for a taken address (below), so time tells nothing.
        // The user exists now: a full hashing queue must not turn this into a 503.
        let _ = s.passwords.verify_dummy(&req.password).await;
        sessions::record(&s, user.id, AuditAction::UserSignedUp, Some(user.id.to_string()), &ctx, json!({})).await?;
        Some(user)
    } else {
        // Taken. The same sign-up again (a retry after a timeout, a double click: the same
        // password) only gets its link again. Otherwise, if the address was never confirmed,
        // two people may be claiming it (the owner and someone who signed up with it first):
        // the record becomes contested, so proving the address sets no one's password and the
        // owner chooses one by a reset link; this sign-up gets its link too. If it was
        // confirmed, say nothing.
        match users::by_email(s.store.as_ref(), &address).await?.filter(|u| !u.email_verified) {
            Some(u) if !u.contested && s.passwords.verify(&req.password, &u.password_hash).await? => Some(u),
            Some(u) => Some(contest(&s, u.id).await?),
            None => {
                s.passwords.verify_dummy(&req.password).await?;
                None
            }
        }
    };
    if let Some(u) = target {
        send_verification(&s, &u, &hash).await?;
    }
    Ok(accepted())
}

/// Marks an unverified user signed up for again; returns the record.
async fn contest(s: &Services, id: shared::id::UserId) -> Result<User, ApiError> {
    let (mut user, version) = users::load_versioned(s.store.as_ref(), id)
        .await?
        .ok_or(ApiError::Conflict { code: "conflict", detail: "the account changed meanwhile: retry".into() })?;
    if !user.contested && !user.email_verified {
        user.contested = true;
        users::save(s.store.as_ref(), &user, version).await?;
    }
    Ok(user)
}

/// Emails `user` a link that verifies the address for the sign-up that chose `password_hash`,
/// unless the address is suppressed (it bounced or complained) or was sent
/// [`VERIFY_PER_EMAIL`] links this hour: then nothing is sent, and nothing tells.
async fn send_verification(s: &Services, user: &User, password_hash: &str) -> Result<(), ApiError> {
    if !mailable(s, &user.email, VERIFY_PER_EMAIL).await? {
        return Ok(());
    }
    let expires = s.clock.now_secs() + i64::from(VERIFY_TTL_HOURS) * 3600;
    let token = users::issue_verification(s.store.as_ref(), user.id, password_hash, expires).await?;
    let email = Email::VerifyEmail { link: link(s, "/verify-email", &token), expires_in_hours: VERIFY_TTL_HOURS };
    s.jobs().enqueue(Job::SendEmail { to: user.email.clone(), email }).await?;
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

/// Confirms an email address with the token from the verification email.
#[utoipa::path(post, path = "/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses((status = 200, body = Me), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn verify_email(
    State(s): State<Services>,
    ctx: RequestContext,
    Json(req): Json<TokenRequest>,
) -> Result<Json<Me>, ApiError> {
    let store = s.store.as_ref();
    let token = users::redeemable(store, Purpose::VerifyEmail, req.token.expose()).await?.ok_or_else(invalid_token)?;
    let (mut user, version) = users::load_versioned(store, token.link.user_id).await?.ok_or_else(invalid_token)?;
    if user.email_verified {
        // Proven already (by another link): the link is simply used up.
        users::redeem(store, token, Vec::new()).await?;
        return Ok(Json(Me::from(&user)));
    }
    user.email_verified = true;
    let contested = std::mem::take(&mut user.contested);
    if contested {
        // Several sign-ups chose passwords and none is proven to be the owner's: keep none.
        user.password_hash = String::new();
    } else if let Some(hash) = token.link.password_hash.clone() {
        // The only sign-up's password: whoever proved the address chose it.
        user.password_hash = hash;
    }
    user.password_changed_at_ms = s.clock.now_ms();
    // The link is used, the user saved and the welcome email staged in one transaction
    // (`shared::jobs::outbox`): a failure before it leaves the link working for the retry,
    // and nothing after it fails the request.
    let welcome = Job::SendEmail { to: user.email.clone(), email: Email::Welcome { name: user.name.clone() } };
    let welcome = s.jobs().stage(welcome, Some(format!("welcome:{}", user.id)))?;
    if contested {
        // The holder of the link controls the mailbox: a reset link lets them choose one.
        // Sent first: a retry after a failure below sends a newer one, which supersedes it.
        super::password::send_reset_link(&s, &user).await?;
    }
    if !users::redeem(store, token, vec![users::save_op(&user, version)?, welcome.op()]).await? {
        return Err(invalid_token());
    }
    s.jobs().dispatch(welcome).await;
    sessions::record_after_commit(&s, user.id, AuditAction::UserEmailVerified, None, &ctx, json!({})).await;
    Ok(Json(Me::from(&user)))
}
