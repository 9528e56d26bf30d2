//! Outbound webhooks: an account's own HTTPS endpoints receive the events of its account,
//! signed per the Standard Webhooks specification, retried on a published schedule, every
//! attempt kept in a delivery log.
//!
//! The path of one event:
//! 1. any function calls [`publish`] (or [`stage`] inside a transaction): one job on the
//!    jobs queue, keyed by the message id, so publishing the same id twice delivers once;
//! 2. the worker runs it ([`delivery::fan_out`]): the message is stored under its account
//!    (kept [`MESSAGE_RETENTION`], for replays) and one delivery job is queued per enabled
//!    endpoint subscribed to its type;
//! 3. each delivery ([`delivery::deliver`]) posts the stored body through the guarded
//!    client ([`crate::outbound::guarded`]: public addresses only, checked after DNS, no
//!    redirects), records the attempt, and on failure queues the next one at the time
//!    [`RETRY_SCHEDULE`] says; an endpoint failing for `GROUNDWORK_WEBHOOK_DISABLE_AFTER_HOURS`
//!    is disabled and the account's owners and admins are emailed.
//!
//! Delivery jobs are keyed by endpoint, message and attempt, so a redelivered job posts
//! once; a receiver still deduplicates on `webhook-id`, as at-least-once delivery requires.
//! Messages to one endpoint are not ordered: each carries its `timestamp`.

pub mod catalogue;
pub mod delivery;
pub mod signature;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::id::{AccountId, WebhookAttemptId, WebhookEndpointId};
use crate::jobs::{Job, Jobs, outbox::StagedJob};
use crate::keys;
use crate::outbound::OutboundConfig;
use crate::queue::QueueError;
use crate::queue::Queues;
use crate::store::{Condition, Item, Put, Query, Store, StoreError, StoreExt as _, Update};

/// The delay before each attempt after a failed one: attempt `n + 1` is made
/// `RETRY_SCHEDULE[n]` after attempt `n` failed (the first is made at once). Eight
/// attempts over about 28 hours, as Svix publishes.
pub const RETRY_SCHEDULE: [std::time::Duration; 7] = {
    use std::time::Duration;
    [
        Duration::from_secs(5),
        Duration::from_secs(5 * 60),
        Duration::from_secs(30 * 60),
        Duration::from_secs(2 * 3600),
        Duration::from_secs(5 * 3600),
        Duration::from_secs(10 * 3600),
        Duration::from_secs(10 * 3600),
    ]
};

/// How many attempts a message gets per endpoint.
pub const MAX_ATTEMPTS: u32 = RETRY_SCHEDULE.len() as u32 + 1;

/// The largest message body (the `type`, `timestamp` and `data` envelope), in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long messages are kept for replay, and attempts in the delivery log.
pub const MESSAGE_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// The most endpoints an account may register.
pub const MAX_ENDPOINTS: usize = 20;

/// The longest endpoint URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// How much of a receiver's answer the delivery log keeps, in bytes.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;

/// The webhook settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct WebhooksConfig {
    /// `GROUNDWORK_WEBHOOK_TIMEOUT_SECS`: how long a receiver has to answer (default 15,
    /// 1 to 20: a batch of deliveries, handled together, must end within the worker's
    /// 30-second Lambda timeout).
    #[serde(rename = "webhook_timeout_secs", default = "default_timeout")]
    pub timeout_secs: u64,
    /// `GROUNDWORK_WEBHOOK_DISABLE_AFTER_HOURS`: an endpoint whose deliveries have failed
    /// for this long without one success is disabled (default 120, five days).
    #[serde(rename = "webhook_disable_after_hours", default = "default_disable_after")]
    pub disable_after_hours: u64,
    /// `GROUNDWORK_WEBHOOK_ROTATION_OVERLAP_HOURS`: how long a rotated-out secret still
    /// signs beside the new one (default 24, at most 168).
    #[serde(rename = "webhook_rotation_overlap_hours", default = "default_overlap")]
    pub rotation_overlap_hours: u64,
}

