//! The two webhook jobs the worker runs: [`fan_out`] (store a published message, queue one
//! delivery per subscribed endpoint) and [`deliver`] (one signed POST, its record in the
//! delivery log, the next attempt or the endpoint's disabling).
//!
//! A retry due later than a queue can delay a message (15 minutes on SQS) is queued again
//! every 15 minutes until due ("hops"), so the schedule's hours need no scheduler of their
//! own and follow the injected clock in tests.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Attempt, Endpoint, Event, Message, RESPONSE_EXCERPT_BYTES, RETRY_SCHEDULE, Webhooks};
use crate::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use crate::id::{AccountId, WebhookAttemptId, WebhookEndpointId};
use crate::jobs::{Job, JobError, JobOutcome};
use crate::keys;
use crate::mail::templates::Email;
use crate::store::{Condition, Item, Put, StoreError, Update};
use crate::tenancy::Role;

pub use crate::jobs::webhook::{DeliveryTrigger as Trigger, WebhookDelivery as Delivery};

impl Delivery {
    /// The first attempt of `message` to `endpoint`, due at once.
    pub fn first(
        account: AccountId,
        endpoint: WebhookEndpointId,
        message: &str,
        trigger: Trigger,
        now_ms: i64,
    ) -> Self {
        let nonce = if trigger == Trigger::Scheduled { String::new() } else { ulid::Ulid::new().to_string() };
        Self {
            account_id: account,
            endpoint_id: endpoint,
            message_id: message.to_owned(),
            attempt: 1,
            not_before_ms: now_ms,
            hop: 0,
            trigger,
            nonce,
        }
    }

    /// Its job key: one run per endpoint, message, attempt, hop and replay.
    fn key(&self) -> String {
        format!(
            "webhook-delivery:{}:{}:{}:{}:{}",
            self.endpoint_id, self.message_id, self.attempt, self.hop, self.nonce
        )
    }
}

fn retry(e: impl Into<anyhow::Error>) -> JobError {
    JobError::Retry(e.into())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Queues `delivery`, visible once it is due (or in 15 minutes, to wait again).
///
/// # Errors
/// When the queue fails.
pub async fn queue(s: &Webhooks<'_>, delivery: Delivery) -> Result<(), crate::queue::QueueError> {
    let wait = Duration::from_millis(u64::try_from(delivery.not_before_ms - s.clock.now_ms()).unwrap_or(0));
    let key = delivery.key();
    s.jobs().enqueue_after(Job::DeliverWebhook { delivery }, key, wait).await.map(|_| ())
}

/// Stores a published message and queues its delivery to every enabled endpoint of the
/// account subscribed to its type. Run twice, it queues the same (deduplicated) deliveries.
///
/// # Errors
/// Retryable when the store or the queue fails; permanent for a malformed event.
pub async fn fan_out(s: &Webhooks<'_>, account: AccountId, event: &Event) -> Result<JobOutcome, JobError> {
    let body = event.body().map_err(|e| JobError::Permanent(e.into()))?;
    let now = s.clock.now_ms();
    let message = Message { id: event.id.clone(), event_type: event.event_type.clone(), body, published_at_ms: now };
    let store = s.store;
    let message = super::store_message(store, account, message).await.map_err(retry)?;
    let mut queued = 0;
    for endpoint in super::endpoints(store, account).await.map_err(retry)? {
        if endpoint.enabled && endpoint.subscribed(&message.event_type) {
            queue(s, Delivery::first(account, endpoint.id, &message.id, Trigger::Scheduled, now))
                .await
                .map_err(retry)?;
            queued += 1;
        }
    }
    if queued == 0 {
        return Ok(JobOutcome::Skipped("no endpoint is subscribed".into()));
    }
    tracing::info!(account_id = %account, message_id = %message.id, endpoints = queued, "webhook message fanned out");
    Ok(JobOutcome::Done)
}

/// What one POST came to.
struct Answer {
    status: Option<u16>,
    error: Option<String>,
    latency_ms: u64,
    excerpt: String,
}

impl Answer {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|c| (200..300).contains(&c))
    }
}

