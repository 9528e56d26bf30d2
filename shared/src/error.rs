//! One error type for every HTTP handler, and the one place that maps errors to an HTTP
//! status and an RFC 9457 `application/problem+json` body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::queue::QueueError;
use crate::store::StoreError;

/// The media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: a stable `code` (also in `type` as `urn:groundwork:problem:<code>`),
/// a human title, the status, and an optional detail safe to show the client.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:groundwork:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short, human-readable summary of the problem kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// A stable, machine-readable error code.
    pub code: String,
    /// What went wrong in this occurrence, if it is safe to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extra members (`request_id`, `retry_after`, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem of kind `code` with `status`.
    pub fn new(status: StatusCode, code: &str, title: &str) -> Self {
        Self {
            type_uri: format!("urn:groundwork:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: None,
            extensions: Map::new(),
        }
    }

    /// The generic problem for a bare status code.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, title) = match status.as_u16() {
            400 => ("bad_request", "The request is malformed"),
            401 => ("unauthenticated", "Authentication is required"),
            403 => ("forbidden", "Not allowed"),
            404 => ("not_found", "No such resource"),
            405 => ("method_not_allowed", "Method not allowed on this resource"),
            406 => ("not_acceptable", "Not acceptable"),
            408 => ("request_timeout", "The request took too long"),
            409 => ("conflict", "The resource changed or already exists"),
            413 => ("payload_too_large", "The request body is too large"),
            415 => ("unsupported_media_type", "Send the body as application/json"),
            422 => ("invalid_body", "The request body is not valid"),
            429 => ("too_many_requests", "Too many requests"),
            503 => ("unavailable", "Temporarily unavailable; retry later"),
            s if s >= 500 => ("internal", "Internal error"),
            _ => ("error", "The request failed"),
        };
        Self::new(status, code, title)
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// The status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.extensions.get("retry_after").and_then(Value::as_u64);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 section 3: a 401 names the scheme the client should use.
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The error every handler returns. Domain errors convert into it; it converts into a
/// [`Problem`] response. 5xx details are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("bad request ({code}): {detail}")]
    BadRequest {
        /// A stable code.
        code: &'static str,
        /// What is wrong, safe to show.
        detail: String,
    },
    /// 401: no valid credentials.
    #[error("unauthenticated")]
    Unauthenticated,
    /// 401 from a sign-in route: the email, password or second factor is wrong (code
    /// `invalid_credentials`, so a client tells it from an expired access token).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 403: authenticated, but not allowed.
    #[error("forbidden")]
    Forbidden,
    /// 403 with a reason the caller can act on (enable 2FA...).
    #[error("forbidden ({code}): {detail}")]
    ForbiddenBecause {
        /// A stable code.
        code: &'static str,
        /// What to do, safe to show.
        detail: String,
    },
    /// 410: it existed and is gone for good (an expired link...).
    #[error("gone ({code}): {detail}")]
    Gone {
        /// A stable code.
        code: &'static str,
        /// What is wrong, safe to show.
        detail: String,
    },
    /// 404: no such resource (or not visible to the caller).
    #[error("not found")]
    NotFound,
    /// 402: the account's plan does not allow more of something (RFC 9110 section 15.5.3):
    /// problem code `plan_limit`, with `limit`, `allowed` and `upgrade` (the route that
    /// changes the plan) as extension members, so a frontend can offer the upgrade.
    #[error("plan limit {limit} reached ({allowed} allowed)")]
    PlanLimit {
        /// The plan's limit, as the catalogue names it (`projects`).
        limit: &'static str,
        /// What the plan allows.
        allowed: u64,
        /// Where to upgrade (`/accounts/<id>/billing/change-plan`).
        upgrade: String,
    },
    /// 409: the state does not allow this (already exists, changed concurrently...).
    #[error("conflict ({code}): {detail}")]
    Conflict {
        /// A stable code.
        code: &'static str,
        /// What is wrong, safe to show.
        detail: String,
    },
    /// 422: the body parsed but a value is not acceptable.
    #[error("invalid ({code}): {detail}")]
    Invalid {
        /// A stable code.
        code: &'static str,
        /// What is wrong, safe to show.
        detail: String,
    },
    /// 429: slow down.
    #[error("too many requests")]
    TooManyRequests {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 429 with a `code` naming the limit reached (`event_rate_limited`...), and its detail.
    #[error("limit reached ({code}): {detail}")]
    LimitReached {
        /// The problem's code.
        code: &'static str,
        /// Which limit, safe to show.
        detail: String,
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 503: more work of this kind is waiting than the process takes on (problem code
    /// `overloaded`: password checks queued past their bound); retrying later may work.
    #[error("overloaded")]
    Overloaded {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 503: a dependency is down; the request may be retried.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500: a bug or an unexpected failure.
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 2;

impl ApiError {
    /// The problem this error is shown as.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::BadRequest { code, detail } => {
                Problem::new(StatusCode::BAD_REQUEST, code, "The request is malformed").with_detail(detail.clone())
            }
            Self::Unauthenticated => Problem::from_status(StatusCode::UNAUTHORIZED),
            Self::InvalidCredentials => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "The credentials are not valid")
                    .with_detail("the email address, password or code is not right")
            }
            Self::Forbidden => Problem::from_status(StatusCode::FORBIDDEN),
            Self::ForbiddenBecause { code, detail } => {
                Problem::new(StatusCode::FORBIDDEN, code, "Not allowed").with_detail(detail.clone())
            }
            Self::Gone { code, detail } => {
                Problem::new(StatusCode::GONE, code, "No longer available").with_detail(detail.clone())
            }
            Self::NotFound => Problem::from_status(StatusCode::NOT_FOUND),
            Self::PlanLimit { limit, allowed, upgrade } => {
                Problem::new(StatusCode::PAYMENT_REQUIRED, "plan_limit", "The plan's limit is reached")
                    .with_detail(format!("the plan allows at most {allowed} of `{limit}`: upgrade to add more"))
                    .with("limit", *limit)
                    .with("allowed", *allowed)
                    .with("upgrade", upgrade.clone())
            }
            Self::Conflict { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict with the current state").with_detail(detail.clone())
            }
            Self::Invalid { code, detail } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, "A value is not acceptable")
                    .with_detail(detail.clone())
            }
            Self::TooManyRequests { retry_after_secs } => {
                Problem::from_status(StatusCode::TOO_MANY_REQUESTS).with("retry_after", *retry_after_secs)
            }
            Self::LimitReached { code, detail, retry_after_secs } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, code, "Too Many Requests")
                    .with_detail(detail.clone())
                    .with("retry_after", *retry_after_secs)
            }
            Self::Overloaded { retry_after_secs } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Too busy to take the request now")
                    .with_detail("more requests of this kind are waiting than the service takes on; retry later")
                    .with("retry_after", *retry_after_secs)
            }
            Self::Unavailable(_) => {
                Problem::from_status(StatusCode::SERVICE_UNAVAILABLE).with("retry_after", RETRY_AFTER_UNAVAILABLE_SECS)
            }
            Self::Unexpected(_) => Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Unavailable(e) => tracing::error!(error = format!("{e:#}"), "dependency unavailable"),
            Self::Overloaded { .. } => tracing::warn!("request refused: too much work of its kind is queued"),
            Self::Unexpected(e) => tracing::error!(error = format!("{e:#}"), "unexpected error"),
            _ => {}
        }
        self.to_problem().into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ConditionFailed | StoreError::TransactionCanceled { .. } => Self::Conflict {
                code: "conflict",
                detail: "the resource changed or already exists; read it again and retry".into(),
            },
            StoreError::Invalid(detail) => Self::BadRequest { code: "invalid_request", detail },
            StoreError::Corrupt(d) => Self::Unexpected(anyhow::anyhow!("corrupt data: {d}")),
            StoreError::Unavailable(e) => Self::Unavailable(e),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(e) => Self::Unavailable(e),
            other => Self::Unexpected(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_store_is_a_503_with_retry_after() {
        let res = ApiError::from(StoreError::Unavailable(anyhow::anyhow!("down"))).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "unavailable");
        assert_eq!(v["type"], "urn:groundwork:problem:unavailable");
        assert_eq!(v["status"], 503);
        assert!(!body.windows(4).any(|w| w == b"down"), "internal detail leaked");
    }

    #[tokio::test]
    async fn overloaded_is_a_503_with_its_code_and_retry_after() {
        let res = ApiError::Overloaded { retry_after_secs: 1 }.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((v["code"].as_str(), v["status"].as_u64()), (Some("overloaded"), Some(503)));
    }

    #[test]
    fn unauthenticated_names_the_bearer_scheme() {
        let res = ApiError::Unauthenticated.into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn condition_failures_are_conflicts() {
        assert_eq!(ApiError::from(StoreError::ConditionFailed).to_problem().status, 409);
        assert_eq!(ApiError::from(StoreError::Invalid("bad cursor".into())).to_problem().status, 400);
    }
}
