//! Product events sent by the account's frontend (or the product's backend, with an API
//! key): `POST /accounts/{account_id}/events`, a batch recorded in one write under the
//! account's partition (`shared::product_events`), beside the lifecycle events Groundwork's
//! own flows record. Any member may send them; the request's rate limits apply.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::auth::rate_limit::{self, Limit};
use shared::error::{ApiError, Problem};
use shared::http::{Json, json_with_status};
use shared::product_events::{LIFECYCLE, MAX_PROPERTIES, ProductEvent};
use shared::services::Services;
use shared::store::TxOp;
use shared::tenancy::{Action, Tenant};

/// The most events one request carries.
pub const MAX_BATCH: usize = 50;
/// The longest string property, in characters.
pub const MAX_STRING_CHARS: usize = 256;
/// How far back a client may date an event (it may have been queued offline).
pub const MAX_PAST_MS: i64 = 24 * 3_600_000;
/// How far ahead of the server's clock a client's date may be (clock skew).
pub const MAX_FUTURE_MS: i64 = 5 * 60_000;
/// Events one account may send per minute (429 `event_rate_limited` past it, the batch
/// refused whole): ten a second sustained, well above what a product's pages send, low
/// enough that a runaway loop in one tenant's frontend cannot flood the table.
pub const EVENTS_PER_ACCOUNT: Limit =
    Limit { name: "product-events", max: 600, window: std::time::Duration::from_secs(60) };

/// One event a client sends.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductEvent {
    /// `noun.verb` in lower case (`report.exported`); Groundwork's lifecycle names
    /// (`account.created`, `member.joined`...) are its own.
    #[schema(min_length = 3, max_length = 64, pattern = "^[a-z0-9_]+\\.[a-z0-9_]+$")]
    pub name: String,
    /// The client's id of this occurrence, with `at_ms` (as a client's event queue stamps
    /// both when the event happens): a retry with the same id and time records it once.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.:-]+$")]
    pub id: Option<String>,
    /// When it happened (Unix ms); the server's time when absent. At most 24 hours back and
    /// 5 minutes ahead.
    pub at_ms: Option<i64>,
    /// At most 20 properties: strings (at most 256 characters), numbers or booleans; ids,
    /// never personal data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// A batch of events.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": [{"name": "report.exported", "properties": {"format": "csv"}}]}))]
pub struct ProductEventBatch {
    /// 1 to 50 events.
    #[schema(min_items = 1, max_items = 50)]
    pub events: Vec<NewProductEvent>,
}

/// What was recorded.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProductEventsAccepted {
    /// How many events were recorded.
    pub accepted: usize,
}

/// The largest number a property holds (2^53: every integer up to it is exact in JSON
/// readers and in DynamoDB).
pub const MAX_NUMBER: f64 = 9_007_199_254_740_992.0;

/// A number no larger than 2^53 in size (compared exactly for integers: as a float, 2^53 + 1
/// rounds to 2^53); anything else passes.
fn number_in_range(value: &Value) -> bool {
    const MAX_INTEGER: u64 = 1 << 53;
    if let Some(n) = value.as_u64() {
        return n <= MAX_INTEGER;
    }
    if let Some(n) = value.as_i64() {
        return n.unsigned_abs() <= MAX_INTEGER;
    }
    value.as_f64().is_none_or(|n| n.abs() <= MAX_NUMBER)
}

/// `local@domain.tld`-shaped text.
fn looks_like_email(s: &str) -> bool {
    s.split_whitespace().any(|word| {
        word.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
    })
}

fn invalid(code: &'static str, detail: String) -> ApiError {
    ApiError::Invalid { code, detail }
}

