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
use shared::billing::webhook;
use shared::config::QueueName;
use shared::error::{ApiError, Problem};
use shared::http::Json;
use shared::queue::Outgoing;
use shared::services::Services;
use shared::store::{Condition, Item, Put, Update};
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

pub use shared::billing::events::ledger_key;

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
    let mark = Update::new(ledger_key(&event.id))
        .set("status", "queued")
        .when(Condition::Equals("status".into(), "received".into()));
    match s.store.update(mark).await {
        Ok(_) => Ok(()),
        // Already past "received" (a consumer was faster): nothing to mark.
        Err(e) if e.is_condition_failure() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Receives a Stripe event.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "billing",
    request_body(content = Object, description = "A Stripe event, signed (Stripe-Signature)", content_type = "application/json"),
    responses((status = 200, body = Receipt), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn receive(State(s): State<Services>, headers: HeaderMap, body: Bytes) -> Result<Json<Receipt>, ApiError> {
    let secrets = s.config.stripe_webhook_secrets.expose();
    if secrets.is_empty() {
        return Err(ApiError::Unavailable(anyhow::Error::msg("STRIPE_WEBHOOK_SECRET is not set")));
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
    let entry = Item::new(ledger_key(&event.id))
        .with("type", event.kind.clone())
        .with("created", event.created)
        .with("customer", event.customer())
        .with("status", "received")
        .with("received_at_ms", s.clock.now_ms())
        .with("payload", payload);
    let duplicate = match s.store.put(Put::new(entry).if_not_exists()).await {
        Ok(_) => false,
        Err(e) if e.is_condition_failure() => true,
        Err(e) => return Err(e.into()),
    };
    if duplicate {
        let status = s.store.get(&ledger_key(&event.id)).await?.and_then(|i| i.data.get("status").cloned());
        // Recorded but never queued (the first delivery failed half-way): queue it now; the
        // FIFO deduplication id keeps a double from reaching the consumer.
        if status.as_ref().and_then(|v| v.as_str()) == Some("received") {
            enqueue(&s, &event, payload).await?;
        }
        tracing::info!(event_id = %event.id, "duplicate Stripe event acknowledged");
        return Ok(Json(Receipt { received: true, duplicate: true }));
    }
    enqueue(&s, &event, payload).await?;
    tracing::info!(event_id = %event.id, event_type = %event.kind, "Stripe event recorded and queued");
    Ok(Json(Receipt { received: true, duplicate: false }))
}
