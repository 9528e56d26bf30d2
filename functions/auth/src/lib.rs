//! The auth function: email + password sign-up with verification, login, rotating refresh
//! tokens with reuse detection, sessions, password reset and change, the user's profile
//! and own audit log, and the public keys (JWKS and OpenID discovery) other services use to
//! verify access tokens. Browsers may keep the refresh token in an `HttpOnly` cookie instead
//! ([`browser_session`]).
//!
//! Answers never reveal whether an email is registered: sign-up and password-forgot always
//! answer 202 after the same work (a password hash), and login fails the same way for an
//! unknown email and a wrong password.

pub mod browser_session;
pub mod oidc;
pub mod routes;
pub mod sessions;

use shared::services::Services;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

#[derive(utoipa::OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    tags((name = "auth", description = "Sign-up, login, sessions, passwords, the caller's profile"))
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "refresh_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                browser_session::COOKIE,
                "The browser session's refresh token (`refresh_token_delivery: cookie`), sent only to \
                 /auth/refresh and /auth/logout",
            ))),
        );
    }
}

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::signup::router())
        .merge(routes::login::router())
        .merge(routes::mfa::router())
        .merge(routes::sessions::router())
        .merge(routes::password::router())
        .merge(routes::me::router())
        .merge(routes::oidc::router())
        .merge(routes::saml::router())
        .merge(routes::well_known::router())
}

shared::function_routes!();
