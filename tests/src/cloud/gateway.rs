//! The HTTP API as API Gateway serves it: each request matched to the route the template's
//! `HttpApi` events declare (the most specific one: literal segments before `{param}`, a
//! `{proxy+}` last), sent to that route's function as a payload format 2.0 event, and the
//! function's answer turned back into HTTP. A function that fails, crashes or times out
//! gets API Gateway's own answers (500 `Internal Server Error`, 503 `Service Unavailable`).
//!
//! Source: Amazon API Gateway Developer Guide, "Create AWS Lambda proxy integrations for
//! HTTP APIs" (payload format version 2.0) and "Routes for HTTP APIs".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::functions::{Function, Invocation};

/// One route of the HTTP API.
#[derive(Debug, Clone)]
pub struct Route {
    /// Upper-case method, or `ANY`.
    pub method: String,
    /// The path pattern (`/accounts/{account_id}`).
    pub path: String,
    /// The logical id of the function it invokes.
    pub function: String,
}

impl Route {
    /// The route key (`POST /auth/signup`).
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path parameters when `path` matches, with the route's specificity (its literal
    /// segments count most).
    fn matches(&self, method: &str, path: &str) -> Option<(usize, HashMap<String, String>)> {
        if self.method != "ANY" && self.method != method {
            return None;
        }
        let method_bonus = usize::from(self.method != "ANY");
        // Segments as sent: a trailing or doubled slash makes an empty segment, which no
        // `{param}` or literal matches.
        let pattern: Vec<&str> = self.path.strip_prefix('/').unwrap_or(&self.path).split('/').collect();
        let actual: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let mut params = HashMap::new();
        let mut literal = 0;
        for (i, segment) in pattern.iter().enumerate() {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                // A greedy parameter takes at least one segment.
                let rest = actual.get(i..)?.join("/");
                if rest.is_empty() {
                    return None;
                }
                params.insert(name.to_owned(), rest);
                return Some((literal * 4 + method_bonus, params));
            }
            let value = actual.get(i)?;
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if value.is_empty() {
                    return None;
                }
                params.insert(name.to_owned(), (*value).to_owned());
            } else if segment != value {
                return None;
            } else {
                literal += 1;
            }
        }
        // An exact route outranks a greedy one with as many literal segments.
        (pattern.len() == actual.len()).then_some((literal * 4 + 2 + method_bonus, params))
    }

    /// Whether the route ends in a greedy `{name+}` parameter.
    fn is_greedy(&self) -> bool {
        self.path.ends_with("+}")
    }
}

/// The gateway's state: the routes, the functions, and the faults it saw.
#[derive(Clone)]
pub struct Gateway {
    /// The template's routes.
    pub routes: Arc<Vec<Route>>,
    /// The functions, by logical id.
    pub functions: Arc<HashMap<String, Arc<Function>>>,
    /// What went wrong, in words naming the function (init failures, crashes, timeouts, a
    /// route whose function has no such route).
    pub faults: Arc<Mutex<Vec<String>>>,
    /// The API's id (`requestContext.apiId`).
    pub api_id: String,
}

/// API Gateway's payload limit for HTTP APIs (10 MB; "Quotas for configuring and running
/// an HTTP API").
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// Lambda's synchronous invocation payload limit (6 MB).
const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// API Gateway's own answer.
pub fn gateway_answer(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json"), ("apigw-requestid", "cloud-in-a-box")],
        json!({"message": message}).to_string(),
    )
        .into_response()
}

fn is_text(headers: &HeaderMap) -> bool {
    let kind = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    kind.is_empty()
        || kind.starts_with("text/")
        || kind.contains("json")
        || kind.contains("xml")
        || kind.contains("x-www-form-urlencoded")
        || kind.contains("javascript")
}

/// The parts of an incoming request an event is made of.
pub struct Incoming<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI (path and query).
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub peer: SocketAddr,
    /// The body.
    pub body: &'a Bytes,
}

/// The payload format 2.0 event API Gateway sends for this request.
pub fn event(route: &Route, params: &HashMap<String, String>, request: &Incoming<'_>, api_id: &str) -> Value {
    let Incoming { method, uri, headers, peer, body } = *request;
    let mut joined: serde_json::Map<String, Value> = serde_json::Map::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()));
            continue;
        }
        // Repeated headers are joined with commas.
        match joined.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                joined.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let source_ip = peer.ip().to_string();
    // API Gateway appends the client's address and says how it was reached.
    let forwarded = match joined.get("x-forwarded-for").and_then(Value::as_str) {
        Some(existing) => format!("{existing}, {source_ip}"),
        None => source_ip.clone(),
    };
    joined.insert("x-forwarded-for".into(), Value::String(forwarded));
    joined.insert("x-forwarded-proto".into(), Value::String("https".into()));
    joined.insert("x-forwarded-port".into(), Value::String("443".into()));
    let query = uri.query().unwrap_or("");
    let mut parameters: serde_json::Map<String, Value> = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match parameters.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                parameters.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    let now = super::now();
    let request_id = ulid::Ulid::new().to_string();
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.key(),
        "rawPath": uri.path(),
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": super::stack::ACCOUNT,
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or_default(),
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": route.key(),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(parameters);
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    if !body.is_empty() {
        if is_text(headers) && std::str::from_utf8(body).is_ok() {
            event["body"] = Value::String(String::from_utf8_lossy(body).into_owned());
        } else {
            event["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(body));
            event["isBase64Encoded"] = Value::Bool(true);
        }
    }
    event
}

