//! Request rate limits on every authenticated route, counted in the table so that they hold
//! across every Lambda container and every local process (`auth::rate_limit`'s [`admit`]
//! and [`count_in_month`]; nothing is counted per process).
//!
//! - An API key: its plan's `api_requests_per_second` with `api_burst` (the plan of the
//!   key's account, from `plans.toml`; a plan that sets no rate gets the users' default),
//!   and the account's `api_requests_per_month`, shared by all its keys, where the plan
//!   sets one.
//! - A signed-in user (a session's access token): a generous rate per user, the same on
//!   every plan ([`HttpSettings::user_rate`]: `GROUNDWORK_USER_REQUESTS_PER_SECOND`,
//!   `GROUNDWORK_USER_REQUEST_BURST`).
//!
//! Only the routes that take a bearer credential are limited ([`LimitedRoutes`]: those whose
//! API description names the `bearer` security scheme), and only when the request carries
//! one that authenticates. Public routes (sign-up, login, links from emails, `/health`)
//! pass whatever they are sent: they carry their own brute-force limits, per address and per
//! client IP. A request whose credentials do not authenticate passes too, and its route
//! answers 401. Every other request counts, whatever its answer; one the limits refuse (429)
//! does not count against the month, though it may have spent its per-second token.
//!
//! Every answer to an authenticated request carries the fields of the IETF draft
//! "RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers-10, sections 2
//! and 3): `RateLimit-Policy` (each policy's quota `q` and window `w` in seconds) and
//! `RateLimit` (what is left, `r`, and the seconds until the quota is whole again, `t`). A
//! refused request gets 429 with `Retry-After` and a problem naming the limit, the plan and
//! the cheapest plan that raises it (`upgrade_plan`). A store outage admits the request
//! (with a warning): the limiter never takes the API down.
//!
//! The caller authenticated here is put in the request's extensions, so the route's
//! extractors (`Caller`, `AuthUser`, `Tenant`) and the idempotency layer reuse it instead of
//! authenticating again.
//!
//! [`HttpSettings::user_rate`]: crate::config::server::HttpSettings::user_rate

use axum::extract::{FromRequestParts as _, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::bearer;
use crate::auth::rate_limit::{Decision, Rate, admit, count_in_month, month_of};
use crate::billing::{API_BURST, API_MONTHLY_QUOTA, API_RATE, Plans};
use crate::error::Problem;
use crate::services::Services;
use crate::store::StoreError;
use crate::tenancy::Caller;

/// The answer field with the current state of each policy.
pub const RATE_LIMIT: &str = "ratelimit";
/// The answer field with each policy's quota and window.
pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";

/// The setting that limits a signed-in user (not a plan limit).
pub const USER_RATE: &str = "user_requests_per_second";

/// The routes the limits apply to: `(method, path template)` of every operation whose
/// security names the `bearer` scheme in the API description.
#[derive(Debug, Clone, Default)]
pub struct LimitedRoutes(std::sync::Arc<std::collections::HashSet<(Method, String)>>);

impl LimitedRoutes {
    /// The routes of `doc` that take a bearer credential.
    pub fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = std::collections::HashSet::new();
        for (path, item) in &doc.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in operations {
                if operation.as_ref().is_some_and(takes_bearer) {
                    routes.insert((method, path.clone()));
                }
            }
        }
        Self(std::sync::Arc::new(routes))
    }

    /// Whether `method` on the route `path` (its template) is limited.
    pub fn contains(&self, method: &Method, path: &str) -> bool {
        self.0.contains(&(method.clone(), path.to_owned()))
    }
}

/// Whether an operation's security names the `bearer` scheme.
pub fn takes_bearer(operation: &utoipa::openapi::path::Operation) -> bool {
    serde_json::to_value(&operation.security).is_ok_and(|security| security_names_bearer(&security))
}

/// Whether a security requirement list (an operation's `security`, as JSON) names the
/// `bearer` scheme: the one rule of which routes are limited, for the limits and for the API
/// description alike.
pub fn security_names_bearer(security: &serde_json::Value) -> bool {
    security.as_array().is_some_and(|rules| rules.iter().any(|rule| rule.get("bearer").is_some()))
}

/// One policy applied to a request, and what it decided.
#[derive(Debug, Clone, Copy)]
struct Applied {
    /// The policy's name in the fields (`api-key`, `api-month`, `user`).
    policy: &'static str,
    /// The limit's name in a 429's problem (a plan limit or a setting).
    limit: &'static str,
    quota: u64,
    window_secs: u64,
    decision: Decision,
}

/// The middleware (see the module documentation); `Router::layer`ed on the routes, outside
/// the idempotency layer, so it sees the matched route.
pub async fn guard(State((services, limited)): State<(Services, LimitedRoutes)>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    if !route.is_some_and(|r| limited.contains(req.method(), r)) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    if bearer(&parts).is_none() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let Ok(caller) = Caller::from_request_parts(&mut parts, &services).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    parts.extensions.insert(caller.clone());
    let (applied, plan) = match apply(&services, &caller).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(error = %e, "the rate limiter could not reach the store; the request is admitted");
            return next.run(Request::from_parts(parts, body)).await;
        }
    };
    if let Some(refused) = applied.iter().find(|a| !a.decision.admitted) {
        let mut res = refusal(refused, plan.as_deref(), &services.plans, services.config.http.user_rate);
        fields(res.headers_mut(), &applied);
        return res;
    }
    let mut res = next.run(Request::from_parts(parts, body)).await;
    fields(res.headers_mut(), &applied);
    res
}

