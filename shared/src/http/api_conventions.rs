//! The answers every route can give because of the shared conventions, written into the
//! OpenAPI document once instead of on each route: a malformed body or path or query is 400,
//! an oversized body 413, a wrong content type 415, a body of the wrong shape 422, a missing
//! or invalid credential 401 on authenticated routes, and a store or queue outage (or an
//! overload) 503 with `Retry-After`. Path parameters named `*_id` are ULIDs (26 Crockford base32 characters),
//! so the description refuses what the extractors refuse.
//!
//! Routes under `/accounts/{account_id}` also answer what the tenant extractor does: 403 for
//! a caller who is not a member or whose role does not allow the action, 409 for a deleted
//! account.
//!
//! Every `POST` takes an optional `Idempotency-Key` header (`http::idempotency`), with its 400,
//! 409 and 422 answers.
//!
//! Every route that takes a bearer credential (a user's or an API key) is rate limited
//! (`http::rate_limits`): its answers carry `RateLimit` and `RateLimit-Policy`, and it can
//! answer 429 `rate_limited` with `Retry-After`.
//!
//! What a route answers for its own reasons (403, 404 of a missing resource, 409, 429...)
//! stays on the route's own `#[utoipa::path]`.

use serde_json::{Value, json};
use utoipa::openapi::OpenApi;

/// A ULID as the id types parse it (Crockford base32, the first character at most `7`).
pub const ULID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// `doc` with the conventions' answers added to every operation (see the module docs).
///
/// # Errors
/// Never in practice: only if the document does not round-trip through JSON.
pub fn with_conventions(doc: &OpenApi) -> Result<OpenApi, serde_json::Error> {
    let mut value = serde_json::to_value(doc)?;
    if let Some(paths) = value.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let shared_params = item.get("parameters").cloned();
            for method in METHODS {
                if let Some(op) = item.get_mut(method) {
                    apply(path, method, op, shared_params.as_ref());
                }
            }
        }
    }
    serde_json::from_value(value)
}

