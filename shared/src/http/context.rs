//! The request context: a request id taken from API Gateway (or a client's `x-request-id`,
//! or made fresh), a tracing span that puts it (and the tenant and user ids, once known) on
//! every log line, one access log line, and one EMF metric line per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::id::CorrelationId;
use crate::telemetry::metrics::{Metrics, Unit};

/// What every handler may know about the request it serves.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The id on every log line of this request and in every problem body.
    pub request_id: CorrelationId,
    /// The client's IP, by [`client_address`]'s rule.
    pub ip: Option<String>,
    /// The client's `User-Agent`, truncated.
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// The origin to record in the audit log.
    pub fn origin(&self) -> crate::audit::Origin {
        crate::audit::Origin {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: Some(self.request_id.to_string()),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_else(|| Self {
            request_id: CorrelationId::generate(),
            ip: None,
            user_agent: None,
        }))
    }
}

/// The header a client or proxy may set to choose the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Records the tenant (account) id on the current request's log lines.
pub fn record_tenant(account_id: &impl std::fmt::Display) {
    tracing::Span::current().record("tenant_id", tracing::field::display(account_id));
    crate::telemetry::error_tracking::set_tenant(account_id);
}

/// Records the user id on the current request's log lines.
pub fn record_user(user_id: &impl std::fmt::Display) {
    tracing::Span::current().record("user_id", tracing::field::display(user_id));
    crate::telemetry::error_tracking::set_user(user_id);
}

/// The client's address, by one rule everywhere an address is used (attempt limits, audit
/// entries, sessions): on Lambda, API Gateway's `sourceIp`; locally, the socket's peer, or
/// with `trusted_proxies` N, the Nth address from the right of `X-Forwarded-For` followed
/// by the peer (each trusted proxy appends the address it received from, so the hops to the
/// right of that one are ours and those to its left are whatever the client sent).
pub fn client_address(req: &Request, trusted_proxies: usize) -> Option<String> {
    if let Some(ip) = crate::lambda::api_gateway_source_ip(req) {
        return Some(ip);
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    if trusted_proxies == 0 {
        // The default, on every request: no header to read.
        return peer;
    }
    let mut hops: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().chars().take(64).collect::<String>())
        .filter(|v| !v.is_empty())
        .collect();
    hops.extend(peer);
    let index = hops.len().saturating_sub(1 + trusted_proxies);
    hops.into_iter().nth(index)
}

pub(super) async fn request_context(State(trusted_proxies): State<usize>, mut req: Request, next: Next) -> Response {
    let request_id = crate::lambda::api_gateway_request_id(&req)
        .or_else(|| req.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).and_then(CorrelationId::parse))
        .unwrap_or_else(CorrelationId::generate);
    let ip = client_address(&req, trusted_proxies);
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect::<String>());
    req.extensions_mut().insert(RequestContext { request_id: request_id.clone(), ip, user_agent });
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        tenant_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let hub = crate::telemetry::error_tracking::request_hub(request_id.as_str(), method.as_str(), &route);
    let mut res = match &hub {
        Some(hub) => sentry::SentryFutureExt::bind_hub(next.run(req).instrument(span.clone()), Arc::clone(hub)).await,
        None => next.run(req).instrument(span.clone()).await,
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = res.status().as_u16();
    crate::telemetry::error_tracking::in_scope(hub.as_ref(), || {
        span.in_scope(|| {
            if status == 503 {
                // An outage or an overload: its cause is logged where it was met (an outage at
                // error level), and a spike of refusals must not flood the log with errors.
                tracing::warn!(status, latency_ms, "request refused for now");
            } else if status >= 500 {
                tracing::error!(status, latency_ms, "request failed");
            } else {
                tracing::info!(status, latency_ms, "request completed");
            }
        })
    });
    if let Some(hub) = &hub {
        let panicked = res.extensions().get::<super::Panicked>().is_some();
        crate::telemetry::error_tracking::report_server_error(hub, status, method.as_str(), &route, panicked);
    }
    if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    Metrics::new()
        .dimension("Route", format!("{method} {route}"))
        .property("request_id", request_id.as_str())
        .metric("Requests", 1.0, Unit::Count)
        .metric("Errors5xx", if status >= 500 { 1.0 } else { 0.0 }, Unit::Count)
        .metric("Latency", latency_ms, Unit::Milliseconds)
        .emit();
    res
}