/// The policies of `caller`, each consulted in turn until one refuses; with the plan's id for
/// an API key.
async fn apply(services: &Services, caller: &Caller) -> Result<(Vec<Applied>, Option<String>), StoreError> {
    let store = services.store.as_ref();
    let now_ms = services.clock.now_ms();
    let default = services.config.http.user_rate;
    let states = &services.rate_states;
    match caller {
        Caller::User(user) => {
            let decision = admit(store, states, "user", &user.user_id.to_string(), default, now_ms).await?;
            Ok((vec![rate_applied("user", USER_RATE, default, decision)], None))
        }
        Caller::ApiKey(key) => {
            let entitlements = services.entitlements(key.account_id).await?;
            let rate = api_rate(entitlements.limit(API_RATE), entitlements.limit(API_BURST), default);
            let decision = admit(store, states, "api-key", &key.key_id.to_string(), rate, now_ms).await?;
            let mut applied = vec![rate_applied("api-key", API_RATE, rate, decision)];
            if let (true, Some(quota)) = (decision.admitted, entitlements.limit(API_MONTHLY_QUOTA)) {
                let (month, start, end) = month_of(now_ms);
                let usage = crate::keys::api_usage(key.account_id, &month);
                let decision = count_in_month(store, usage, quota, end, now_ms).await?;
                let window_secs = u64::try_from((end - start) / 1000).unwrap_or(1);
                applied.push(Applied { policy: "api-month", limit: API_MONTHLY_QUOTA, quota, window_secs, decision });
            }
            Ok((applied, Some(entitlements.plan)))
        }
    }
}

fn rate_applied(policy: &'static str, limit: &'static str, rate: Rate, decision: Decision) -> Applied {
    let window_secs = rate.window_secs();
    // The field states a quota per window of whole seconds: the burst over the time it takes
    // to come back, or the rate's worth of a second when that is shorter (so that a rate of
    // 150 with a burst of 1 reads as 150 a second, not 1).
    let quota = u64::from(rate.burst).max(u64::from(rate.per_second) * window_secs);
    Applied { policy, limit, quota, window_secs, decision }
}

/// An API key's rate under a plan's limits: its rate and burst, or the users' default rate.
fn api_rate(per_second: Option<u64>, burst: Option<u64>, default: Rate) -> Rate {
    let Some(per_second) = per_second else { return default };
    let per_second = u32::try_from(per_second).unwrap_or(u32::MAX).max(1);
    let burst = burst.map_or(per_second.saturating_mul(2), |b| u32::try_from(b).unwrap_or(u32::MAX)).max(1);
    Rate { per_second, burst }
}

/// A policy's effective value on a plan, for comparing plans: a rate a plan does not set is
/// the default rate; a monthly quota it does not set is unlimited.
fn effective(limit: &str, limits: &std::collections::BTreeMap<String, u64>, default: Rate) -> u64 {
    match limit {
        API_MONTHLY_QUOTA => limits.get(limit).copied().unwrap_or(u64::MAX),
        _ => limits.get(limit).copied().unwrap_or(u64::from(default.per_second)),
    }
}

/// The cheapest plan whose `limit` is higher than `plan`'s, if any.
fn upgrade_plan<'a>(plans: &'a Plans, plan: &str, limit: &str, default: Rate) -> Option<&'a str> {
    let current = match plans.plan(plan) {
        Some(p) => effective(limit, &p.limits, default),
        None => effective(limit, &plans.free.limits, default),
    };
    plans.plans.iter().find(|p| effective(limit, &p.limits, default) > current).map(|p| p.id.as_str())
}

fn refusal(refused: &Applied, plan: Option<&str>, plans: &Plans, default: Rate) -> Response {
    let retry_after = refused.decision.retry_after_secs.max(1);
    let detail = match refused.policy {
        "api-month" => format!("this account's API requests for the month are used up ({})", refused.quota),
        "api-key" => "this API key is sending requests faster than its plan allows".to_owned(),
        _ => "too many requests from this user; slow down".to_owned(),
    };
    let mut problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests")
        .with_detail(format!("{detail}: retry in {retry_after} s"))
        .with("limit", refused.limit)
        .with("retry_after", retry_after);
    if let Some(plan) = plan {
        problem = problem.with("plan", plan);
        let upgrade = upgrade_plan(plans, plan, refused.limit, default);
        problem = problem.with("upgrade_plan", upgrade.map(str::to_owned));
    }
    let mut res = problem.into_response();
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    res
}

/// Adds `RateLimit-Policy` and `RateLimit` for the policies applied.
fn fields(headers: &mut axum::http::HeaderMap, applied: &[Applied]) {
    if applied.is_empty() {
        return;
    }
    let policy: Vec<String> =
        applied.iter().map(|a| format!("\"{}\";q={};w={}", a.policy, a.quota, a.window_secs)).collect();
    let state: Vec<String> = applied
        .iter()
        .map(|a| format!("\"{}\";r={};t={}", a.policy, a.decision.remaining, a.decision.reset_secs))
        .collect();
    for (name, value) in [(RATE_LIMIT_POLICY, policy.join(", ")), (RATE_LIMIT, state.join(", "))] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
}