fn checked(
    new: &NewProductEvent,
    index: usize,
    scope: &shared::tenancy::TenantScope,
    now: i64,
) -> Result<ProductEvent, ApiError> {
    if LIFECYCLE.contains(&new.name.as_str()) {
        return Err(invalid("reserved_event_name", format!("events[{index}]: {} is Groundwork's own event", new.name)));
    }
    let at_ms = new.at_ms.unwrap_or(now);
    if at_ms < now - MAX_PAST_MS || at_ms > now + MAX_FUTURE_MS {
        return Err(invalid(
            "invalid_event",
            format!("events[{index}]: at_ms must lie within the last 24 hours (and at most 5 minutes ahead)"),
        ));
    }
    if new.id.is_some() && new.at_ms.is_none() {
        return Err(invalid("invalid_event", format!("events[{index}]: an id needs the at_ms it happened at")));
    }
    if let Some(id) = &new.id
        && (id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)))
    {
        return Err(invalid("invalid_event", format!("events[{index}]: id is 1 to 64 of A-Z a-z 0-9 _ . : -")));
    }
    if new.properties.len() > MAX_PROPERTIES {
        return Err(invalid("invalid_event", format!("events[{index}]: at most {MAX_PROPERTIES} properties")));
    }
    let mut event = ProductEvent::new(&new.name, scope.account_id(), scope.user_id(), at_ms)
        .map_err(|e| invalid("invalid_event_name", format!("events[{index}]: {e}")))?;
    for (key, value) in &new.properties {
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok {
            let shown: String = key.chars().take(64).collect();
            return Err(invalid(
                "invalid_event",
                format!("events[{index}]: property name {shown:?}: 1 to 64 of a-z 0-9 _"),
            ));
        }
        if value.as_str().is_some_and(|s| s.chars().count() > MAX_STRING_CHARS) || !number_in_range(value) {
            return Err(invalid(
                "invalid_event",
                format!(
                    "events[{index}]: property {key}: strings at most {MAX_STRING_CHARS} characters, numbers at \
                     most 2^53 in size"
                ),
            ));
        }
        // Properties are ids and facts, never personal data: an address is refused outright.
        if value.as_str().is_some_and(looks_like_email) {
            return Err(invalid(
                "personal_data",
                format!("events[{index}]: property {key} holds an email address; send ids, not personal data"),
            ));
        }
        event =
            event.with(key, value.clone()).map_err(|e| invalid("invalid_event", format!("events[{index}]: {e}")))?;
    }
    Ok(event)
}

/// Records a batch of the account's product events (any member, or an API key of the
/// account). All or none: one event that does not fit refuses the batch.
#[utoipa::path(post, path = "/accounts/{account_id}/events", tag = "tenancy", request_body = ProductEventBatch,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 202, body = ProductEventsAccepted),
              (status = 422, description = "An event that does not fit: a name that is not `noun.verb` (`invalid_event_name`), one of Groundwork's lifecycle names (`reserved_event_name`), a property or time out of bounds (`invalid_event`), an email address in a property (`personal_data`), an empty or too large batch (`invalid_batch`)", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "More than 600 events from this account in this clock minute (`event_rate_limited`; the batch is refused whole)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn record(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Json(req): Json<ProductEventBatch>,
) -> Result<Response, ApiError> {
    scope.require(Action::ReadAccount)?;
    if req.events.is_empty() || req.events.len() > MAX_BATCH {
        return Err(invalid("invalid_batch", format!("send 1 to {MAX_BATCH} events")));
    }
    let now = s.clock.now_ms();
    let mut events: Vec<(ProductEvent, Option<&str>)> = Vec::with_capacity(req.events.len());
    for (index, new) in req.events.iter().enumerate() {
        let event = checked(new, index, &scope, now)?;
        let id = new.id.as_deref();
        // The same occurrence twice in one batch is recorded once.
        let repeated = id.is_some_and(|id| {
            events.iter().any(|(e, other)| *other == Some(id) && e.name == event.name && e.at_ms == event.at_ms)
        });
        if !repeated {
            events.push((event, id));
        }
    }
    let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
    rate_limit::spend(
        s.store.as_ref(),
        EVENTS_PER_ACCOUNT,
        &scope.account_id().to_string(),
        count,
        now,
        "event_rate_limited",
    )
    .await?;
    // An occurrence already recorded (a retry) keeps its first version and is not forwarded
    // again: its write fails its condition, and the batch is written without it. Each round
    // drops at least one event, so it ends.
    loop {
        let mut ops = Vec::with_capacity(events.len());
        for (event, id) in &events {
            ops.push(match id {
                Some(id) => TxOp::Put(event.put_first(id, event.at_ms)?),
                None => event.op()?,
            });
        }
        if ops.is_empty() {
            break;
        }
        match s.store.transact(ops).await {
            Ok(()) => break,
            Err(e) if e.is_condition_failure() => {
                let before = events.len();
                let mut kept = Vec::with_capacity(before);
                for (event, id) in events {
                    let recorded = match id {
                        Some(id) => s.store.get(&event.key_once(id, event.at_ms)).await?.is_some(),
                        None => false,
                    };
                    if !recorded {
                        kept.push((event, id));
                    }
                }
                if kept.len() == before {
                    return Err(e.into());
                }
                events = kept;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json_with_status(StatusCode::ACCEPTED, &ProductEventsAccepted { accepted: req.events.len() }))
}
