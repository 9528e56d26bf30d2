//! Outbound webhook endpoints of an account (owners and admins): register, change, delete,
//! rotate the signing secret (shown once), read the delivery log, replay messages, send a
//! test message. Delivery itself runs in the worker ([`shared::webhooks`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Path, Query, RequestContext, json_with_status};
use shared::id::{AccountId, WebhookEndpointId};
use shared::services::Services;
use shared::tenancy::{Action, Tenant, TenantScope};
use shared::webhooks::delivery::{self, Delivery, Trigger};
use shared::webhooks::{self, Attempt, Endpoint, Event, NewEndpoint};

const PROBLEM: &str = "application/problem+json";

/// The longest endpoint description.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// The most messages one replay request queues.
pub const MAX_REPLAY: u32 = 500;

/// A new webhook endpoint.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/groundwork", "description": "ERP sync", "event_types": ["member.joined"]}))]
pub struct NewWebhookEndpoint {
    /// Where messages are posted: an `https` URL whose host resolves to public addresses.
    #[schema(max_length = 2048)]
    pub url: String,
    /// A label (up to 200 characters).
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// The event types to receive (`noun.verb`, at most 50); absent or empty for all.
    #[schema(max_items = 50, value_type = Option<Vec<EventTypeName>>)]
    pub event_types: Option<Vec<String>>,
    /// Whether messages are sent to it (default `true`).
    pub enabled: Option<bool>,
}

/// An event type: `noun.verb` (documentation only: the routes check it themselves).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[a-z0-9_]+(\\.[a-z0-9_]+)+$")]
#[allow(dead_code)]
pub struct EventTypeName(String);

/// A registered endpoint: the signing secret is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhookEndpoint {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_<base64>`: verify the `webhook-signature` header with it (Standard Webhooks).
    /// Store it now: it is never shown again.
    pub secret: String,
}

/// Changes to an endpoint.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "ERP sync (production)"}))]
pub struct UpdateWebhookEndpoint {
    /// A new URL (checked as at registration).
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// A new label.
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// New event types; empty for all.
    #[schema(max_items = 50, value_type = Option<Vec<EventTypeName>>)]
    pub event_types: Option<Vec<String>>,
    /// Enable or disable it. Enabling an endpoint Groundwork disabled clears its failures.
    pub enabled: Option<bool>,
}

/// The account's endpoints.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookEndpointList {
    /// Every endpoint, oldest first.
    pub endpoints: Vec<Endpoint>,
}

/// A rotated secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    /// The new secret, shown this once: it signs from now on.
    pub secret: String,
    /// Until when the previous secret also signs (Unix ms).
    pub previous_secret_expires_at_ms: i64,
}

/// A page of an endpoint's delivery log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    /// Attempts, newest first.
    pub attempts: Vec<Attempt>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// What to send again: one message, or every message from a time on.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"since_ms": 1_700_000_000_000_i64}))]
pub struct Replay {
    /// One message (its `webhook-id`).
    #[schema(max_length = 100)]
    pub message_id: Option<String>,
    /// Every message the endpoint is subscribed to, published from this time on (Unix ms);
    /// at most 500 per request, oldest first.
    #[schema(minimum = 0)]
    pub since_ms: Option<i64>,
}

/// What a replay queued.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// How many messages were queued.
    pub queued: u32,
    /// When more messages remain, the `since_ms` that continues after these.
    pub next_since_ms: Option<i64>,
}

/// A queued test message.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestSent {
    /// Its `webhook-id`; its attempt shows in the delivery log.
    pub message_id: String,
}

fn description(d: Option<&str>) -> Result<String, ApiError> {
    let d = d.unwrap_or_default().trim();
    if d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            code: "invalid_description",
            detail: format!("a description is up to {MAX_DESCRIPTION_CHARS} printable characters"),
        });
    }
    Ok(d.to_owned())
}

async fn load(s: &Services, scope: &TenantScope, id: WebhookEndpointId) -> Result<(Endpoint, u64), ApiError> {
    webhooks::endpoint(s.store.as_ref(), scope.account_id(), id).await?.ok_or(ApiError::NotFound)
}

async fn audited(
    s: &Services,
    scope: &TenantScope,
    ctx: &RequestContext,
    action: AuditAction,
    id: WebhookEndpointId,
    detail: serde_json::Value,
) {
    shared::audit::logged_after_commit(
        scope.audit(s, action, Some(id.to_string()), ctx.origin(), detail).await,
        action.as_str(),
    );
}

