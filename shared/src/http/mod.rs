//! The HTTP conventions every router gets from [`finish`]: problem+json for every error
//! (malformed JSON, wrong content type, oversized bodies, unknown routes and methods, a
//! handler that panicked), a body
//! size limit, a request id on every log line and response, one access log line and one EMF
//! metric line per request.
//!
//! Handlers extract bodies with [`Json`], paths with [`Path`] and queries with [`Query`]
//! from here rather than axum's, so every rejection is a problem body with a stable code.

pub mod api_conventions;
mod context;
pub mod cors;
mod extract;
pub mod extractors;
pub mod idempotency;
pub mod rate_limits;

pub use context::{RequestContext, record_tenant, record_user};
pub use extract::{Json, Path, Query};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::error::{PROBLEM_JSON, Problem};

/// The media type of SCIM bodies (RFC 7644 section 3.1), whose errors are not problems.
pub const SCIM_JSON: &str = "application/scim+json";
/// Where SCIM's endpoints are (RFC 7644 section 3.13's versioned base).
pub const SCIM_PREFIX: &str = "/scim/v2";

pub use crate::config::server::HttpSettings;

/// Applies the conventions to a router holding every route of a function (or, in the local
/// stack, of every function). Call it once, on the merged router.
pub fn finish(routes: Router, settings: &HttpSettings) -> Router {
    let mut app = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(problem_bodies));
    if !settings.cors_origins.is_empty() {
        // Outside the routes, so a preflight is answered before routing (no 405).
        app = app.layer(cors::layer(&settings.cors_origins)).layer(middleware::from_fn(cors::conventions));
    }
    app.layer(middleware::from_fn_with_state(settings.trusted_proxies, context::request_context))
}

/// The answer to a request whose handler panicked: a 500 problem like any other bug, rather
/// than a connection closed without an answer. The panic's message goes to the log (through
/// the panic hook), never into the body.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let mut res = Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR).into_response();
    res.extensions_mut().insert(Panicked);
    res
}

/// Marks the answer to a request whose handler panicked: the panic was reported to error
/// tracking by itself, so its 500 is not reported again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Panicked;

async fn not_found() -> Problem {
    Problem::from_status(StatusCode::NOT_FOUND).with_detail("no route matches this path")
}

async fn method_not_allowed() -> Problem {
    Problem::from_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// Turns every error response that is not already a problem (axum's plain-text rejections,
/// the body limit's 413...) into one, and adds the request id and path to every problem.
async fn problem_bodies(req: Request, next: Next) -> Response {
    let instance = req.uri().path().to_owned();
    let request_id = req.extensions().get::<RequestContext>().map(|c| c.request_id.to_string());
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let content_type = res.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    // SCIM answers its errors in its own body (RFC 7644 section 3.12), which identity
    // providers parse; they stay as they are.
    if content_type.starts_with(SCIM_JSON.as_bytes()) {
        return res;
    }
    let is_problem = content_type.starts_with(PROBLEM_JSON.as_bytes());
    let (mut parts, body) = res.into_parts();
    let mut problem: serde_json::Map<String, Value> = if is_problem {
        match body.collect().await.map(|b| serde_json::from_slice(&b.to_bytes())) {
            Ok(Ok(Value::Object(m))) => m,
            _ => to_map(Problem::from_status(status)),
        }
    } else {
        to_map(Problem::from_status(status))
    };
    if instance == SCIM_PREFIX || instance.starts_with(&format!("{SCIM_PREFIX}/")) {
        // Refused before a SCIM handler ran (a method the path does not take, a body over the
        // limit...): an identity provider reads SCIM's error body (RFC 7644 section 3.12).
        let detail = problem.get("detail").or_else(|| problem.get("title")).cloned().unwrap_or_default();
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": status.as_u16().to_string(),
            "detail": detail,
        });
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(body.to_string()));
    }
    problem.entry("instance").or_insert_with(|| Value::String(instance));
    if let Some(id) = request_id {
        problem.entry("request_id").or_insert(Value::String(id));
    }
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