fn apply(path: &str, method: &str, op: &mut Value, shared_params: Option<&Value>) {
    let post = method == "post";
    if post && let Some(o) = op.as_object_mut() {
        let params = o.entry("parameters").or_insert_with(|| json!([]));
        if let Some(list) = params.as_array_mut() {
            list.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "Makes a retry safe: the first answer to this key is kept 24 hours for the caller \
                                and answered again (with `Idempotent-Replayed: true`) to the same request; see the \
                                README's API conventions",
                "schema": {"type": "string", "minLength": 1, "maxLength": crate::http::idempotency::MAX_KEY_LEN}
            }));
        }
    }
    let mut in_path = false;
    let mut in_query = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params {
            match p.get("in").and_then(Value::as_str) {
                Some("path") => {
                    in_path = true;
                    if p.get("name").and_then(Value::as_str).is_some_and(|n| n.ends_with("_id") || n == "account") {
                        p["schema"] =
                            json!({"type": "string", "pattern": ULID_PATTERN, "minLength": 26, "maxLength": 26});
                    }
                }
                Some("query") => in_query = true,
                _ => {}
            }
        }
    }
    in_path |= shared_params.is_some_and(|p| p.as_array().is_some_and(|a| a.iter().any(|p| p["in"] == "path")));
    let has_body = op.get("requestBody").is_some();
    let authenticated = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    let operator = op.get("security").is_some_and(|s| s.to_string().contains("operator_token"));
    // The routes `http::rate_limits` limits: those that take a bearer credential.
    let bearer = op.get("security").is_some_and(crate::http::rate_limits::security_names_bearer);
    let responses = op.as_object_mut().map(|o| o.entry("responses").or_insert_with(|| json!({})));
    let Some(responses) = responses.and_then(Value::as_object_mut) else { return };
    let mut add = |status: &str, description: &str| {
        responses.entry(status.to_owned()).or_insert_with(|| problem(description));
    };
    if in_path {
        add("400", "A path parameter is not valid (`invalid_path`)");
        add("404", "No such resource (`not_found`)");
    }
    if path.starts_with("/accounts/{account_id}") {
        // What `tenancy::Tenant` answers before the route runs.
        add("403", "The caller's role in the account does not allow this (`forbidden`); a non-member gets 404");
        add("409", "The account is deleted; an owner can restore it (`account_deleted`)");
    }
    if in_query {
        add("400", "A query parameter is not valid (`invalid_query`)");
    }
    if post {
        add("400", "A request is malformed (`invalid_idempotency_key`...)");
    }
    if post && !has_body {
        // The body limit applies to every request, a route that reads no body included.
        add("413", "The body is larger than the configured limit (`payload_too_large`)");
    }
    if has_body {
        add("400", "The body is not valid JSON (`malformed_json`)");
        add("413", "The body is larger than the configured limit (`payload_too_large`)");
        add("415", "The body is not `application/json` (`unsupported_media_type`)");
        add("422", "The body does not have the expected shape (`invalid_body`)");
    }
    if authenticated {
        add("401", "No valid credential (`unauthenticated`), with `WWW-Authenticate: Bearer`");
    }
    if operator {
        add("403", "Operator access is off: no `GROUNDWORK_OPERATOR_TOKEN` is set (`operator_access_disabled`)");
    }
    if post && authenticated && !crate::http::idempotency::NOT_KEPT.contains(&path) {
        // Added to what the route says it answers with these statuses, not instead of it.
        for (status, text) in [
            ("409", "a request with this `Idempotency-Key` is still running (`idempotency_key_in_use`)"),
            ("422", "this `Idempotency-Key` was used for another request (`idempotency_key_reused`)"),
        ] {
            match responses.get_mut(status) {
                Some(r) => {
                    let before = r["description"].as_str().unwrap_or_default().to_owned();
                    r["description"] =
                        json!(if before.is_empty() { text.to_owned() } else { format!("{before}; or {text}") });
                }
                None => {
                    responses.insert(status.to_owned(), problem(text));
                }
            }
        }
    }
    if bearer {
        rate_limited(responses);
    }
    if path != "/openapi.json" {
        let unavailable = problem(
            "A store or queue outage (`unavailable`), or more password checks queued than the service takes \
             on (`overloaded`); retry after `Retry-After` seconds",
        );
        responses.entry("503".to_owned()).or_insert(unavailable);
    }
    // Every 429 and 503 carries it: the rate limits' and the brute-force limits', the outage
    // answer above, and the 503s that routes describe themselves (`/health`, the Stripe webhook).
    for status in ["429", "503"] {
        if let Some(headers) = responses
            .get_mut(status)
            .and_then(|r| r.as_object_mut())
            .and_then(|r| r.entry("headers").or_insert_with(|| json!({})).as_object_mut())
        {
            headers
                .entry("Retry-After")
                .or_insert_with(|| json!({"description": "Seconds to wait", "schema": {"type": "integer"}}));
        }
    }
}

/// The rate limits' fields on every answer, and their 429 (added to a route's own 429).
fn rate_limited(responses: &mut serde_json::Map<String, Value>) {
    let fields = json!({
        "RateLimit": {
            "description": "Per policy (`user`, `api-key`, `api-month`): requests left (`r`) and seconds until the \
                            quota is whole again (`t`), draft-ietf-httpapi-ratelimit-headers",
            "schema": {"type": "string"}
        },
        "RateLimit-Policy": {
            "description": "Per policy: its quota (`q`) and window in seconds (`w`)",
            "schema": {"type": "string"}
        }
    });
    // On every answer the route gives once a credential authenticates (a 401 for an invalid
    // one has none; the fields are optional).
    for (status, response) in responses.iter_mut() {
        if status == "401" {
            continue;
        }
        if let Some(r) = response.as_object_mut()
            && let Some(headers) = r.entry("headers").or_insert_with(|| json!({})).as_object_mut()
            && let Some(fields) = fields.as_object()
        {
            headers.extend(fields.clone());
        }
    }
    let text = "over a rate limit or the month's API quota (`rate_limited`): the problem names the `limit` and, \
                for an API key, the account's `plan` and the `upgrade_plan` that raises it; retry after \
                `Retry-After` seconds";
    let entry = responses.entry("429".to_owned()).or_insert_with(|| json!({"description": ""}));
    let before = entry["description"].as_str().unwrap_or_default().to_owned();
    *entry = problem(&if before.is_empty() { capitalized(text) } else { format!("{before}; or {text}") });
    // Retry-After joins them in `apply`, as on every 429.
    entry["headers"] = fields;
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}
