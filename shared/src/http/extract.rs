//! Extractors whose rejections are problem bodies with stable codes. Details never echo
//! the client's values (a rejected body may hold a password).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Problem;

/// A JSON body (requires `Content-Type: application/json`). Also a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| Problem::from_status(r.status()))?;
        // Every request body of the API is a JSON object. serde would also read a struct from
        // an array of its fields in order (`[null, "x"]`), which no client means to send.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "The body does not have the expected shape",
            )
            .with_detail("the body must be a JSON object"));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

/// `application/json` or `application/<anything>+json`, parameters ignored (RFC 8259
/// section 11, RFC 6839 section 3.1).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    let suffix = subtype.len().checked_sub(5).and_then(|at| subtype.get(at..));
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_problem(r: &JsonRejection) -> Problem {
    match r {
        JsonRejection::MissingJsonContentType(_) => Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        JsonRejection::JsonSyntaxError(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "malformed_json", "The body is not valid JSON")
        }
        JsonRejection::JsonDataError(e) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "The body does not have the expected shape")
                .with_detail(redact_values(&e.body_text()))
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE),
        other => Problem::from_status(other.status()),
    }
}

/// Keeps serde's description of where and what was wrong, but hides the input's values:
/// serde quotes strings in `"` and other values and unknown names in backticks. What it
/// quotes after `expected` (the accepted variants and fields), a missing or duplicate
/// field's name and the accepted words of a boolean are the API's own, and stay.
fn redact_values(text: &str) -> String {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .or_else(|| text.strip_prefix("Failed to deserialize query string: "))
        .unwrap_or(text);
    let (head, tail) = expected_outside_quotes(text).map_or((text, ""), |i| text.split_at(i));
    let ours = ["missing field `", "duplicate field `", "provided string was not `"];
    // serde's message, after the path of the field it is about (`flags.x: `), if any.
    let message = head
        .split_once(": ")
        .filter(|(path, _)| path.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c)))
        .map_or(head, |(_, rest)| rest);
    let head = if ours.iter().any(|p| head.starts_with(p) || message.starts_with(p)) {
        head.to_owned()
    } else {
        hide_quoted(head)
    };
    format!("{head}{tail}").chars().take(300).collect()
}

/// Where serde's `, expected ...` starts, outside any quoted (client-supplied) value.
fn expected_outside_quotes(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None if text[i..].starts_with(", expected") => return Some(i),
            None => {}
        }
    }
    None
}

fn hide_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quote: Option<char> = None;
    for c in text.chars() {
        if (c == '"' || c == '`') && in_quote.is_none_or(|q| q == c) {
            if in_quote.is_none() {
                out.push(c);
                out.push('…');
                out.push(c);
                in_quote = Some(c);
            } else {
                in_quote = None;
            }
        } else if in_quote.is_none() {
            out.push(c);
        }
    }
    out
}

/// Path parameters.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(Problem::new(StatusCode::BAD_REQUEST, "invalid_path", "A path parameter is not valid"))
            }
            Err(other) => Err(Problem::from_status(other.status())),
        }
    }
}

/// Query-string parameters.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(Problem::new(StatusCode::BAD_REQUEST, "invalid_query", "A query parameter is not valid")
                    .with_detail(redact_values(&e.body_text())))
            }
            Err(other) => Err(Problem::from_status(other.status())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_quoted_values() {
        let s = redact_values(
            "Failed to deserialize the JSON body into the target type: password: invalid type: string \"hunter2\", expected u32 at line 1 column 22",
        );
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("password: invalid type"), "{s}");
        let s = redact_values("password: invalid type: integer `12345678901`, expected a string at line 1 column 25");
        assert!(!s.contains("12345678901"), "{s}");
        let s = redact_values("role: unknown variant `superadmin-secret`, expected one of `owner`, `admin`");
        assert!(!s.contains("superadmin-secret"), "{s}");
        assert!(s.starts_with("role: unknown variant"), "{s}");
        assert!(s.contains("expected one of `owner`, `admin`"), "the accepted values are the API's: {s}");
        let s = redact_values("missing field `rollout_percent` at line 1 column 17");
        assert!(s.contains("`rollout_percent`"), "a missing field is named: {s}");
        let s = redact_values("unknown field `owner_secret`, expected `name` or `description` at line 1 column 9");
        assert!(!s.contains("owner_secret") && s.contains("`name` or `description`"), "{s}");
        let s = redact_values("deleted: provided string was not `true` or `false`");
        assert!(s.contains("`true` or `false`"), "{s}");
        // A value that contains the words serde uses stays hidden.
        let s = redact_values("unknown field `x, expectedSECRET`, expected `name` at line 1 column 9");
        assert!(!s.contains("SECRET") && s.contains("expected `name`"), "{s}");
        let s = redact_values("name: invalid type: string \"missing field `hunter2`\", expected a number");
        assert!(!s.contains("hunter2"), "{s}");
    }
}