/// Registers a webhook endpoint for the account.
#[utoipa::path(post, path = "/accounts/{account_id}/webhooks", tag = "webhooks", operation_id = "create_webhook_endpoint", request_body = NewWebhookEndpoint,
    security(("bearer" = ["manage_webhooks"])), params(("account_id" = String, Path)),
    responses((status = 201, description = "Registered; the signing secret is in the answer, this once", body = CreatedWebhookEndpoint),
              (status = 403, description = "The caller's role may not manage webhooks (`forbidden`)", body = Problem, content_type = PROBLEM),
              (status = 409, description = "The account has its 20 endpoints (`too_many_endpoints`)", body = Problem, content_type = PROBLEM),
              (status = 422, description = "The URL is not a public https URL (`invalid_url`), an event type is not one to subscribe to (`invalid_event_type`), the description is too long (`invalid_description`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn create(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(req): Json<NewWebhookEndpoint>,
) -> Result<Response, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    let new = NewEndpoint {
        url: webhooks::check_endpoint_url(&req.url, s.config.outbound).await?,
        description: description(req.description.as_deref())?,
        event_types: webhooks::check_event_types(req.event_types.as_deref().unwrap_or_default())?,
        enabled: req.enabled.unwrap_or(true),
    };
    let (endpoint, secret) = webhooks::create(s.store.as_ref(), scope.account_id(), new, s.clock.now_ms()).await?;
    let detail = json!({"url": endpoint.url, "event_types": endpoint.event_types});
    audited(&s, &scope, &ctx, AuditAction::WebhookEndpointCreated, endpoint.id, detail).await;
    Ok(json_with_status(StatusCode::CREATED, &CreatedWebhookEndpoint { endpoint, secret }))
}