fn default_timeout() -> u64 {
    15
}
fn default_disable_after() -> u64 {
    120
}
fn default_overlap() -> u64 {
    24
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            timeout_secs: default_timeout(),
            disable_after_hours: default_disable_after(),
            rotation_overlap_hours: default_overlap(),
        }
    }
}

impl WebhooksConfig {
    /// From the `GROUNDWORK_WEBHOOK_*` variables.
    ///
    /// # Errors
    /// A malformed number, or one out of its range.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        let c: Self = env.area("GROUNDWORK_")?;
        crate::settings::at_least("GROUNDWORK_WEBHOOK_TIMEOUT_SECS", c.timeout_secs, 1)?;
        crate::settings::at_most("GROUNDWORK_WEBHOOK_TIMEOUT_SECS", c.timeout_secs, 20)?;
        crate::settings::at_least("GROUNDWORK_WEBHOOK_DISABLE_AFTER_HOURS", c.disable_after_hours, 1)?;
        crate::settings::at_most("GROUNDWORK_WEBHOOK_ROTATION_OVERLAP_HOURS", c.rotation_overlap_hours, 168)?;
        Ok(c)
    }
}

/// What webhook delivery needs: the store, the clock, the queues, the guarded client and
/// the settings. Borrowed from the process's services (`Services::webhooks`).
#[derive(Clone, Copy)]
pub struct Webhooks<'a> {
    /// The single table.
    pub store: &'a dyn Store,
    /// The time.
    pub clock: &'a dyn Clock,
    /// Where delivery jobs go.
    pub queues: &'a Queues,
    /// The guarded client ([`crate::outbound::guarded`]) deliveries are posted with.
    pub http: &'a crate::outbound::LazyGuarded,
    /// The webhook settings.
    pub config: WebhooksConfig,
    /// The outbound settings (whether loopback is allowed).
    pub outbound: OutboundConfig,
    /// `GROUNDWORK_APP_URL`: the frontend, for the link in the disabled-endpoint email.
    pub app_url: &'a str,
}

impl Webhooks<'_> {
    /// Enqueues jobs with this context's queues, store and clock.
    pub fn jobs(&self) -> Jobs<'_> {
        Jobs { queues: self.queues, store: self.store, clock: self.clock }
    }
}

fn hours_ms(hours: u64) -> i64 {
    i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000).saturating_mul(3_600_000)
}

fn expiry_secs(now_ms: i64) -> i64 {
    (now_ms + i64::try_from(MESSAGE_RETENTION.as_millis()).unwrap_or(0)) / 1000
}

/// A secret an endpoint's messages are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    /// `whsec_<base64>`.
    pub secret: String,
    /// Until when it signs (Unix ms); `None` for the current one.
    pub expires_at_ms: Option<i64>,
}

/// An account's webhook endpoint (never its secrets, as routes show it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Endpoint {
    /// Its id.
    #[schema(value_type = String)]
    pub id: WebhookEndpointId,
    /// The account whose events it receives.
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// Where messages are posted (`https`).
    pub url: String,
    /// A label.
    pub description: String,
    /// The event types it receives; empty for every type.
    pub event_types: Vec<String>,
    /// Whether messages are sent to it.
    pub enabled: bool,
    /// Why it was disabled by Groundwork (`failing`), if it was.
    pub disabled_reason: Option<String>,
    /// Since when its deliveries have failed without a success in between (Unix ms); absent
    /// while it is healthy.
    // Absent rather than null: the first failure is stored under an "attribute missing"
    // condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<i64>,
    /// When a rotated-out secret stops signing (Unix ms), during a rotation.
    pub previous_secret_expires_at_ms: Option<i64>,
    /// When it was registered (Unix ms).
    pub created_at_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
    /// The secrets that sign, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(ignore)]
    pub signing_secrets: Vec<SigningSecret>,
}

impl Endpoint {
    /// Whether it receives events of `event_type` ([`catalogue`]'s `webhook.test` only on
    /// request, never by subscription).
    pub fn subscribed(&self, event_type: &str) -> bool {
        event_type != "webhook.test"
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }

    /// The secrets that sign at `now_ms`.
    pub fn live_secrets(&self, now_ms: i64) -> impl Iterator<Item = &str> {
        self.signing_secrets
            .iter()
            .filter(move |s| s.expires_at_ms.is_none_or(|e| e > now_ms))
            .map(|s| s.secret.as_str())
    }

