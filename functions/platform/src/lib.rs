//! The platform function: `GET /health` (liveness, store reachability, version),
//! `GET /openapi.json` (the description of every route of every function) and the operator
//! routes `/ops/dead-letters` (list, redrive) and `/ops/flags` (feature flag definitions
//! and per-account overrides).
//!
//! Like every function crate, it exposes [`routes`] (its routes, for the local stack to
//! merge), [`app`] (those routes with the shared HTTP conventions, for Lambda) and [`api`]
//! (its part of the OpenAPI document, generated from the same route declarations).

use std::sync::OnceLock;
use std::time::Duration;

pub mod accounts;
pub mod console;
pub mod flags;
pub mod ops;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use shared::error::Problem;
use shared::http::Json;
use shared::services::Services;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long `/health` waits for the store before calling it unreachable.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Groundwork API",
        description = "The operational layer of a B2B SaaS: auth, tenancy, billing, jobs, flags, audit. \
                       Errors are RFC 9457 problem documents (`application/problem+json`) with a stable `code`."
    ),
    components(schemas(Problem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "platform", description = "Liveness and API description"),
        (name = "operations", description = "Operator routes (bearer operator token)")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("operator_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(deep_health))
        .routes(routes!(openapi_json))
        .routes(routes!(ops::list))
        .routes(routes!(ops::redrive))
        .routes(routes!(ops::smoke_mail))
        .routes(routes!(accounts::list))
        .routes(routes!(accounts::detail))
        .routes(routes!(console::page))
        .routes(routes!(flags::list))
        .routes(routes!(flags::put, flags::delete))
        .routes(routes!(flags::put_override, flags::delete_override))
}

shared::function_routes!();

/// The OpenAPI document of the whole system: every function's [`api`] merged, Groundwork's
/// and the product's (the `products` list), with the webhook event catalogue as `webhooks`.
pub fn api_description() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = api();
        doc.merge(auth::api());
        doc.merge(tenancy::api());
        doc.merge(billing::api());
        doc.merge(stripe_webhook::api());
        doc.merge(products::api());
        doc.info.version = shared::VERSION.to_owned();
        let mut doc = shared::http::api_conventions::with_conventions(&doc).unwrap_or(doc);
        // OpenAPI 3.1's top-level `webhooks` (the messages an account's endpoints receive),
        // which utoipa has no field for: extensions serialize flat beside `paths`.
        doc.extensions
            .get_or_insert_with(Default::default)
            .insert("webhooks".to_owned(), shared::webhooks::catalogue::openapi_webhooks());
        doc
    })
}

/// The health report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The deployed version.
    pub version: &'static str,
    /// The release: `<version>+<commit>` (`+dev` for a build made without a release id).
    pub release: &'static str,
    /// The environment name (`local`, `staging`, `production`...).
    pub environment: String,
    /// Whether the store answered.
    pub store: &'static str,
}

/// Liveness and store reachability, for uptime monitors.
#[utoipa::path(
    get,
    path = "/health",
    tag = "platform",
    responses(
        (status = 200, description = "Up, and the store answers", body = Health),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    )
)]
async fn health(State(services): State<Services>) -> Result<Json<Health>, Problem> {
    let reachable = matches!(tokio::time::timeout(STORE_CHECK_TIMEOUT, services.store.ping()).await, Ok(Ok(())));
    if !reachable {
        tracing::error!("health check: the store does not answer");
        return Err(Problem::from_status(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("the store does not answer")
            .with("status", "unavailable")
            .with("version", shared::VERSION)
            .with("release", shared::RELEASE)
            .with("store", "unreachable")
            .with("retry_after", shared::error::RETRY_AFTER_UNAVAILABLE_SECS));
    }
    Ok(Json(Health {
        status: "ok",
        version: shared::VERSION,
        release: shared::RELEASE,
        environment: services.config.environment.clone(),
        store: "reachable",
    }))
}

/// How long the deep check waits for each dependency: Route 53's checkers want an answer
/// within 2 s of connecting, and a dependency that hangs must be a 503 by then, not silence.
const DEEP_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a deep report is answered again without checking: uptime checkers in several
/// regions (and anyone else) cost one round of dependency calls per process per interval,
/// not one per request.
const DEEP_REPORT_TTL: Duration = Duration::from_secs(10);

/// One dependency's check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// How long the check took (ms).
    pub latency_ms: u64,
    /// Why it is unavailable (the error and its sources, or the timeout; never a secret).
    /// Operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One queue's check, with its backlog when it answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueCheck {
    /// The check.
    #[serde(flatten)]
    pub check: Check,
    /// Messages waiting or in flight, and parked in its dead-letter queue. Operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<shared::queue::Backlog>,
}

