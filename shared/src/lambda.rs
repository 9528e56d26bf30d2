//! Lambda entry points: the only module that knows Lambda's event types.
//!
//! A function's `main.rs` builds its services once and calls one of these:
//! [`serve_http`] (API Gateway HTTP API → axum router), [`serve_sqs`] (SQS event → partial
//! batch failures) or [`serve_schedules`] (EventBridge event → a scheduled job; a direct
//! `{"action": "migrate"}` → the data migrations). The
//! `handle_*` functions are the same paths without the runtime loop, for tests.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use axum::Router;
use lambda_runtime::{LambdaEvent, service_fn};

use crate::clock::Clock;
use crate::id::CorrelationId;
use crate::queue::consumer::{Message, MessageHandler, process_batch};
use crate::schedule::{Schedule, ScheduledJob};

/// The error type of Lambda entry points.
pub type Error = lambda_runtime::Error;

/// What every function's `main` does first: read the configuration (failing fast, naming the
/// bad variable), install logging, and build the services once for the container's life.
///
/// # Errors
/// A [`crate::settings::ConfigError`] or a failure to build the services.
pub async fn bootstrap() -> Result<crate::services::Services, Error> {
    // Through anyhow, so the error a `main` returns prints as a sentence (its Debug is the
    // message and its causes), not as a struct.
    let config = crate::config::Config::from_env().map_err(anyhow::Error::from)?;
    crate::telemetry::init(&config.telemetry)?;
    Ok(crate::services::Services::from_config(config).await?)
}

/// Serves an axum router on Lambda behind API Gateway.
///
/// # Errors
/// When the Lambda runtime API fails.
pub async fn serve_http(app: Router) -> Result<(), Error> {
    // Error tracking's events are sent before the answer: after it, Lambda freezes the
    // environment.
    let app = app.layer(axum::middleware::from_fn(|req: axum::extract::Request, next: axum::middleware::Next| async {
        let res = next.run(req).await;
        crate::telemetry::error_tracking::flush().await;
        res
    }));
    lambda_http::run(app).await
}

/// Serves a queue consumer on Lambda (an SQS event source mapping with
/// `ReportBatchItemFailures`).
///
/// # Errors
/// When the Lambda runtime API fails.
pub async fn serve_sqs(handler: Arc<dyn MessageHandler>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        async move {
            let response = handle_sqs_event(handler.as_ref(), event.payload).await;
            crate::telemetry::error_tracking::flush().await;
            Ok::<_, Error>(response)
        }
    }))
    .await
}

/// Handles one SQS event: every record through `handler`, failures reported by message id
/// so that only they are retried.
pub async fn handle_sqs_event(handler: &dyn MessageHandler, event: SqsEvent) -> SqsBatchResponse {
    let fifo =
        event.records.first().and_then(|r| r.event_source_arn.as_deref()).is_some_and(|arn| arn.ends_with(".fifo"));
    let mut unidentified = Vec::new();
    let messages: Vec<Message> = event
        .records
        .into_iter()
        .filter_map(|r| {
            let Some(id) = r.message_id.clone() else {
                unidentified.push(r);
                return None;
            };
            Some(Message {
                id,
                receipt: r.receipt_handle.clone().unwrap_or_default(),
                body: r.body.unwrap_or_default(),
                receive_count: r.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
                group_id: r.attributes.get("MessageGroupId").cloned(),
            })
        })
        .collect();
    if !unidentified.is_empty() {
        tracing::error!(count = unidentified.len(), "SQS records without a message id were skipped");
    }
    let failed = process_batch(handler, &messages, fifo).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

/// Serves scheduled jobs on Lambda (EventBridge rules named `<prefix>-<schedule name>`).
///
/// # Errors
/// When the Lambda runtime API fails.
pub async fn serve_schedules(
    jobs: Vec<(Schedule, Arc<dyn ScheduledJob>)>,
    services: crate::services::Services,
) -> Result<(), Error> {
    let jobs = Arc::new(jobs);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (jobs, services) = (Arc::clone(&jobs), services.clone());
        async move {
            let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
            let result = crate::telemetry::error_tracking::scoped(handle_scheduled_invocation(
                &jobs,
                &services,
                event.payload,
                deadline_ms,
            ))
            .await;
            crate::telemetry::error_tracking::flush().await;
            result.map_err(Error::from)
        }
    }))
    .await
}

/// A direct invocation of the scheduled function (the deploy step's), as opposed to an
/// EventBridge event: `{"action": "migrate"}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectInvocation {
    action: DirectAction,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum DirectAction {
    Migrate,
}

/// How long before the invocation's deadline a migration run pauses, so that it checkpoints
/// and answers before Lambda ends it.
const MIGRATION_MARGIN_MS: i64 = 20_000;