async fn post(s: &Webhooks<'_>, endpoint: &Endpoint, message: &Message, now_ms: i64) -> Answer {
    let failed = |error: String| Answer { status: None, error: Some(error), latency_ms: 0, excerpt: String::new() };
    let url = match reqwest::Url::parse(&endpoint.url) {
        Ok(u) => u,
        Err(e) => return failed(format!("the URL does not parse: {e}")),
    };
    if let Err(r) = crate::outbound::check_url(&url, s.outbound) {
        return failed(format!("refused: {r}"));
    }
    let timestamp = now_ms / 1000;
    let signature = match super::signature::header(
        endpoint.live_secrets(now_ms),
        &message.id,
        timestamp,
        message.body.as_bytes(),
    ) {
        Ok(h) => h,
        Err(e) => return failed(format!("signing failed: {e}")),
    };
    let client = match s.http.get() {
        Ok(c) => c,
        Err(e) => return failed(format!("no HTTP client: {e:#}")),
    };
    let started = Instant::now();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &message.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(message.body.clone())
        .send()
        .await;
    let answer = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let excerpt = crate::outbound::read_capped(response, RESPONSE_EXCERPT_BYTES)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Answer { status: Some(status), error: None, latency_ms: 0, excerpt }
        }
        Err(e) => {
            let error = match crate::outbound::refused_by_guard(&e) {
                Some(r) => format!("refused: {r}"),
                None if e.is_timeout() => "timed out".to_owned(),
                None if e.is_connect() => "could not connect".to_owned(),
                None => "the request failed".to_owned(),
            };
            failed(error)
        }
    };
    Answer { latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), ..answer }
}

/// Makes one delivery attempt: waits (by queueing again) until it is due, posts the signed
/// message, records the attempt, then clears the endpoint's failure streak, or queues the
/// next attempt of the schedule and disables an endpoint failing for too long.
///
/// # Errors
/// Retryable when the store or the queue fails (the receiver's failures are recorded, not
/// returned).
pub async fn deliver(s: &Webhooks<'_>, d: &Delivery) -> Result<JobOutcome, JobError> {
    let now = s.clock.now_ms();
    if now < d.not_before_ms {
        let later = Delivery { hop: d.hop + 1, ..d.clone() };
        queue(s, later).await.map_err(retry)?;
        return Ok(JobOutcome::Skipped("not due yet; queued again".into()));
    }
    let store = s.store;
    let Some((endpoint, _)) = super::endpoint(store, d.account_id, d.endpoint_id).await.map_err(retry)? else {
        return Ok(JobOutcome::Skipped("the endpoint was deleted".into()));
    };
    if !endpoint.enabled {
        return Ok(JobOutcome::Skipped("the endpoint is disabled".into()));
    }
    let Some(message) = super::message(store, d.account_id, &d.message_id).await.map_err(retry)? else {
        return Ok(JobOutcome::Skipped("the message is no longer kept".into()));
    };
    let answer = post(s, &endpoint, &message, now).await;
    let succeeded = answer.succeeded();
    let now = s.clock.now_ms();
    // A failure of a scheduled or replayed delivery extends the endpoint's failure streak;
    // one that has lasted too long disables it instead of scheduling another attempt.
    let counts = !succeeded && d.trigger != Trigger::Test;
    let failing_since = if counts { Some(failing_since(s, &endpoint, now).await?) } else { None };
    let disable_now = failing_since.is_some_and(|since| now - since >= super::hours_ms(s.config.disable_after_hours));
    let next_at = (counts && !disable_now)
        .then(|| usize::try_from(d.attempt).ok().and_then(|n| n.checked_sub(1)).and_then(|i| RETRY_SCHEDULE.get(i)))
        .flatten()
        .map(|wait| now + millis(*wait));
    let attempt = Attempt {
        id: WebhookAttemptId::new(),
        endpoint_id: endpoint.id,
        message_id: message.id.clone(),
        event_type: message.event_type.clone(),
        attempt: d.attempt,
        trigger: d.trigger,
        at_ms: now,
        outcome: if succeeded { "succeeded" } else { "failed" }.into(),
        status: answer.status,
        error: answer.error,
        latency_ms: answer.latency_ms,
        response_excerpt: answer.excerpt,
        next_attempt_at_ms: next_at,
    };
    let item = Item::from_record(keys::webhook_attempt(d.account_id, endpoint.id, attempt.id), &attempt)
        .map_err(retry)?
        .expiring_at(super::expiry_secs(now));
    store.put(Put::new(item)).await.map_err(retry)?;
    tracing::info!(
        endpoint_id = %endpoint.id, message_id = %message.id, attempt = d.attempt, status = ?attempt.status,
        error = ?attempt.error, latency_ms = attempt.latency_ms, "webhook delivery attempted"
    );
    if succeeded && endpoint.failing_since_ms.is_some() {
        super::mark_healthy(store, d.account_id, endpoint.id).await.map_err(retry)?;
    }
    if disable_now {
        disable(s, &endpoint, now).await?;
    }
    if let Some(at) = next_at {
        let next = Delivery { attempt: d.attempt + 1, not_before_ms: at, hop: 0, ..d.clone() };
        queue(s, next).await.map_err(retry)?;
    }
    Ok(JobOutcome::Done)
}

