//! Operator routes: list dead-lettered jobs and redrive them. Guarded by the operator token
//! (`GROUNDWORK_OPERATOR_TOKEN`, sent as `Authorization: Bearer <token>`); with no token
//! configured, the routes answer 403.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use shared::config::QueueName;
use shared::error::{ApiError, Problem};
use shared::http::{Json, Query};
use shared::jobs::{Envelope, JobState};
use shared::services::Services;
use utoipa::{IntoParams, ToSchema};

/// Proof that the caller presented the operator token.
pub struct Operator;

impl FromRequestParts<Services> for Operator {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        let unauthenticated =
            || Problem::from_status(StatusCode::UNAUTHORIZED).with_detail("a valid operator token is required");
        // No credentials is 401 whether or not operator access is on (RFC 9110 section 15.5.2);
        // only a caller that presents a token learns that the routes are switched off.
        let presented = shared::auth::bearer(parts).ok_or_else(unauthenticated)?;
        let Some(expected) = &services.config.server.operator_token else {
            return Err(Problem::new(StatusCode::FORBIDDEN, "operator_access_disabled", "Operator access is disabled")
                .with_detail("set GROUNDWORK_OPERATOR_TOKEN to enable the /ops routes"));
        };
        if constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
            Ok(Self)
        } else {
            Err(unauthenticated())
        }
    }
}

/// Who reads the customer-success routes and console: the operator (by the operator token)
/// or a staff member, signed in through the normal auth flow as a verified user whose
/// address `GROUNDWORK_STAFF_EMAILS` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staff {
    /// The operator token.
    Operator,
    /// A staff member's access token.
    Member(shared::id::UserId),
}

impl FromRequestParts<Services> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        let presented = shared::auth::bearer(parts).ok_or(ApiError::Unauthenticated)?;
        if let Some(expected) = &services.config.server.operator_token
            && constant_time_eq(presented.as_bytes(), expected.expose().as_bytes())
        {
            return Ok(Self::Operator);
        }
        let caller = shared::auth::AuthUser::from_request_parts(parts, services).await?;
        let user = shared::auth::users::by_id(services.store.as_ref(), caller.user_id).await?;
        let staff = &services.config.server.staff_emails;
        match user {
            Some(u) if u.email_verified && staff.contains(&u.email) => Ok(Self::Member(caller.user_id)),
            _ => Err(ApiError::ForbiddenBecause {
                code: "not_staff",
                detail: "this needs a verified address that GROUNDWORK_STAFF_EMAILS lists, or the operator token"
                    .into(),
            }),
        }
    }
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Which dead letters to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// One queue (`email`, `mail-events`, `jobs`, `billing`, or `product-events`: the
    /// events PostHog refused); all when absent.
    #[param(pattern = "^(email|mail-events|jobs|billing|product-events)$")]
    pub queue: Option<String>,
    /// At most this many per queue (1 to 10, default 10).
    #[serde(default, deserialize_with = "shared::http::bounded::<_, 1, 10>")]
    #[param(minimum = 1, maximum = 10)]
    pub limit: Option<u32>,
}

/// One dead-lettered message.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    /// The queue it came from.
    pub queue: String,
    /// The queue's message id.
    pub message_id: String,
    /// The job's id, when the body is a job.
    pub job_id: Option<String>,
    /// The job's kind, when the body is a job.
    pub kind: Option<String>,
    /// Attempts made, from the job's state.
    pub attempts: Option<u32>,
    /// The last error, from the job's state.
    pub last_error: Option<String>,
}

/// The dead letters of every (or one) queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetters {
    /// The messages, queue by queue.
    pub dead_letters: Vec<DeadLetter>,
}

/// The dead letters of product events PostHog refused: not a queue, an index of the table
/// (`shared::product_events::posthog`), listed and redriven with the queues.
const PRODUCT_EVENTS: &str = "product-events";

fn queues_named(name: Option<&str>) -> Result<Vec<QueueName>, ApiError> {
    match name {
        None => Ok(QueueName::ALL.to_vec()),
        Some(PRODUCT_EVENTS) => Ok(Vec::new()),
        Some(n) => QueueName::parse(n)
            .map(|q| vec![q])
            .ok_or_else(|| ApiError::BadRequest { code: "unknown_queue", detail: format!("no queue named {n:?}") }),
    }
}

