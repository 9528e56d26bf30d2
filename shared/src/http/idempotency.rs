//! Idempotent `POST`s, as Stripe's API has them
//! (<https://docs.stripe.com/api/idempotent_requests>; the header is the IETF draft's
//! `Idempotency-Key`, draft-ietf-httpapi-idempotency-key-header): a client that sends a
//! request with `Idempotency-Key: <key>` may send it again, after a timeout or a dropped
//! connection, without the change happening twice.
//!
//! For an authenticated caller (a user's access token or an API key), the first answer to a
//! key is kept for 24 hours under the caller and the key:
//! - the same key with the same method, path and body gets that answer again (status, body,
//!   `Content-Type`, `Location`), with `Idempotent-Replayed: true`, and nothing runs;
//! - the same key with another request (method, path and query, or body: a JSON body by its
//!   value, so spacing and key order do not count) is refused: 422 `idempotency_key_reused`;
//! - the same key while its first request still runs is refused: 409
//!   `idempotency_key_in_use`, with `Retry-After`;
//! - answers that say nothing happened (4xx: refused, conflicting, over a limit; 503: an
//!   outage before any change, by the conventions' rule) are not kept, so a retry, perhaps
//!   after an upgrade or a fix, runs; a 500 (the outcome is unknown) is kept, as Stripe does;
//! - an answer marked `Cache-Control: no-store` or setting a cookie is not kept either.
//!
//! A request that panics or is cut off (a Lambda timeout) leaves its key held for the lease,
//! [`LEASE_SECS`]: retries meanwhile get 409, and after it the request may run again.
//!
//! A key is 1 to 255 bytes without control characters (else 400 `invalid_idempotency_key`);
//! a UUID v4 is the usual choice. Routes
//! whose answer holds a secret (tokens, an API key's secret, TOTP secrets and recovery codes)
//! accept the header but keep nothing: the table never holds a secret in the clear. So do
//! anonymous calls (sign-up, password-forgot), which have no caller to keep answers under.

use axum::body::Body;
use axum::extract::{FromRequestParts as _, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ApiError, Problem};
use crate::services::Services;
use crate::store::{Condition, Delete, Item, Put, StoreError, Update};
use crate::tenancy::Caller;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The answer header that marks a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// The longest key.
pub const MAX_KEY_LEN: usize = 255;
/// How long an answer is kept.
pub const RETENTION_SECS: i64 = 24 * 3600;
/// How long a request holds its key while it runs (a crashed one frees it then).
pub const LEASE_SECS: i64 = 60;
/// The largest answer kept (larger ones run again on a retry).
const MAX_KEPT_BODY: usize = 256 * 1024;

/// Routes whose answers hold secrets: the key is accepted, the answer never kept.
pub const NOT_KEPT: &[&str] = &[
    "/auth/login",
    "/auth/login/mfa",
    "/auth/refresh",
    "/auth/mfa/totp/enroll",
    "/auth/mfa/totp/confirm",
    "/accounts/{account_id}/api-keys",
    "/accounts/{account_id}/webhooks",
    "/accounts/{account_id}/webhooks/{endpoint_id}/rotate-secret",
];