/// When the endpoint's failure streak began: the stored start, or now (stored) for the
/// first failure since a success.
async fn failing_since(s: &Webhooks<'_>, endpoint: &Endpoint, now: i64) -> Result<i64, JobError> {
    if let Some(since) = endpoint.failing_since_ms {
        return Ok(since);
    }
    let u = Update::new(keys::webhook_endpoint(endpoint.account_id, endpoint.id))
        .set("failing_since_ms", now)
        .when(Condition::All(vec![Condition::Exists, Condition::Missing("failing_since_ms".into())]));
    match s.store.update(u).await {
        Ok(_) | Err(StoreError::ConditionFailed) => Ok(now),
        Err(e) => Err(retry(e)),
    }
}

/// Disables an endpoint that kept failing and tells the account's owners and admins, once.
async fn disable(s: &Webhooks<'_>, endpoint: &Endpoint, now: i64) -> Result<(), JobError> {
    let store = s.store;
    let account = endpoint.account_id;
    let u = Update::new(keys::webhook_endpoint(account, endpoint.id))
        .set("enabled", false)
        .set("disabled_reason", "failing")
        .set("updated_at_ms", now)
        .when(Condition::Equals("enabled".into(), json!(true)));
    match store.update(u).await {
        Ok(_) => {}
        // Disabled already (by another delivery, or a person): they were told then.
        Err(StoreError::ConditionFailed) => return Ok(()),
        Err(e) => return Err(retry(e)),
    }
    tracing::warn!(account_id = %account, endpoint_id = %endpoint.id, "webhook endpoint disabled after failing");
    let event = NewEvent::new(Actor::System, AuditAction::WebhookEndpointDisabled, Origin::default())
        .target(endpoint.id)
        .detail(json!({"url": endpoint.url}));
    if let Err(e) = crate::audit::record(store, AuditStream::Account(account), event, now).await {
        tracing::warn!(error = %e, "could not audit the disabled webhook endpoint");
    }
    let name = crate::tenancy::load_account(store, account)
        .await
        .map_err(retry)?
        .map_or_else(|| "your account".to_owned(), |(a, _)| a.name);
    let link = format!("{}/accounts/{account}/webhooks", s.app_url);
    for m in crate::tenancy::members(store, account).await.map_err(retry)? {
        if !matches!(m.role, Role::Owner | Role::Admin) {
            continue;
        }
        let Some(user) = crate::auth::users::by_id(store, m.user_id).await.map_err(retry)? else { continue };
        let email = Email::WebhookEndpointDisabled {
            account_name: name.clone(),
            url: endpoint.url.clone(),
            link: link.clone(),
        };
        let key = format!("webhook-disabled:{}:{}:{}", endpoint.id, m.user_id, now);
        s.jobs()
            .enqueue_with_key(Job::SendEmail { to: user.email, email }, crate::jobs::JobId::new(), key)
            .await
            .map_err(retry)?;
    }
    Ok(())
}