/// The deep health report: every dependency a request may need, each checked now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeepHealth {
    /// `ok` when every check is; else `unavailable`.
    pub status: &'static str,
    /// The release serving (`<version>+<commit>`).
    pub release: &'static str,
    /// The environment name.
    pub environment: String,
    /// The table: a read.
    pub store: Check,
    /// Each queue by name: its backlog read.
    pub queues: std::collections::BTreeMap<String, QueueCheck>,
    /// The access-token keys: loaded, or read (Secrets Manager, the published JWKS) now.
    pub signing_keys: Check,
}

/// Runs the check of `dependency` within [`DEEP_CHECK_TIMEOUT`], timing it; a failure or a
/// timeout is logged with the dependency's name.
async fn timed<T, E: std::error::Error>(
    dependency: &str,
    check: impl Future<Output = Result<T, E>>,
) -> (Check, Option<T>) {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(DEEP_CHECK_TIMEOUT, check).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let error = match outcome {
        Ok(Ok(value)) => return (Check { status: "ok", latency_ms, error: None }, Some(value)),
        Ok(Err(e)) => chain(&e),
        Err(_) => format!("timed out after {} ms", DEEP_CHECK_TIMEOUT.as_millis()),
    };
    tracing::error!(dependency, error = %error, latency_ms, "deep health check: a dependency failed");
    (Check { status: "unavailable", latency_ms, error: Some(error) }, None)
}

/// An error and its sources, each on its first line, bounded: the AWS error code behind
/// "the store is unavailable" tells a missing table from a refused permission.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        let line = text.lines().next().unwrap_or_default().to_owned();
        if !parts.contains(&line) {
            parts.push(line);
        }
        next = err.source();
    }
    parts.join(": ").chars().take(300).collect()
}

/// Readiness, for uptime monitors and the template's health check: the store, every queue
/// and the access-token keys, each checked concurrently, each within 1.5 s (a report is
/// reused for 10 s), with its status and latency. 503 when any is down, with the same
/// report. With the operator token the report also gives each failure's error and each
/// queue's backlog, which are not for anyone on the internet. `/health` is the cheap
/// liveness check beside it.
#[utoipa::path(
    get,
    path = "/health/deep",
    tag = "platform",
    security((), ("operator_token" = [])),
    responses(
        (status = 200, description = "Every dependency answers", body = DeepHealth),
        (status = 503, description = "A dependency does not answer: the problem's `checks` member is the report, naming it",
         body = Problem, content_type = "application/problem+json")
    )
)]
async fn deep_health(
    State(services): State<Services>,
    operator: Result<ops::Operator, Problem>,
) -> Result<Json<serde_json::Value>, Problem> {
    const CACHE_KEY: &str = "platform:health/deep";
    let now = services.clock.now_ms();
    let mut report = match services.documents.get(CACHE_KEY, now, DEEP_REPORT_TTL) {
        Some(report) => report,
        None => {
            let report = serde_json::to_value(check_dependencies(&services).await).unwrap_or_default();
            services.documents.put(CACHE_KEY, now, report.clone());
            report
        }
    };
    if operator.is_err() {
        without_details(&mut report);
    }
    if report["status"] == "ok" {
        return Ok(Json(report));
    }
    Err(Problem::from_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail("a dependency does not answer: see `checks`")
        .with("checks", report)
        .with("retry_after", shared::error::RETRY_AFTER_UNAVAILABLE_SECS))
}