#[derive(Serialize, Deserialize)]
struct Kept {
    status: String,
    fingerprint: String,
    holder: String,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    body: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid_key() -> Response {
    ApiError::BadRequest {
        code: "invalid_idempotency_key",
        detail: format!("`Idempotency-Key` is 1 to {MAX_KEY_LEN} characters, none of them control characters"),
    }
    .into_response()
}

/// The middleware (see the module documentation); `Router::layer`ed inside the routes, so it
/// sees the matched path.
pub async fn guard(State(services): State<Services>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(HEADER) else { return next.run(req).await };
    let key = raw.as_bytes();
    // Tab is the one control character a header value may hold (RFC 9110 section 5.5).
    if !(1..=MAX_KEY_LEN).contains(&key.len()) || key.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
        return invalid_key();
    }
    let key_hash = sha256_hex(key);
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    if NOT_KEPT.contains(&route.as_str()) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    // Only a caller the route would accept has answers kept; the route answers the others.
    let caller = match Caller::from_request_parts(&mut parts, &services).await {
        Ok(Caller::User(u)) => format!("user:{}", u.user_id),
        Ok(Caller::ApiKey(k)) => format!("apikey:{}", k.key_id),
        Err(_) => return next.run(Request::from_parts(parts, body)).await,
    };
    let Ok(bytes) = body.collect().await.map(http_body_util::Collected::to_bytes) else {
        // Only the body limit makes reading fail here.
        return Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response();
    };
    let fingerprint = {
        let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
        let mut material = format!("{} {target}\n", parts.method).into_bytes();
        // A JSON body counts by its value, not its bytes, so a client that serializes its
        // retry again (other spacing, another key order) makes the same request.
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(json) => material.extend(serde_json::to_vec(&json).unwrap_or_default()),
            Err(_) => material.extend_from_slice(&bytes),
        }
        sha256_hex(&material)
    };
    let record_key = crate::keys::idempotent_request(&caller, &key_hash);
    let holder = ulid::Ulid::new().to_string();
    let now_secs = services.clock.now_secs();
    let store = services.store.as_ref();
    let claim = Kept {
        status: "running".into(),
        fingerprint: fingerprint.clone(),
        holder: holder.clone(),
        code: None,
        content_type: None,
        location: None,
        body: None,
    };
    let claimed = match Item::from_record(record_key.clone(), &claim) {
        Ok(item) => store.put(Put::new(item.expiring_at(now_secs + LEASE_SECS)).if_not_exists()).await,
        Err(e) => Err(e),
    };
    match claimed {
        Ok(_) => {}
        Err(StoreError::ConditionFailed) => return earlier(&services, &record_key, &fingerprint).await,
        Err(e) => return ApiError::from(e).into_response(),
    }

    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = res.status();
    let nothing_happened =
        status.is_client_error() || (status.is_server_error() && status != StatusCode::INTERNAL_SERVER_ERROR);
    let cache_control = res.headers().get_all(header::CACHE_CONTROL);
    let not_to_keep = res.headers().contains_key(header::SET_COOKIE)
        || cache_control.iter().any(|v| v.to_str().is_ok_and(|v| v.contains("no-store")));
    if nothing_happened || not_to_keep {
        release(&services, &record_key, &holder).await;
        return res;
    }
    let (res_parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            release(&services, &record_key, &holder).await;
            tracing::error!(error = %e, "an answer's body could not be read");
            return ApiError::Unexpected(anyhow::anyhow!("an answer's body could not be read")).into_response();
        }
    };
    keep(&services, &record_key, &holder, status, &res_parts.headers, &bytes).await;
    Response::from_parts(res_parts, Body::from(bytes))
}

/// The answer to a key already taken: its kept answer, or why not.
async fn earlier(services: &Services, record_key: &crate::store::Key, fingerprint: &str) -> Response {
    let kept: Kept = match services.store.get(record_key).await {
        Ok(Some(item)) => match item.record() {
            Ok(k) => k,
            Err(e) => return ApiError::from(e).into_response(),
        },
        // Released (or expired) between the two calls: the retry may run.
        Ok(None) => {
            return ApiError::Conflict {
                code: "idempotency_key_in_use",
                detail: "a request with this `Idempotency-Key` has just finished: send it again".into(),
            }
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if kept.fingerprint != fingerprint {
        return ApiError::Invalid {
            code: "idempotency_key_reused",
            detail: "this `Idempotency-Key` was used for another request: use a new key for a new request".into(),
        }
        .into_response();
    }
    if kept.status != "done" {
        let mut res =
            Problem::new(StatusCode::CONFLICT, "idempotency_key_in_use", "A request with this key is running")
                .with_detail("the first request with this `Idempotency-Key` is still running: retry shortly")
                .with("retry_after", 1)
                .into_response();
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        return res;
    }
    let code = kept.code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
    let mut res = (code, Body::from(kept.body.unwrap_or_default())).into_response();
    let headers = res.headers_mut();
    for (name, value) in [(header::CONTENT_TYPE, kept.content_type), (header::LOCATION, kept.location)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    }
    headers.insert(HeaderName::from_static(REPLAYED), HeaderValue::from_static("true"));
    res
}

/// Keeps the answer for [`RETENTION_SECS`], if this request still holds the key.
async fn keep(
    services: &Services,
    record_key: &crate::store::Key,
    holder: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(body) = std::str::from_utf8(body).ok().filter(|b| b.len() <= MAX_KEPT_BODY) else {
        // Not kept: a retry runs again, as if no key had been sent.
        release(services, record_key, holder).await;
        return;
    };
    let update = Update::new(record_key.clone())
        .set("status", "done")
        .set("code", status.as_u16())
        .set("content_type", json!(text(header::CONTENT_TYPE)))
        .set("location", json!(text(header::LOCATION)))
        .set("body", body)
        .expires_at(Some(services.clock.now_secs() + RETENTION_SECS))
        .when(Condition::Equals("holder".into(), json!(holder)));
    if let Err(e) = services.store.update(update).await {
        // The change is made; only its replay is lost (a retry would run it again).
        tracing::warn!(error = %e, "could not keep the answer of an idempotent request");
    }
}

/// Frees the key for a retry.
async fn release(services: &Services, record_key: &crate::store::Key, holder: &str) {
    let delete = Delete::new(record_key.clone()).when(Condition::Equals("holder".into(), json!(holder)));
    if let Err(e) = services.store.delete(delete).await
        && !matches!(e, StoreError::ConditionFailed)
    {
        tracing::warn!(error = %e, "could not free an idempotency key; it frees itself within a minute");
    }
}