fn to_map(p: Problem) -> serde_json::Map<String, Value> {
    match serde_json::to_value(p) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// Declares an HTTP function's `routes(services)` (its routes, unfinished: the local stack
/// merges them), `app(services)` (finished with the conventions: what Lambda serves) and
/// `api()` (its part of the OpenAPI document), from the crate's `openapi_router()`.
#[macro_export]
macro_rules! function_routes {
    () => {
        /// This function's routes, without the shared conventions (the local stack merges them).
        pub fn routes(services: $crate::services::Services) -> ::axum::Router {
            $crate::http::routes_of(openapi_router(), services)
        }

        /// This function's routes with the shared HTTP conventions: what Lambda serves.
        pub fn app(services: $crate::services::Services) -> ::axum::Router {
            $crate::http::app_of(openapi_router(), services)
        }

        /// This function's part of the OpenAPI document.
        pub fn api() -> ::utoipa::openapi::OpenApi {
            $crate::http::api_of(openapi_router())
        }
    };
}

/// A function's routes, declared once with their OpenAPI documentation.
pub type FunctionRouter = utoipa_axum::router::OpenApiRouter<crate::services::Services>;

/// The routes of `router`, bound to `services`, without the conventions (the local stack
/// merges every function's and finishes once).
pub fn routes_of(router: FunctionRouter, services: crate::services::Services) -> Router {
    router.split_for_parts().0.with_state(services)
}

/// The routes of `router` with the conventions applied: what a function serves on Lambda.
pub fn app_of(router: FunctionRouter, services: crate::services::Services) -> Router {
    let settings = services.config.http.clone();
    let (routes, doc) = router.split_for_parts();
    let limited = rate_limits::LimitedRoutes::of(&doc);
    finish(guarded(routes.with_state(services.clone()), services, limited), &settings)
}

/// `routes` with the layers that need the caller: rate limits ([`rate_limits`], outermost,
/// which authenticates the caller once for the request) and idempotent `POST`s
/// ([`idempotency`]). Layered on the routes themselves, inside [`finish`]'s conventions, so
/// they see the matched route and a bounded body.
///
/// `limited` are the routes the rate limits apply to (those of the API description that take
/// a bearer credential: [`rate_limits::LimitedRoutes::of`]).
pub fn guarded(routes: Router, services: crate::services::Services, limited: rate_limits::LimitedRoutes) -> Router {
    routes
        .layer(middleware::from_fn_with_state(services.clone(), idempotency::guard))
        .layer(middleware::from_fn_with_state((services, limited), rate_limits::guard))
}

/// The OpenAPI description of `router`'s routes.
pub fn api_of(router: FunctionRouter) -> utoipa::openapi::OpenApi {
    router.split_for_parts().1
}

/// A JSON response with a status (for 201/202 answers).
pub fn json_with_status<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

/// The paging of a list: `?limit=` and the opaque `?cursor=` of the previous page.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Items per page (1 to 100, default 50); outside that range, 400 `invalid_query`.
    #[serde(default, deserialize_with = "bounded::<_, 1, 100>")]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Reads an optional number that must lie in `MIN..=MAX` (for `deserialize_with`): a value
/// outside is refused (400 `invalid_query` or 422 `invalid_body`), never clamped, so what
/// the API description's `minimum`/`maximum` refuse, the code refuses too.
///
/// # Errors
/// A value that is not a `u32` or lies outside the range.
pub fn bounded<'de, D: serde::Deserializer<'de>, const MIN: u32, const MAX: u32>(
    d: D,
) -> Result<Option<u32>, D::Error> {
    d.deserialize_any(Bounded::<MIN, MAX>)
}

/// JSON Schema's `integer` includes numbers with a zero fraction (`1.0`), and a query string
/// holds text: both are read, `null` is absent.
struct Bounded<const MIN: u32, const MAX: u32>;

impl<const MIN: u32, const MAX: u32> serde::de::Visitor<'_> for Bounded<MIN, MAX> {
    type Value = Option<u32>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an integer from {MIN} to {MAX}")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        match u32::try_from(n) {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Some(n)),
            _ => Err(E::custom(format!("from {MIN} to {MAX}"))),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
        self.visit_u64(u64::try_from(n).map_err(|_| E::custom(format!("from {MIN} to {MAX}")))?)
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
        if n.fract() != 0.0 || !(f64::from(MIN)..=f64::from(MAX)).contains(&n) {
            return Err(E::custom(format!("an integer from {MIN} to {MAX}")));
        }
        // In range and integral: the conversion is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Some(n as u32))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.visit_u64(s.parse::<u64>().map_err(|_| E::custom(format!("an integer from {MIN} to {MAX}")))?)
    }
}

impl PageParams {
    /// The page size (50 unless given).
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(50)
    }

    /// The decoded cursor.
    ///
    /// # Errors
    /// 400 `invalid_cursor`.
    pub fn cursor(&self) -> Result<Option<crate::store::Cursor>, crate::error::ApiError> {
        self.cursor.as_deref().map(crate::store::Cursor::decode).transpose().map_err(|_| {
            crate::error::ApiError::BadRequest { code: "invalid_cursor", detail: "the cursor is not valid".into() }
        })
    }
}