/// The HTTP response for a function's payload 2.0 answer. An answer without `statusCode`
/// is a 200 whose body is the answer itself, as API Gateway reads it.
fn response(answer: &Value) -> Option<Response> {
    if answer.get("statusCode").is_none() {
        return Some((StatusCode::OK, [("content-type", "application/json")], answer.to_string()).into_response());
    }
    let status = StatusCode::from_u16(u16::try_from(answer["statusCode"].as_u64()?).ok()?).ok()?;
    let body = match answer.get("body").and_then(Value::as_str) {
        Some(text) if answer["isBase64Encoded"].as_bool() == Some(true) => {
            base64::engine::general_purpose::STANDARD.decode(text).ok()?
        }
        Some(text) => text.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    for (name, value) in answer.get("headers").and_then(Value::as_object).into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_str(value.as_str().unwrap_or_default()).ok()?);
    }
    for (name, values) in answer.get("multiValueHeaders").and_then(Value::as_object).into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        for value in values.as_array().into_iter().flatten() {
            headers.append(name.clone(), HeaderValue::from_str(value.as_str().unwrap_or_default()).ok()?);
        }
    }
    for cookie in answer.get("cookies").and_then(Value::as_array).into_iter().flatten() {
        headers.append("set-cookie", HeaderValue::from_str(cookie.as_str().unwrap_or_default()).ok()?);
    }
    Some(out)
}

/// Serves one request.
pub async fn serve(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let best = gateway
        .routes
        .iter()
        .filter_map(|r| r.matches(method.as_str(), uri.path()).map(|(score, params)| (score, params, r)))
        .max_by_key(|(score, _, _)| *score);
    let Some((_, params, route)) = best else { return gateway_answer(StatusCode::NOT_FOUND, "Not Found") };
    let Some(function) = gateway.functions.get(&route.function) else {
        gateway.faults.lock().unwrap().push(format!(
            "route {} names {}, which is not a function",
            route.key(),
            route.function
        ));
        return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let incoming = Incoming { method: &method, uri: &uri, headers: &headers, peer, body: &body };
    let event = event(route, &params, &incoming, &gateway.api_id);
    // Lambda takes a request payload of up to 6 MB (AWS Lambda Developer Guide, "Lambda
    // quotas"); API Gateway then answers 413 itself.
    // Only a large body can take the event past it: measure the event only then.
    if body.len() > LAMBDA_PAYLOAD_LIMIT / 2 && event.to_string().len() > LAMBDA_PAYLOAD_LIMIT {
        return gateway_answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    let fault = |message: String| gateway.faults.lock().unwrap().push(message);
    match function.invoke(event).await {
        Invocation::Answered(answer) => {
            let Some(out) = response(&answer) else {
                fault(format!("{} answered {} with a malformed response: {answer}", function.logical, route.key()));
                return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            };
            // A router that has no such route answers 404/405 with its own problem: the
            // template sends this route to a function that does not serve it.
            let body = answer.get("body").and_then(Value::as_str).unwrap_or_default();
            // A greedy route hands the function paths it may rightly refuse.
            let status = out.status().as_u16();
            if !route.is_greedy() && (status == 405 || (status == 404 && body.contains("no route matches this path"))) {
                fault(format!(
                    "route {} is wired to {}, whose router does not serve it ({} {})",
                    route.key(),
                    function.logical,
                    out.status().as_u16(),
                    body
                ));
            }
            out
        }
        Invocation::Failed(error) => {
            fault(format!("{} failed on {}: {error}", function.logical, route.key()));
            gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Invocation::Crashed(message) | Invocation::InitFailed(message) => {
            fault(message);
            gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Invocation::TimedOut => {
            fault(format!("{} timed out after {:?} on {}", function.logical, function.timeout, route.key()));
            gateway_answer(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Route {
        Route { method: method.into(), path: path.into(), function: "F".into() }
    }

    #[test]
    fn the_most_specific_route_wins_and_parameters_are_extracted() {
        let literal = route("GET", "/accounts/mine");
        let param = route("GET", "/accounts/{account_id}");
        let proxy = route("ANY", "/{proxy+}");
        let (a, _) = literal.matches("GET", "/accounts/mine").unwrap();
        let (b, params) = param.matches("GET", "/accounts/acc_1").unwrap();
        let (c, rest) = proxy.matches("GET", "/accounts/acc_1").unwrap();
        assert!(a > b && b > c, "{a} {b} {c}");
        assert!(route("GET", "/x/{p+}").matches("GET", "/x/y").unwrap().0 > proxy.matches("GET", "/x/y").unwrap().0);
        assert!(proxy.matches("GET", "/").is_none(), "a greedy parameter takes a segment");
        assert!(param.matches("GET", "/accounts/acc_1/").is_none(), "a trailing slash is a segment");
        assert!(param.matches("GET", "//accounts/acc_1").is_none());
        assert_eq!(params["account_id"], "acc_1");
        assert_eq!(rest["proxy"], "accounts/acc_1");
        assert!(param.matches("POST", "/accounts/acc_1").is_none());
        assert!(param.matches("GET", "/accounts/acc_1/members").is_none());
    }
}