    /// As shown to people: without its secrets.
    pub fn public(mut self) -> Self {
        self.signing_secrets.clear();
        self
    }
}

/// One message as stored for delivery and replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    /// Its id: the `webhook-id` header.
    pub id: String,
    /// Its event type.
    pub event_type: String,
    /// The exact body every attempt posts.
    pub body: String,
    /// When it was stored (Unix ms).
    pub published_at_ms: i64,
}

/// One delivery attempt, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// Its id (sorts by time).
    #[schema(value_type = String)]
    pub id: WebhookAttemptId,
    /// The endpoint.
    #[schema(value_type = String)]
    pub endpoint_id: WebhookEndpointId,
    /// The message.
    pub message_id: String,
    /// The message's event type.
    pub event_type: String,
    /// Which attempt of the message this was (1 to [`MAX_ATTEMPTS`]).
    pub attempt: u32,
    /// What made it: `scheduled` (publishing and its retries), `replay` or `test`.
    pub trigger: delivery::Trigger,
    /// When it was made (Unix ms).
    pub at_ms: i64,
    /// `succeeded` (a 2xx answer) or `failed`.
    pub outcome: String,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed without an answer (timeout, refused address, connection).
    pub error: Option<String>,
    /// How long the receiver took, in milliseconds.
    pub latency_ms: u64,
    /// The start of the receiver's answer (up to 1 KiB, as text).
    pub response_excerpt: String,
    /// When the next attempt is due (Unix ms), if one is scheduled.
    pub next_attempt_at_ms: Option<i64>,
}

pub use crate::jobs::webhook::WebhookEvent as Event;

impl Event {
    /// An event of `event_type` with `id`, happening at `occurred_at_ms`.
    pub fn new(event_type: impl Into<String>, id: impl Into<String>, occurred_at_ms: i64, data: Value) -> Self {
        Self { event_type: event_type.into(), id: id.into(), occurred_at_ms, data }
    }

    /// The body every attempt posts: `{"type", "timestamp" (RFC 3339), "data"}`.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a malformed type or id, or a body over [`MAX_BODY_BYTES`].
    pub fn body(&self) -> Result<String, QueueError> {
        if !catalogue::valid_type(&self.event_type) {
            return Err(QueueError::Invalid(format!("{:?} is not an event type (noun.verb)", self.event_type)));
        }
        if !valid_message_id(&self.id) {
            return Err(QueueError::Invalid("a message id is 1 to 100 of A-Z a-z 0-9 _ -".into()));
        }
        let timestamp = chrono::DateTime::from_timestamp_millis(self.occurred_at_ms)
            .ok_or_else(|| QueueError::Invalid("the event time is out of range".into()))?
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = serde_json::json!({"type": self.event_type, "timestamp": timestamp, "data": self.data}).to_string();
        if body.len() > MAX_BODY_BYTES {
            return Err(QueueError::Invalid(format!("a webhook body is at most {MAX_BODY_BYTES} bytes")));
        }
        Ok(body)
    }
}

