//! Cross-origin requests from browser apps (CORS, the Fetch standard): a single-page app on
//! another origin calls the API with credentials. Only origins listed in
//! [`HttpSettings::cors_origins`](crate::config::server::HttpSettings) are answered; a request
//! from any other origin gets no CORS header at all, so the browser withholds the answer
//! (the request itself is served as usual). A preflight is answered 204 by this layer
//! without reaching a route; for a method or header outside the lists below the browser
//! refuses, as the answer names only these.
//!
//! The same lists go to the HTTP API's `CorsConfiguration` in `template.yaml` (a test keeps
//! them equal), since on AWS API Gateway answers CORS itself.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The methods a browser app may use.
pub const ALLOWED_METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
/// The request headers a browser app may send (`x-requested-with`: what a request the
/// browser session's cookie authenticates must carry, its CSRF defence).
pub const ALLOWED_HEADERS: [&str; 5] =
    ["authorization", "content-type", "idempotency-key", "x-request-id", "x-requested-with"];
/// The response headers a browser app may read.
pub const EXPOSED_HEADERS: [&str; 6] =
    ["x-request-id", "retry-after", "location", "idempotent-replayed", "ratelimit", "ratelimit-policy"];
/// How long a browser may cache a preflight's answer.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins` (serialized origins, as [`HttpSettings`] holds them).
///
/// [`HttpSettings`]: crate::config::server::HttpSettings
pub fn layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(ALLOWED_METHODS.to_vec())
        .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static).to_vec())
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static).to_vec())
        .allow_credentials(true)
        .max_age(MAX_AGE)
}

/// Around the CORS layer: a preflight it answers carries no content (204, not 200), and an
/// answer to an origin that is not allowed carries no CORS header at all (the layer would
/// still name the methods, headers and credentials).
pub(super) async fn conventions(req: Request, next: Next) -> Response {
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = next.run(req).await;
    if preflight && res.status() == StatusCode::OK {
        *res.status_mut() = StatusCode::NO_CONTENT;
    }
    if !res.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in [
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            res.headers_mut().remove(name);
        }
    }
    res
}
