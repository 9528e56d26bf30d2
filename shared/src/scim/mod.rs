//! SCIM 2.0 (RFC 7643, the core schema; RFC 7644, the protocol), storage-free: the resource
//! types Groundwork serves and their attributes ([`schema`]), the checks a resource written by
//! an identity provider goes through ([`schema::normalize`]), filters ([`filter`], RFC 7644
//! section 3.4.2.2), `PATCH` ([`patch`], section 3.5.2, with the variants Entra ID and Okta
//! send), the `attributes` / `excludedAttributes` projection ([`schema::project`]), and the
//! error body (section 3.12).
//!
//! Filters and `PATCH` paths are parsed by the `scim_v2` crate (its LALRPOP grammar, with a
//! nesting limit); evaluating them over JSON is here, because it depends on this schema
//! (which attributes compare case-exactly, which are multi-valued).
//!
//! Where the directory's resources are kept and what provisioning does to accounts lives in
//! the tenancy function; this module only speaks the protocol.

pub mod filter;
pub mod patch;
pub mod schema;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use crate::http::SCIM_JSON;
/// The schema of an error body (RFC 7644 section 3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The schema of a list answer (RFC 7644 section 3.4.2).
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The schema of a `PATCH` body (RFC 7644 section 3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The schema of a `/.search` body (RFC 7644 section 3.4.3).
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The most resources one list answer holds (advertised as `filter.maxResults`).
pub const MAX_RESULTS: usize = 200;

/// The `scimType` of a 400 answer (RFC 7644 section 3.12, table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    /// The filter does not parse or names an operator the attribute does not take.
    InvalidFilter,
    /// Too many results to return (the client should narrow its filter).
    TooMany,
    /// A value would break a uniqueness rule (409).
    Uniqueness,
    /// A read-only or immutable attribute was to change.
    Mutability,
    /// The body does not parse as the resource or message it should be.
    InvalidSyntax,
    /// A `PATCH` path does not parse or names no attribute.
    InvalidPath,
    /// A `PATCH` path's filter matched nothing, or a remove had no path.
    NoTarget,
    /// A value is missing, of the wrong type, or not acceptable.
    InvalidValue,
}

impl ScimType {
    /// The name, as RFC 7644 table 9 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::TooMany => "tooMany",
            Self::Uniqueness => "uniqueness",
            Self::Mutability => "mutability",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::NoTarget => "noTarget",
            Self::InvalidValue => "invalidValue",
        }
    }
}

/// A SCIM error answer: the status, the `scimType` where RFC 7644 defines one, and a detail
/// safe to show the identity provider's administrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCIM {status}: {detail}")]
pub struct ScimError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `scimType`, for 400 and 409.
    pub scim_type: Option<ScimType>,
    /// What went wrong.
    pub detail: String,
}

impl ScimError {
    /// A 400 with its `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, scim_type: Some(scim_type), detail: detail.into() }
    }

    /// An answer with `status` and no `scimType`.
    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, scim_type: None, detail: detail.into() }
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::status(StatusCode::NOT_FOUND, "no such resource in this directory")
    }

    /// 409 `uniqueness`.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::CONFLICT, scim_type: Some(ScimType::Uniqueness), detail: detail.into() }
    }

    /// The error body (RFC 7644 section 3.12; `status` is a string there).
    pub fn body(&self) -> serde_json::Value {
        let mut body =
            json!({"schemas": [ERROR_SCHEMA], "status": self.status.as_u16().to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t.as_str());
        }
        body
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body().to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scim\""));
        }
        response
    }
}

impl From<crate::error::ApiError> for ScimError {
    /// Groundwork's own errors in SCIM's body; a failure is logged as `ApiError` logs it, and
    /// its cause never reaches the provider.
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError;
        match &e {
            ApiError::Unavailable(cause) => tracing::error!(error = format!("{cause:#}"), "dependency unavailable"),
            ApiError::Unexpected(cause) => tracing::error!(error = format!("{cause:#}"), "unexpected error"),
            _ => {}
        }
        let problem = e.to_problem();
        let status = problem.status_code();
        let detail = problem.detail.unwrap_or(problem.title);
        match status {
            StatusCode::CONFLICT => Self::status(status, "the resource changed meanwhile; read it again and retry"),
            _ => Self::status(status, detail),
        }
    }
}

impl From<crate::store::StoreError> for ScimError {
    fn from(e: crate::store::StoreError) -> Self {
        crate::error::ApiError::from(e).into()
    }
}

/// A time as SCIM's `meta` gives it: RFC 3339, UTC, milliseconds (`2026-01-02T03:04:05.678Z`),
/// so times compare in code-point order.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
