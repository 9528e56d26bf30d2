//! The auth function: email + password sign-up with verification, login, rotating refresh
//! tokens with reuse detection, sessions, password reset and change, the user's profile
//! and own audit log, and the public keys (JWKS and OpenID discovery) other services use to
//! verify access tokens.
//!
//! Answers never reveal whether an email is registered: sign-up and password-forgot always
//! answer 202 after the same work (a password hash), and login fails the same way for an
//! unknown email and a wrong password.

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
        .merge(routes::signup::router())
        .merge(routes::login::router())
        .merge(routes::mfa::router())
        .merge(routes::sessions::router())
        .merge(routes::password::router())
        .merge(routes::me::router())
        .merge(routes::oidc::router())
        .merge(routes::well_known::router())
}

shared::function_routes!();