/// The report for anyone: statuses and latencies, without errors or backlogs.
fn without_details(report: &mut serde_json::Value) {
    let strip = |check: &mut serde_json::Value| {
        if let Some(check) = check.as_object_mut() {
            check.remove("error");
            check.remove("backlog");
        }
    };
    strip(&mut report["store"]);
    strip(&mut report["signing_keys"]);
    if let Some(queues) = report["queues"].as_object_mut() {
        queues.values_mut().for_each(strip);
    }
}

/// Checks every dependency now.
async fn check_dependencies(services: &Services) -> DeepHealth {
    let queues =
        futures_util::future::join_all(services.queues.all().map(|(name, queue)| async move {
            (name, timed(&format!("queue {}", name.as_str()), queue.backlog()).await)
        }));
    let ((store, _), queues, (signing_keys, _)) = tokio::join!(
        timed("store", services.store.ping()),
        queues,
        timed("signing keys", services.tokens.keys_ready())
    );
    let queues: std::collections::BTreeMap<String, QueueCheck> = queues
        .into_iter()
        .map(|(name, (check, backlog))| (name.as_str().to_owned(), QueueCheck { check, backlog }))
        .collect();
    let healthy =
        store.status == "ok" && signing_keys.status == "ok" && queues.values().all(|q| q.check.status == "ok");
    DeepHealth {
        status: if healthy { "ok" } else { "unavailable" },
        release: shared::RELEASE,
        environment: services.config.environment.clone(),
        store,
        queues,
        signing_keys,
    }
}

/// The OpenAPI 3.1 description of every route.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "platform",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
async fn openapi_json() -> Json<&'static OpenApi> {
    Json(api_description())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn a_failure_reads_with_its_sources() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the store is unavailable")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("ResourceNotFoundException: no table\nrequest id: 1"));
        assert_eq!(super::chain(&e), "the store is unavailable: ResourceNotFoundException: no table");
    }

    /// Generated clients name a function or type after each `operationId`: two routes with one
    /// id collide (openapi-typescript merges them into one wrong type).
    #[test]
    fn every_operation_id_is_unique() {
        let doc = serde_json::to_value(super::api_description()).unwrap();
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no id"));
                seen.entry(id.to_owned()).or_default().push(format!("{method} {path}"));
            }
        }
        let twice: Vec<_> = seen.iter().filter(|(_, routes)| routes.len() > 1).collect();
        assert!(twice.is_empty(), "operation ids used twice: {twice:?}");
    }

    /// Merging keeps the first schema of a name and drops the others silently: two functions
    /// naming different types alike would document one of them wrongly.
    #[test]
    fn no_two_functions_name_different_schemas_alike() {
        let mut parts = vec![
            ("platform", super::api()),
            ("auth", auth::api()),
            ("tenancy", tenancy::api()),
            ("billing", billing::api()),
            ("stripe-webhook", stripe_webhook::api()),
        ];
        parts.extend(products::apis());
        let mut seen: BTreeMap<String, (&str, serde_json::Value)> = BTreeMap::new();
        let mut clashes = Vec::new();
        for (function, doc) in &parts {
            let Some(components) = &doc.components else { continue };
            for (name, schema) in &components.schemas {
                let schema = serde_json::to_value(schema).unwrap();
                match seen.get(name) {
                    Some((other, first)) if *first != schema => clashes.push(format!("{name}: {other} and {function}")),
                    Some(_) => {}
                    None => {
                        seen.insert(name.clone(), (function, schema));
                    }
                }
            }
        }
        assert!(clashes.is_empty(), "schemas named alike, defined differently: {clashes:?}");
    }
}
