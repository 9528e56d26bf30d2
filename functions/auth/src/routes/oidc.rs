//! OpenID Connect login routes: the redirect to the provider and its callback (the
//! provider protocol itself is in [`crate::oidc`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::users::{self, User};
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, Query, RequestContext};
use shared::id::OrgId;
use shared::services::Services;
use shared::tenancy;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;
use crate::oidc;
use crate::sessions::{self, TokenPair};

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(oidc_start)).routes(routes!(oidc_callback))
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
    responses((status = 409, description = "Rent-auth mode: sign-in belongs to the external issuer (`external_auth`)", body = Problem, content_type = "application/problem+json"),
              (status = 302, description = "To the provider's login page"),
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
    // The domain rules are sso_user's, on the address in its one form.
    let org_rules = provider.org.as_ref().map(|(org, sso)| (*org, sso.allowed_domains.as_slice()));
    let user = sso_user(&s, "oidc", &provider.name, org_rules, &identity, &ctx).await?;
    // An address whose verified domain requires its organization's SSO signs in only there.
    if let Some(required) = tenancy::domains::sso_required(s.store.as_ref(), user.email.as_str()).await?
        && provider.org.as_ref().map(|(org, _)| *org) != Some(required)
    {
        return Err(tenancy::domains::sso_required_error(required));
    }
    if let Some((org, sso)) = &provider.org {
        oidc::join_jit(&s, *org, (sso.jit_account_id, sso.jit_role), user.id).await?;
    }
    let pair = sessions::start_with(&s, user.id, &ctx, false, provider.org.as_ref().map(|(org, _)| *org)).await?;
    let detail = json!({"method": "oidc", "provider": provider.name});
    sessions::record(&s, user.id, AuditAction::UserLoggedIn, Some(pair.session_id.clone()), &ctx, detail).await?;
    Ok(Json(pair))
}

fn not_verified() -> ApiError {
    ApiError::ForbiddenBecause {
        code: "domain_not_verified",
        detail: "this address has an account already: the organization must verify its domain before its single sign-on can sign it in".into(),
    }
}

/// The user an identity vouched for by a provider signs in as (`method` is `oidc` or
/// `saml`; `org` is the organization whose single sign-on it is, with its allowed domains).
pub(crate) async fn sso_user(
    s: &Services,
    method: &str,
    provider: &str,
    org: Option<(OrgId, &[String])>,
    identity: &oidc::Identity,
    ctx: &RequestContext,
) -> Result<User, ApiError> {
    // Two first sign-ins of one person at once (two tabs, a double post) race to create the
    // user; the loser finds the winner's user on a second look.
    match sso_user_once(s, method, provider, org, identity, ctx).await {
        Err(ApiError::Conflict { .. }) => sso_user_once(s, method, provider, org, identity, ctx).await,
        other => other,
    }
}

async fn sso_user_once(
    s: &Services,
    method: &str,
    provider: &str,
    org: Option<(OrgId, &[String])>,
    identity: &oidc::Identity,
    ctx: &RequestContext,
) -> Result<User, ApiError> {
    let store = s.store.as_ref();
    if let Some(id) = oidc::linked_user(s, identity).await? {
        let user = users::by_id(store, id).await.ok().flatten().ok_or(ApiError::Unauthenticated)?;
        // A link made earlier does not outlive the domain rule: once another organization
        // verifies the user's domain, only that organization's IdP speaks for them.
        if let Some((org, allowed)) = org {
            let verified = oidc::check_domain(s, org, allowed, user.email.as_str()).await?;
            // At a domain the organization has not verified, its IdP made this user only
            // because nobody held the address. Once the address's owner has a password of
            // their own (a reset link proves the mailbox), the IdP no longer speaks for them:
            // otherwise an IdP could create a user ahead of the real owner and keep a way in.
            if !verified && !user.password_hash.is_empty() {
                return Err(not_verified());
            }
        }
        return Ok(user);
    }
    let Some(email) = &identity.email else {
        return Err(ApiError::ForbiddenBecause {
            code: "email_not_verified",
            detail: "the provider did not vouch for an email address".into(),
        });
    };
    // The one form of the address (ASCII domain, lower case) before any rule compares it:
    // IdPs send what their directory holds, `Dave@Acme.com` or a Unicode domain included.
    let address = self::email(email)?;
    let verified = match org {
        Some((org, allowed)) => Some(oidc::check_domain(s, org, allowed, address.as_str()).await?),
        None => None,
    };
    let existing = users::by_email(store, &address).await?;
    if existing.is_some() && verified == Some(false) {
        // An organization's IdP is its admins' to configure: it may speak for an address
        // somebody already holds only at a domain the organization proved it holds.
        return Err(not_verified());
    }
    let user = match existing {
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
            let name = clean_name(identity.name.clone()).ok().flatten();
            // No password: this user signs in through the provider (or sets one by reset).
            let user = User::new(address.clone(), true, name, String::new(), now);
            if !users::create(store, &user).await? {
                return Err(ApiError::Conflict { code: "conflict", detail: "retry the login".into() });
            }
            let detail = json!({"method": method, "provider": provider});
            sessions::record(s, user.id, AuditAction::UserSignedUp, Some(user.id.to_string()), ctx, detail).await?;
            user
        }
    };
    oidc::link(s, identity, user.id).await?;
    sessions::record(s, user.id, AuditAction::UserIdentityLinked, None, ctx, json!({"provider": provider})).await?;
    Ok(user)
}