/// Whether `id` is a well-formed message id.
pub fn valid_message_id(id: &str) -> bool {
    (1..=100).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A fresh message id, `msg_<ULID>`, for events with no natural id.
pub fn new_message_id() -> String {
    format!("msg_{}", ulid::Ulid::new())
}

fn publish_job(account: AccountId, event: &Event) -> Result<(Job, String), QueueError> {
    event.body()?;
    let key = format!("webhook-publish:{account}:{}", event.id);
    Ok((Job::PublishWebhook { account_id: account, event: event.clone() }, key))
}

/// Publishes `event` to the endpoints of `account`: one job sent to the jobs queue (the
/// caller waits for that send only).
///
/// # Errors
/// [`QueueError::Invalid`] for a malformed event (see [`Event::body`]); the queue's errors.
pub async fn publish(jobs: &Jobs<'_>, account: AccountId, event: &Event) -> Result<(), QueueError> {
    let (job, key) = publish_job(account, event)?;
    jobs.enqueue_with_key(job, crate::jobs::JobId::new(), key).await.map(|_| ())
}

/// As [`publish`], staged to go out with a change (see [`crate::jobs::outbox`]): add the
/// returned job's `op()` to the change's transaction, then `dispatch` it.
///
/// # Errors
/// [`QueueError::Invalid`] for a malformed event.
pub fn stage(jobs: &Jobs<'_>, account: AccountId, event: &Event) -> Result<StagedJob, QueueError> {
    let (job, key) = publish_job(account, event)?;
    jobs.stage(job, Some(key))
}

/// Checks an endpoint URL as it is registered (see [`crate::outbound::check_configured`]):
/// `https`, no credentials, a host that is or resolves to public addresses only (checked
/// again at every delivery), at most [`MAX_URL_BYTES`].
///
/// # Errors
/// 422 `invalid_url`.
pub async fn check_endpoint_url(url: &str, config: OutboundConfig) -> Result<String, ApiError> {
    if url.len() > MAX_URL_BYTES {
        return Err(ApiError::Invalid {
            code: "invalid_url",
            detail: format!("a URL is at most {MAX_URL_BYTES} bytes"),
        });
    }
    match crate::outbound::check_configured(url, config).await {
        Ok(parsed) => Ok(parsed.to_string()),
        Err(r) => Err(ApiError::Invalid { code: "invalid_url", detail: format!("the endpoint URL is refused: {r}") }),
    }
}

/// Checks a list of event types to subscribe to (at most 50, each well-formed).
///
/// # Errors
/// 422 `invalid_event_type`.
pub fn check_event_types(types: &[String]) -> Result<Vec<String>, ApiError> {
    if types.len() > 50 {
        return Err(ApiError::Invalid { code: "invalid_event_type", detail: "at most 50 event types".into() });
    }
    if let Some(i) = types.iter().position(|t| !catalogue::valid_type(t) || t.as_str() == "webhook.test") {
        return Err(ApiError::Invalid {
            code: "invalid_event_type",
            detail: format!(
                "event_types[{i}] is not an event type one can subscribe to: noun.verb, lowercase, at most \
                 {} characters, and not webhook.test",
                catalogue::MAX_TYPE_CHARS
            ),
        });
    }
    let mut out = types.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every endpoint of `account`, with their secrets (callers showing them use
/// [`Endpoint::public`]).
///
/// # Errors
/// When the store fails.
pub async fn endpoints(store: &dyn Store, account: AccountId) -> Result<Vec<Endpoint>, StoreError> {
    let q = Query::partition(keys::account_partition(account)).begins_with(keys::WEBHOOK_ENDPOINT_PREFIX);
    store.query_all(q).await?.iter().map(Item::record).collect()
}

/// Endpoint `id` of `account`, with its secrets and its item version.
///
/// # Errors
/// When the store fails.
pub async fn endpoint(
    store: &dyn Store,
    account: AccountId,
    id: WebhookEndpointId,
) -> Result<Option<(Endpoint, u64)>, StoreError> {
    match store.get(&keys::webhook_endpoint(account, id)).await? {
        Some(item) => Ok(Some((item.record()?, item.version))),
        None => Ok(None),
    }
}

/// What registering an endpoint takes.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// The checked URL ([`check_endpoint_url`]).
    pub url: String,
    /// A label.
    pub description: String,
    /// The checked event types ([`check_event_types`]).
    pub event_types: Vec<String>,
    /// Whether it starts enabled.
    pub enabled: bool,
}

/// Registers an endpoint with a fresh secret; returns it (without secrets) and the secret.
///
/// # Errors
/// 409 `too_many_endpoints` past [`MAX_ENDPOINTS`]; the store's errors.
pub async fn create(
    store: &dyn Store,
    account: AccountId,
    new: NewEndpoint,
    now_ms: i64,
) -> Result<(Endpoint, String), ApiError> {
    if endpoints(store, account).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict {
            code: "too_many_endpoints",
            detail: format!("an account has at most {MAX_ENDPOINTS} webhook endpoints"),
        });
    }
    let secret = signature::new_secret()?;
    let endpoint = Endpoint {
        id: WebhookEndpointId::new(),
        account_id: account,
        url: new.url,
        description: new.description,
        event_types: new.event_types,
        enabled: new.enabled,
        disabled_reason: None,
        failing_since_ms: None,
        previous_secret_expires_at_ms: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        signing_secrets: vec![SigningSecret { secret: secret.clone(), expires_at_ms: None }],
    };
    let item = Item::from_record(keys::webhook_endpoint(account, endpoint.id), &endpoint)?;
    store.put(Put::new(item).if_not_exists()).await?;
    Ok((endpoint.public(), secret))
}

