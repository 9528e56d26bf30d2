//! The public keys (JWKS) and issuer metadata other services verify access tokens with.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::error::ApiError;
use shared::services::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(jwks)).routes(routes!(openid_configuration))
}

/// In rent-auth mode this server issues no tokens: its keys and metadata would only mislead
/// a verifier, which must use the external issuer's.
fn not_an_issuer(s: &Services) -> Result<(), ApiError> {
    if s.tokens.external.is_some() { Err(ApiError::NotFound) } else { Ok(()) }
}

/// The public keys that verify access tokens (JSON Web Key Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The JWKS", content_type = "application/json"),
              (status = 404, description = "Rent-auth mode: tokens come from the external issuer, whose keys verify them",
               body = shared::error::Problem, content_type = "application/problem+json")))]
async fn jwks(State(s): State<Services>) -> Result<Response, ApiError> {
    not_an_issuer(&s)?;
    let mut res = axum::Json(s.tokens.signing_keys().await?.jwks().clone()).into_response();
    res.headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("public, max-age=300"));
    Ok(res)
}

/// Issuer metadata (OpenID Connect discovery), so any verifier finds the keys.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "auth",
    responses((status = 200, description = "Issuer metadata", content_type = "application/json"),
              (status = 404, description = "Rent-auth mode: the external issuer publishes its own metadata",
               body = shared::error::Problem, content_type = "application/problem+json")))]
async fn openid_configuration(State(s): State<Services>) -> Result<Response, ApiError> {
    not_an_issuer(&s)?;
    let issuer = &s.tokens.issuer;
    Ok(axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint": format!("{issuer}/auth/login"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }))
    .into_response())
}
