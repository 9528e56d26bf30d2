//! The Stripe webhook receiver, `POST /webhooks/stripe`: verifies `Stripe-Signature` on the
//! raw body (`STRIPE_WEBHOOK_SECRET`, several during a rotation), records the event in a
//! durable ledger (`STRIPE_EVENT#<id>`, a conditional create), queues it on the FIFO billing
//! queue grouped by customer, and answers 200 at once. A duplicate delivery is acknowledged
//! and not queued again (unless its first delivery never got queued). A bad signature is a
//! 400 and nothing is recorded.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use shared::billing::events::StripeEvent;
use shared::billing::ledger::{self, LedgerStatus};
use shared::billing::webhook;
use shared::config::QueueName;
use shared::error::{ApiError, Problem};
use shared::http::Json;
use shared::queue::Outgoing;
use shared::services::Services;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(utoipa::OpenApi)]
#[openapi(tags((name = "billing", description = "Plans, subscriptions, Stripe")))]
struct ApiDoc;

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(receive))
}

shared::function_routes!();

/// The answer to Stripe.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// Always true.
    pub received: bool,
    /// Whether this delivery was a duplicate of one already recorded.
    pub duplicate: bool,
}

/// The FIFO group of an event: its customer, so one customer's events apply in order.
pub fn group_of(event: &StripeEvent) -> String {
    event.customer().unwrap_or_else(|| "no-customer".into())
}

/// Queues a recorded event and marks it queued.
///
/// # Errors
/// When the queue or the store fails.
pub async fn enqueue(s: &Services, event: &StripeEvent, payload: &str) -> Result<(), ApiError> {
    let message = Outgoing::new(payload).fifo(group_of(event), event.id.clone());
    s.queues.get(QueueName::Billing).send(message).await?;
    ledger::mark_queued(&s.billing(), &event.id).await?;
    Ok(())
}

/// Receives a Stripe event.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "billing",
    request_body(content = Object, description = "A Stripe event, signed (Stripe-Signature)", content_type = "application/json"),
    responses((status = 200, body = Receipt), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "This deployment has no webhook secret (`STRIPE_WEBHOOK_SECRET`)",
               body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn receive(State(s): State<Services>, headers: HeaderMap, body: Bytes) -> Result<Json<Receipt>, ApiError> {
    let secrets = s.config.billing.stripe_webhook_secrets.expose();
    if secrets.is_empty() {
        // A deployment without the secret has no webhook endpoint: not a passing outage (no
        // 503 and Retry-After), and Stripe keeps retrying a 404 for three days, so nothing
        // is lost while the operator sets it. Logged as an error so the alarm notices.
        tracing::error!("a Stripe event arrived but STRIPE_WEBHOOK_SECRET is not set");
        return Err(ApiError::NotFound);
    }
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    if let Err(e) = webhook::verify(header, &body, secrets, s.clock.now_secs()) {
        tracing::warn!(reason = %e, "Stripe webhook refused");
        return Err(ApiError::BadRequest { code: "invalid_signature", detail: e.to_string() });
    }
    let payload = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest { code: "not_a_stripe_event", detail: "the body is not UTF-8".into() })?;
    let event: StripeEvent = serde_json::from_str(payload).map_err(|_| ApiError::BadRequest {
        code: "not_a_stripe_event",
        detail: "the body is not a Stripe event (id, type, created, data.object)".into(),
    })?;
    if !ledger::record_received(&s.billing(), &event, payload).await? {
        // Recorded but never queued (the first delivery failed half-way): queue it now; the
        // FIFO deduplication id keeps a double from reaching the consumer.
        if ledger::status(&s.billing(), &event.id).await? == Some(LedgerStatus::Received) {
            enqueue(&s, &event, payload).await?;
        }
        tracing::info!(event_id = %event.id, "duplicate Stripe event acknowledged");
        return Ok(Json(Receipt { received: true, duplicate: true }));
    }
    enqueue(&s, &event, payload).await?;
    tracing::info!(event_id = %event.id, event_type = %event.kind, "Stripe event recorded and queued");
    Ok(Json(Receipt { received: true, duplicate: false }))
}