/// Handles one invocation of the scheduled function: an EventBridge event runs its job, and
/// a CloudWatch alarm's state change is recorded for time to recovery
/// ([`crate::incidents`]), both answering `null`; `{"action": "migrate"}` runs the table's data migrations until
/// `deadline_ms` (Unix ms) nears, and answers the [`crate::migrations::Outcome`] as JSON
/// (`{"status": "complete" | "paused" | "busy", ...}`: invoke again until `complete`).
///
/// # Errors
/// As [`handle_schedule_event`]; a migration that fails.
pub async fn handle_scheduled_invocation(
    jobs: &[(Schedule, Arc<dyn ScheduledJob>)],
    services: &crate::services::Services,
    payload: serde_json::Value,
    deadline_ms: i64,
) -> anyhow::Result<serde_json::Value> {
    if payload.get("action").is_none() {
        let event: EventBridgeEvent = serde_json::from_value(payload)?;
        if event.source == "aws.cloudwatch" && event.detail_type == crate::incidents::DETAIL_TYPE {
            let change: crate::incidents::AlarmStateChange = serde_json::from_value(event.detail)?;
            crate::incidents::record_state_change(services.store.as_ref(), &change).await.inspect_err(|e| {
                tracing::error!(alarm = %change.alarm_name, error = %e, "alarm state change not recorded");
            })?;
            return Ok(serde_json::Value::Null);
        }
        handle_schedule_event(jobs, services.clock.as_ref(), &event).await?;
        return Ok(serde_json::Value::Null);
    }
    let direct: DirectInvocation = serde_json::from_value(payload)
        .map_err(|e| anyhow::anyhow!("a direct invocation is {{\"action\": \"migrate\"}}: {e}"))?;
    match direct.action {
        DirectAction::Migrate => {
            let runner = crate::migrations::runner_id();
            let deadline = deadline_ms.saturating_sub(MIGRATION_MARGIN_MS);
            let outcome = crate::migrations::run(
                services.store.as_ref(),
                services.clock.as_ref(),
                crate::migrations::ALL,
                &runner,
                Some(deadline),
            )
            .await
            .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "data migrations failed"))?;
            tracing::info!(outcome = ?outcome, "data migrations run");
            Ok(serde_json::to_value(outcome)?)
        }
    }
}

/// Runs the job an EventBridge event is for: the one whose schedule name ends the name of
/// the rule in the event's `resources`. An error fails the invocation, so EventBridge
/// retries it (jobs are idempotent).
///
/// # Errors
/// When no job matches the rule, or the job fails.
pub async fn handle_schedule_event(
    jobs: &[(Schedule, Arc<dyn ScheduledJob>)],
    clock: &dyn Clock,
    event: &EventBridgeEvent,
) -> anyhow::Result<()> {
    let rule =
        event.resources.as_deref().unwrap_or_default().iter().find_map(|arn| arn.rsplit_once(":rule/")).map(|(_, r)| r);
    // Logged at error, like a failing job: a misrouted schedule is a fault to report.
    let refuse = |reason: String| {
        tracing::error!(reason, "scheduled invocation refused");
        anyhow::anyhow!(reason)
    };
    let Some(rule) = rule else {
        return Err(refuse("the event names no EventBridge rule".into()));
    };
    let Some((schedule, job)) = jobs.iter().find(|(s, _)| rule.ends_with(&format!("-{}", s.name)) || rule == s.name)
    else {
        return Err(refuse(format!("no scheduled job for rule {rule}")));
    };
    let fired_at_ms = event.time.map_or_else(|| clock.now_ms(), |t| t.timestamp_millis());
    tracing::info!(schedule = schedule.name, event_id = event.id.as_deref().unwrap_or(""), "scheduled job started");
    job.run(fired_at_ms)
        .await
        .inspect_err(|e| tracing::error!(schedule = schedule.name, error = format!("{e:#}"), "scheduled job failed"))
}

/// API Gateway's id for the request, when it came through Lambda.
pub fn api_gateway_request_id<B>(req: &axum::http::Request<B>) -> Option<CorrelationId> {
    use lambda_http::request::RequestContext;
    let id = match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(c) => c.request_id.as_deref(),
        RequestContext::ApiGatewayV1(c) => c.request_id.as_deref(),
        _ => None,
    };
    id.and_then(CorrelationId::parse)
}

/// The client's IP as API Gateway saw it, when the request came through Lambda.
pub fn api_gateway_source_ip<B>(req: &axum::http::Request<B>) -> Option<String> {
    use lambda_http::request::RequestContext;
    match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.clone(),
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.clone(),
        _ => None,
    }
}
