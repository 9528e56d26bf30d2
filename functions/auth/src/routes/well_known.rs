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