/// Lists dead-lettered jobs, with their recorded state. Bodies are not shown: they may
/// hold single-use links.
#[utoipa::path(
    get,
    path = "/ops/dead-letters",
    operation_id = "list_dead_letters",
    tag = "operations",
    params(ListParams),
    security(("operator_token" = [])),
    responses(
        (status = 200, body = DeadLetters),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    _: Operator,
    State(services): State<Services>,
    Query(params): Query<ListParams>,
) -> Result<Json<DeadLetters>, ApiError> {
    let limit = params.limit.unwrap_or(10);
    let mut dead_letters = Vec::new();
    for name in queues_named(params.queue.as_deref())? {
        for m in services.queues.get(name).dead_letters(limit).await? {
            let envelope: Option<Envelope> = serde_json::from_str(&m.body).ok();
            let state = match &envelope {
                Some(e) => JobState::load(services.store.as_ref(), &e.id.to_string()).await?,
                None => JobState::load(services.store.as_ref(), &m.id).await?,
            };
            dead_letters.push(DeadLetter {
                queue: name.as_str().into(),
                message_id: m.id,
                job_id: envelope.as_ref().map(|e| e.id.to_string()),
                kind: envelope.as_ref().map(|e| e.job.kind().to_owned()),
                attempts: state.as_ref().map(|s| s.attempts),
                last_error: state.and_then(|s| s.last_error),
            });
        }
    }
    if params.queue.as_deref().is_none_or(|q| q == PRODUCT_EVENTS) {
        for event in shared::product_events::posthog::dead_letters(services.store.as_ref(), limit).await? {
            dead_letters.push(DeadLetter {
                queue: PRODUCT_EVENTS.into(),
                message_id: format!("{}/{}", event.key.pk, event.key.sk),
                job_id: None,
                kind: Some(event.name),
                attempts: None,
                last_error: Some("PostHog refused its batch (a 4xx answer)".into()),
            });
        }
    }
    Ok(Json(DeadLetters { dead_letters }))
}

/// What to redrive.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// One queue (`email`, `mail-events`, `jobs`, `billing`, or `product-events`: the
    /// events PostHog refused, back to the forwarding index); all when absent.
    #[schema(pattern = "^(email|mail-events|jobs|billing|product-events)$")]
    pub queue: Option<String>,
    /// At most this many messages per queue (1 to 1000, default 100).
    #[serde(default, deserialize_with = "shared::http::bounded::<_, 1, 1000>")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max: Option<u32>,
}

/// How many messages went back to each queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redriven {
    /// Queue name → messages moved back.
    pub redriven: std::collections::BTreeMap<String, u32>,
}

/// Sends dead letters back to their queues, to be run again.
#[utoipa::path(
    post,
    path = "/ops/dead-letters/redrive",
    tag = "operations",
    request_body = RedriveRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, body = Redriven),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn redrive(
    _: Operator,
    State(services): State<Services>,
    Json(req): Json<RedriveRequest>,
) -> Result<Json<Redriven>, ApiError> {
    let max = req.max.unwrap_or(100);
    let mut redriven = std::collections::BTreeMap::new();
    for name in queues_named(req.queue.as_deref())? {
        let moved = services.queues.get(name).redrive(max).await?;
        if moved > 0 {
            tracing::info!(queue = name.as_str(), moved, "dead letters redriven");
        }
        redriven.insert(name.as_str().to_owned(), moved);
    }
    if req.queue.as_deref().is_none_or(|q| q == PRODUCT_EVENTS) {
        let moved = shared::product_events::posthog::redrive(services.store.as_ref(), max).await?;
        if moved > 0 {
            tracing::info!(moved, "refused product events put back for forwarding");
        }
        redriven.insert(PRODUCT_EVENTS.to_owned(), moved);
    }
    Ok(Json(Redriven { redriven }))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret-and-more", b"secret"));
    }
}

/// Whose smoke mail to read.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SmokeMailParams {
    /// The recipient, an address at the smoke domain (`GROUNDWORK_SMOKE_MAIL_DOMAIN`).
    #[param(max_length = 254)]
    pub to: String,
}

/// The messages kept for one smoke address.
#[derive(Debug, Serialize, ToSchema)]
pub struct SmokeMail {
    /// Newest first, at most 20, each kept for an hour.
    pub messages: Vec<shared::mail::smoke_mailbox::SmokeMessage>,
}

/// Reads the email kept for an address at the smoke domain (`GROUNDWORK_SMOKE_MAIL_DOMAIN`,
/// never set in production), for the end-to-end smoke suite: 404 when no smoke domain is
/// configured.
#[utoipa::path(
    get,
    path = "/ops/smoke-mail",
    operation_id = "read_smoke_mail",
    tag = "operations",
    params(SmokeMailParams),
    security(("operator_token" = [])),
    responses(
        (status = 200, body = SmokeMail),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn smoke_mail(
    _: Operator,
    State(services): State<Services>,
    Query(params): Query<SmokeMailParams>,
) -> Result<Json<SmokeMail>, ApiError> {
    let Some(domain) = services.config.mail.smoke_domain.as_deref() else { return Err(ApiError::NotFound) };
    let address = shared::mail::EmailAddress::parse(&params.to)
        .map_err(|e| ApiError::BadRequest { code: "invalid_address", detail: e.to_string() })?;
    if address.domain() != domain {
        return Err(ApiError::BadRequest {
            code: "not_a_smoke_address",
            detail: "only mail to the smoke domain is kept".into(),
        });
    }
    let messages = shared::mail::smoke_mailbox::messages(services.store.as_ref(), address.as_str()).await?;
    Ok(Json(SmokeMail { messages }))
}