/// Writes `endpoint` back if its item is still at `version`.
///
/// # Errors
/// 409 `conflict` when it changed meanwhile; 404 when it was deleted; the store's errors.
pub async fn save(store: &dyn Store, endpoint: &Endpoint, version: u64) -> Result<(), ApiError> {
    let mut item = Item::from_record(keys::webhook_endpoint(endpoint.account_id, endpoint.id), endpoint)?;
    item.version = version;
    match store.put(Put::new(item).if_unchanged().when(Condition::VersionIs(version))).await {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(ApiError::Conflict {
            code: "conflict",
            detail: "the endpoint changed meanwhile; read it again and retry".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the current secret with a fresh one; the old one keeps signing for
/// `overlap_ms`. Secrets already rotated out are dropped. Returns the new secret.
///
/// # Errors
/// When there is no randomness.
pub fn rotate_secret(endpoint: &mut Endpoint, now_ms: i64, overlap_ms: i64) -> anyhow::Result<String> {
    let secret = signature::new_secret()?;
    let until = now_ms + overlap_ms;
    let previous = endpoint.signing_secrets.iter().find(|s| s.expires_at_ms.is_none()).cloned();
    endpoint.signing_secrets = std::iter::once(SigningSecret { secret: secret.clone(), expires_at_ms: None })
        .chain(previous.map(|p| SigningSecret { expires_at_ms: Some(until), ..p }))
        .collect();
    endpoint.previous_secret_expires_at_ms = Some(until);
    endpoint.updated_at_ms = now_ms;
    Ok(secret)
}

/// Deletes endpoint `id` of `account`; `false` if there was none. Its delivery log expires
/// by itself.
///
/// # Errors
/// When the store fails.
pub async fn delete(store: &dyn Store, account: AccountId, id: WebhookEndpointId) -> Result<bool, StoreError> {
    let del = crate::store::Delete::new(keys::webhook_endpoint(account, id)).when(Condition::Exists);
    match store.delete(del).await {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A page of endpoint `id`'s delivery log, newest first.
///
/// # Errors
/// When the store fails or the cursor is malformed.
pub async fn attempts(
    store: &dyn Store,
    account: AccountId,
    id: WebhookEndpointId,
    limit: u32,
    cursor: Option<crate::store::Cursor>,
) -> Result<(Vec<Attempt>, Option<String>), StoreError> {
    let q = Query::partition(keys::account_partition(account))
        .begins_with(keys::webhook_attempts_of(id))
        .descending()
        .limit(limit)
        .after(cursor);
    let page = store.query(q).await?;
    Ok((page.records()?, page.next.map(|c| c.encode())))
}

/// Stores `message` for `account` unless a message with its id is stored already; returns
/// the stored one.
///
/// # Errors
/// When the store fails.
pub async fn store_message(store: &dyn Store, account: AccountId, message: Message) -> Result<Message, StoreError> {
    let key = keys::webhook_message(account, &message.id);
    let item = Item::from_record(key.clone(), &message)?
        .with_gsi1(keys::webhook_message_index(account, message.published_at_ms, &message.id))
        .expiring_at(expiry_secs(message.published_at_ms));
    match store.put(Put::new(item).if_not_exists()).await {
        Ok(_) => Ok(message),
        Err(StoreError::ConditionFailed) => match store.get(&key).await? {
            Some(existing) => existing.record(),
            // Expired between the two calls: the new one stands.
            None => Ok(message),
        },
        Err(e) => Err(e),
    }
}

/// Message `id` of `account`, if still kept.
///
/// # Errors
/// When the store fails.
pub async fn message(store: &dyn Store, account: AccountId, id: &str) -> Result<Option<Message>, StoreError> {
    if !valid_message_id(id) {
        return Ok(None);
    }
    store.get_record(&keys::webhook_message(account, id)).await
}

/// The ids and types of `account`'s messages published from `since_ms` on, oldest first (at
/// most `limit`).
///
/// # Errors
/// When the store fails.
pub async fn messages_since(
    store: &dyn Store,
    account: AccountId,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let q = Query::index(crate::store::Index::Gsi1, keys::webhook_messages(account))
        .sort(crate::store::SortKey::Ge(keys::webhook_message_after(since_ms, "")))
        .limit(limit);
    store.query(q).await?.records()
}

/// Clears an endpoint's failure streak after a success (if it still has one).
pub(crate) async fn mark_healthy(
    store: &dyn Store,
    account: AccountId,
    id: WebhookEndpointId,
) -> Result<(), StoreError> {
    let u = Update::new(keys::webhook_endpoint(account, id)).remove("failing_since_ms").when(Condition::Exists);
    match store.update(u).await {
        Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(types: &[&str]) -> Endpoint {
        Endpoint {
            id: WebhookEndpointId::new(),
            account_id: AccountId::new(),
            url: "https://hooks.example.com/".into(),
            description: String::new(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            enabled: true,
            disabled_reason: None,
            failing_since_ms: None,
            previous_secret_expires_at_ms: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            signing_secrets: vec![SigningSecret { secret: signature::new_secret().unwrap(), expires_at_ms: None }],
        }
    }

    #[test]
    fn bodies_wrap_the_data_and_refuse_what_receivers_cannot_take() {
        let e = Event::new("member.joined", "m-1", 1_700_000_000_123, serde_json::json!({"user_id": "u"}));
        let body: Value = serde_json::from_str(&e.body().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"type": "member.joined", "timestamp": "2023-11-14T22:13:20.123Z", "data": {"user_id": "u"}})
        );
        assert!(Event { event_type: "Member".into(), ..e.clone() }.body().is_err());
        assert!(Event { id: "has space".into(), ..e.clone() }.body().is_err());
        assert!(Event { id: "x".repeat(101), ..e.clone() }.body().is_err());
        assert!(Event { data: Value::String("x".repeat(MAX_BODY_BYTES)), ..e }.body().is_err());
        assert!(new_message_id().starts_with("msg_") && valid_message_id(&new_message_id()));
    }

    #[test]
    fn subscriptions_select_types_and_tests_go_only_on_request() {
        assert!(endpoint(&[]).subscribed("member.joined"));
        assert!(endpoint(&["member.joined"]).subscribed("member.joined"));
        assert!(!endpoint(&["member.joined"]).subscribed("member.removed"));
        assert!(!endpoint(&[]).subscribed("webhook.test"));
        assert!(check_event_types(&["webhook.test".into()]).is_err());
        assert!(check_event_types(&["nope".into()]).is_err());
        let types = check_event_types(&["b.x".into(), "a.x".into(), "b.x".into()]).unwrap();
        assert_eq!(types, vec!["a.x".to_owned(), "b.x".to_owned()]);
    }

    #[test]
    fn a_rotated_secret_signs_until_the_overlap_ends() {
        let mut e = endpoint(&[]);
        let first = e.signing_secrets[0].secret.clone();
        let second = rotate_secret(&mut e, 1_000, 500).unwrap();
        assert_eq!(e.live_secrets(1_499).collect::<Vec<_>>(), vec![second.as_str(), first.as_str()]);
        assert_eq!(e.live_secrets(1_500).collect::<Vec<_>>(), vec![second.as_str()]);
        // A second rotation drops the first secret at once and starts a new overlap.
        let third = rotate_secret(&mut e, 1_200, 500).unwrap();
        assert_eq!(e.live_secrets(1_300).collect::<Vec<_>>(), vec![third.as_str(), second.as_str()]);
        assert_eq!(e.previous_secret_expires_at_ms, Some(1_700));
        assert!(e.clone().public().signing_secrets.is_empty());
        let shown = serde_json::to_string(&e.public()).unwrap();
        assert!(!shown.contains("whsec_"), "{shown}");
    }
}