/// Lists the account's webhook endpoints (never their secrets).
#[utoipa::path(get, path = "/accounts/{account_id}/webhooks", tag = "webhooks", operation_id = "list_webhook_endpoints", security(("bearer" = ["manage_webhooks"])),
    params(("account_id" = String, Path)), responses((status = 200, description = "The endpoints, without their secrets", body = WebhookEndpointList),
              (status = 403, description = "The caller's role may not manage webhooks (`forbidden`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn list(
    State(s): State<Services>,
    Tenant(scope): Tenant,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    let endpoints = webhooks::endpoints(s.store.as_ref(), scope.account_id()).await?;
    Ok(Json(WebhookEndpointList { endpoints: endpoints.into_iter().map(Endpoint::public).collect() }))
}

/// Reads one webhook endpoint.
#[utoipa::path(get, path = "/accounts/{account_id}/webhooks/{endpoint_id}", tag = "webhooks", operation_id = "get_webhook_endpoint",
    security(("bearer" = ["manage_webhooks"])), params(("account_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, description = "The endpoint, without its secrets", body = Endpoint),
              (status = 404, description = "No such endpoint in the account (`not_found`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn get(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, WebhookEndpointId)>,
) -> Result<Json<Endpoint>, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    Ok(Json(load(&s, &scope, ids.1).await?.0.public()))
}

/// Changes a webhook endpoint.
#[utoipa::path(patch, path = "/accounts/{account_id}/webhooks/{endpoint_id}", tag = "webhooks", operation_id = "update_webhook_endpoint",
    request_body = UpdateWebhookEndpoint, security(("bearer" = ["manage_webhooks"])),
    params(("account_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, description = "The endpoint as changed", body = Endpoint),
              (status = 404, description = "No such endpoint in the account (`not_found`)", body = Problem, content_type = PROBLEM),
              (status = 409, description = "The endpoint changed meanwhile: read it again (`conflict`)", body = Problem, content_type = PROBLEM),
              (status = 422, description = "`invalid_url`, `invalid_event_type` or `invalid_description`, as at registration", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn update(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, WebhookEndpointId)>,
    Json(req): Json<UpdateWebhookEndpoint>,
) -> Result<Json<Endpoint>, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    let (mut endpoint, version) = load(&s, &scope, ids.1).await?;
    if let Some(url) = &req.url {
        endpoint.url = webhooks::check_endpoint_url(url, s.config.outbound).await?;
    }
    if let Some(d) = &req.description {
        endpoint.description = description(Some(d))?;
    }
    if let Some(types) = &req.event_types {
        endpoint.event_types = webhooks::check_event_types(types)?;
    }
    if let Some(enabled) = req.enabled {
        if enabled && !endpoint.enabled {
            endpoint.disabled_reason = None;
            endpoint.failing_since_ms = None;
        }
        endpoint.enabled = enabled;
    }
    endpoint.updated_at_ms = s.clock.now_ms();
    webhooks::save(s.store.as_ref(), &endpoint, version).await?;
    let detail = json!({"url": req.url.is_some(), "description": req.description.is_some(),
        "event_types": req.event_types.is_some(), "enabled": req.enabled});
    audited(&s, &scope, &ctx, AuditAction::WebhookEndpointUpdated, endpoint.id, detail).await;
    Ok(Json(endpoint.public()))
}

/// Deletes a webhook endpoint: nothing more is sent to it.
#[utoipa::path(delete, path = "/accounts/{account_id}/webhooks/{endpoint_id}", tag = "webhooks", operation_id = "delete_webhook_endpoint",
    security(("bearer" = ["manage_webhooks"])), params(("account_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No such endpoint in the account (`not_found`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn delete(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, WebhookEndpointId)>,
) -> Result<StatusCode, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    if !webhooks::delete(s.store.as_ref(), scope.account_id(), ids.1).await? {
        return Err(ApiError::NotFound);
    }
    audited(&s, &scope, &ctx, AuditAction::WebhookEndpointDeleted, ids.1, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotates an endpoint's signing secret: the new one signs at once, the previous one too
/// until `previous_secret_expires_at_ms` (`GROUNDWORK_WEBHOOK_ROTATION_OVERLAP_HOURS`).
#[utoipa::path(post, path = "/accounts/{account_id}/webhooks/{endpoint_id}/rotate-secret", tag = "webhooks", operation_id = "rotate_webhook_secret",
    security(("bearer" = ["manage_webhooks"])), params(("account_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, description = "The new secret, this once", body = RotatedSecret),
              (status = 404, description = "No such endpoint in the account (`not_found`)", body = Problem, content_type = PROBLEM),
              (status = 409, description = "The endpoint changed meanwhile: retry (`conflict`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn rotate_secret(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, WebhookEndpointId)>,
) -> Result<Json<RotatedSecret>, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    let (mut endpoint, version) = load(&s, &scope, ids.1).await?;
    let overlap = i64::try_from(s.config.webhooks.rotation_overlap_hours).unwrap_or(168) * 3_600_000;
    let secret = webhooks::rotate_secret(&mut endpoint, s.clock.now_ms(), overlap)?;
    webhooks::save(s.store.as_ref(), &endpoint, version).await?;
    let until = endpoint.previous_secret_expires_at_ms.unwrap_or_default();
    audited(&s, &scope, &ctx, AuditAction::WebhookSecretRotated, endpoint.id, json!({"previous_expires_at_ms": until}))
        .await;
    Ok(Json(RotatedSecret { secret, previous_secret_expires_at_ms: until }))
}

/// An endpoint's delivery log: every attempt (status, latency, the start of the answer),
/// newest first, kept 30 days.
#[utoipa::path(get, path = "/accounts/{account_id}/webhooks/{endpoint_id}/attempts", tag = "webhooks", operation_id = "list_webhook_attempts",
    security(("bearer" = ["manage_webhooks"])),
    params(("account_id" = String, Path), ("endpoint_id" = String, Path), PageParams),
    responses((status = 200, description = "A page of the delivery log", body = AttemptList),
              (status = 400, description = "A cursor this server did not issue (`invalid_cursor`)", body = Problem, content_type = PROBLEM),
              (status = 404, description = "No such endpoint in the account (`not_found`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn attempts(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, WebhookEndpointId)>,
    Query(p): Query<PageParams>,
) -> Result<Json<AttemptList>, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    load(&s, &scope, ids.1).await?;
    let (attempts, next_cursor) =
        webhooks::attempts(s.store.as_ref(), scope.account_id(), ids.1, p.limit(), p.cursor()?).await?;
    Ok(Json(AttemptList { attempts, next_cursor }))
}

fn enabled(endpoint: &Endpoint) -> Result<(), ApiError> {
    if endpoint.enabled {
        return Ok(());
    }
    Err(ApiError::Conflict { code: "endpoint_disabled", detail: "enable the endpoint first".into() })
}

/// Sends messages to an endpoint again (retried on the schedule like new ones): one
/// message by id, or every message it is subscribed to from a time on (kept 30 days).
#[utoipa::path(post, path = "/accounts/{account_id}/webhooks/{endpoint_id}/replay", tag = "webhooks", operation_id = "replay_webhook_messages",
    request_body = Replay, security(("bearer" = ["manage_webhooks"])),
    params(("account_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 202, description = "Queued", body = Replayed),
              (status = 404, description = "No such endpoint in the account (`not_found`)", body = Problem, content_type = PROBLEM),
              (status = 409, description = "The endpoint is disabled: enable it first (`endpoint_disabled`)", body = Problem, content_type = PROBLEM),
              (status = 422, description = "Neither or both of `message_id` and `since_ms` (`invalid_replay`), a message not kept for the account (`unknown_message`), or of a type the endpoint is not subscribed to (`not_subscribed`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn replay(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, WebhookEndpointId)>,
    Json(req): Json<Replay>,
) -> Result<Response, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    let (endpoint, _) = load(&s, &scope, ids.1).await?;
    let account = scope.account_id();
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let (messages, next_since_ms) = match (&req.message_id, req.since_ms) {
        (Some(id), None) => {
            let message = webhooks::message(store, account, id).await?.ok_or_else(|| ApiError::Invalid {
                code: "unknown_message",
                detail: "no message with this id is kept for the account (messages are kept 30 days)".into(),
            })?;
            if !endpoint.subscribed(&message.event_type) {
                return Err(ApiError::Invalid {
                    code: "not_subscribed",
                    detail: "the endpoint is not subscribed to this message's type".into(),
                });
            }
            (vec![message], None)
        }
        (None, Some(since)) if since >= 0 => {
            let mut page = webhooks::messages_since(store, account, since, MAX_REPLAY + 1).await?;
            let more = page.len() > MAX_REPLAY as usize;
            page.truncate(MAX_REPLAY as usize);
            let next = if more { page.last().map(|m| m.published_at_ms + 1) } else { None };
            page.retain(|m| endpoint.subscribed(&m.event_type));
            (page, next)
        }
        _ => {
            return Err(ApiError::Invalid {
                code: "invalid_replay",
                detail: "give either message_id or since_ms (a time in Unix ms)".into(),
            });
        }
    };
    enabled(&endpoint)?;
    for m in &messages {
        delivery::queue(&s.webhooks(), Delivery::first(account, endpoint.id, &m.id, Trigger::Replay, now)).await?;
    }
    let queued = u32::try_from(messages.len()).unwrap_or(u32::MAX);
    let detail = json!({"message_id": req.message_id, "since_ms": req.since_ms, "queued": queued});
    audited(&s, &scope, &ctx, AuditAction::WebhookMessagesReplayed, endpoint.id, detail).await;
    Ok(json_with_status(StatusCode::ACCEPTED, &Replayed { queued, next_since_ms }))
}

/// Sends a `webhook.test` message to one endpoint (one attempt, in the delivery log).
#[utoipa::path(post, path = "/accounts/{account_id}/webhooks/{endpoint_id}/test", tag = "webhooks", operation_id = "send_webhook_test",
    security(("bearer" = ["manage_webhooks"])), params(("account_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 202, description = "Queued", body = TestSent),
              (status = 404, description = "No such endpoint in the account (`not_found`)", body = Problem, content_type = PROBLEM),
              (status = 409, description = "The endpoint is disabled: enable it first (`endpoint_disabled`)", body = Problem, content_type = PROBLEM)))]
pub(crate) async fn test(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, WebhookEndpointId)>,
) -> Result<Response, ApiError> {
    scope.require(Action::ManageWebhooks)?;
    let (endpoint, _) = load(&s, &scope, ids.1).await?;
    enabled(&endpoint)?;
    let now = s.clock.now_ms();
    let event = Event::new("webhook.test", webhooks::new_message_id(), now, json!({"endpoint_id": endpoint.id}));
    let body = event.body()?;
    let message = webhooks::Message { id: event.id, event_type: event.event_type, body, published_at_ms: now };
    let account = scope.account_id();
    let message = webhooks::store_message(s.store.as_ref(), account, message).await?;
    delivery::queue(&s.webhooks(), Delivery::first(account, endpoint.id, &message.id, Trigger::Test, now)).await?;
    Ok(json_with_status(StatusCode::ACCEPTED, &TestSent { message_id: message.id }))
}
