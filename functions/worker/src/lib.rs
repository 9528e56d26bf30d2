//! The worker function: consumes the jobs queue and runs its jobs:
//! - data exports (GDPR): a JSON document of everything about a user or everything an
//!   account holds, stored through [`ExportStorage`](shared::exports::ExportStorage) (files
//!   locally, S3 on AWS), announced by email with a link that works for [`LINK_TTL_HOURS`]
//!   hours;
//! - seat sync: a per-seat subscription's quantity brought in line with the member count;
//! - the cancellation, at the period end, of a deleted account's subscription;
//! - outbound webhooks: a published message fanned out to the account's endpoints, and each
//!   signed delivery attempt with its retries ([`shared::webhooks::delivery`]);
//! - domain verification: an organization's claim checked against its DNS TXT record
//!   ([`shared::tenancy::domains::verify`]);
//! - the product functions' own jobs, by the handlers they register (`products::jobs`).
//!
//! Secrets never leave: any field named `*_hash`, `*secret*`, or a user's `mfa` data is
//! dropped from the document.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use shared::auth::{hash_secret, random_secret, session};
use shared::config::QueueName;
use shared::exports::{ExportRecord, ExportSubject, LINK_TTL_HOURS};
use shared::id::{AccountId, ExportId, UserId};
use shared::jobs::{Envelope, Job, JobError, JobHandler, JobOutcome};
use shared::mail::EmailAddress;
use shared::mail::templates::Email;
use shared::queue::consumer::MessageHandler;
use shared::services::Services;
use shared::soft_delete;
use shared::store::{Index, Item, Put, Query, StoreError, StoreExt as _};

/// Carries out the jobs of the jobs queue.
pub struct Worker {
    services: Services,
    /// The product functions' own jobs (the `products` list).
    product: shared::jobs::ProductJobs,
}

fn retry(e: impl Into<anyhow::Error>) -> JobError {
    JobError::Retry(e.into())
}

/// Drops secrets from a document: `*_hash` and `*secret*` fields, and the user's MFA data.
pub fn scrub(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| {
                !(k.ends_with("_hash")
                    || k.ends_with("_hashes")
                    || k.contains("secret")
                    || k == "mfa"
                    || k == "mfa_pending")
            });
            map.values_mut().for_each(scrub);
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

fn item_json(item: &Item) -> Value {
    let mut v = Value::Object(item.data.clone().into_iter().collect::<Map<String, Value>>());
    scrub(&mut v);
    v
}

async fn audit_stream(s: &Services, stream: &str) -> Result<Vec<Value>, JobError> {
    let lines = shared::audit::export_json_lines(s.store.as_ref(), stream).await.map_err(retry)?;
    lines.lines().map(|l| serde_json::from_str(l).map_err(|e| JobError::Permanent(e.into()))).collect()
}

/// Everything about user `id`: profile, memberships, sessions, their audit stream.
///
/// # Errors
/// When the store fails.
pub async fn user_document(s: &Services, id: UserId) -> Result<Value, JobError> {
    let store = s.store.as_ref();
    let profile = store.get(&shared::keys::user(id)).await.map_err(retry)?.map(|i| item_json(&i));
    let sessions = session::list(store, id).await.map_err(retry)?;
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|x| json!({"id": x.id, "created_at_ms": x.created_at_ms, "last_used_at_ms": x.last_used_at_ms, "ip": x.ip, "user_agent": x.user_agent}))
        .collect();
    let memberships = store
        .query_all(Query::index(Index::Gsi1, shared::keys::memberships_of(id)))
        .await
        .map_err(retry)?
        .iter()
        .filter(|i| !soft_delete::is_deleted(i))
        .map(item_json)
        .collect::<Vec<_>>();
    Ok(json!({
        "kind": "user",
        "user": profile,
        "memberships": memberships,
        "sessions": sessions,
        "audit": audit_stream(s, &shared::audit::AuditStream::User(id).to_string()).await?,
    }))
}

/// Everything account `id` holds: the account, its members, invitations, API keys, every
/// other item of its partition (product data), and its audit stream.
///
/// # Errors
/// When the store fails.
pub async fn account_document(s: &Services, id: AccountId) -> Result<Value, JobError> {
    let items = s.store.query_all(Query::partition(shared::keys::account_partition(id))).await.map_err(retry)?;
    let mut sections: Map<String, Value> = Map::new();
    let mut account = Value::Null;
    for item in items.iter().filter(|i| !soft_delete::is_deleted(i)) {
        let kind = item.key.sk.split('#').next().unwrap_or_default().to_ascii_lowercase();
        if kind == "account" {
            account = item_json(item);
            continue;
        }
        let section = match kind.as_str() {
            "member" => "members".to_owned(),
            "invite" => "invitations".to_owned(),
            "apikey" => "api_keys".to_owned(),
            other => format!("data:{other}"),
        };
        let entry = sections.entry(section).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(item_json(item));
        }
    }
    Ok(json!({
        "kind": "account",
        "account": account,
        "items": sections,
        "audit": audit_stream(s, &shared::audit::AuditStream::Account(id).to_string()).await?,
    }))
}

/// A billing failure as a job failure, retried only when it may succeed later.
fn apply_failed(e: shared::billing::apply::ApplyError) -> JobError {
    if e.is_retryable() { JobError::Retry(e.into()) } else { JobError::Permanent(e.into()) }
}

impl Worker {
    async fn export(
        &self,
        id: ExportId,
        subject: ExportSubject,
        notify: &EmailAddress,
    ) -> Result<JobOutcome, JobError> {
        let s = &self.services;
        let key = shared::exports::key(id);
        let Some(item) = s.store.get(&key).await.map_err(retry)? else {
            return Ok(JobOutcome::Skipped("the export request expired".into()));
        };
        let mut record: ExportRecord = item.record().map_err(|e: StoreError| JobError::Permanent(e.into()))?;
        if record.ready_at_ms.is_some() {
            return Ok(JobOutcome::Skipped("already exported".into()));
        }
        let (document, what) = match subject {
            ExportSubject::User(user) => (user_document(s, user).await?, "your personal data".to_owned()),
            ExportSubject::Account(account) => {
                let name = shared::tenancy::load_account(s.store.as_ref(), account)
                    .await
                    .map_err(retry)?
                    .map_or_else(|| "the account".to_owned(), |(a, _)| a.name);
                (account_document(s, account).await?, name)
            }
        };
        let now = s.clock.now_ms();
        let document = json!({"export_id": id, "generated_at_ms": now, "subject": subject, "data": document});
        let bytes = serde_json::to_vec_pretty(&document).map_err(|e| JobError::Permanent(e.into()))?;
        s.exports.put(id, bytes).await.map_err(JobError::Retry)?;
        let token = random_secret().map_err(JobError::Retry)?;
        record.ready_at_ms = Some(now);
        record.token_hash = hash_secret(&token);
        let expires = now / 1000 + i64::from(LINK_TTL_HOURS) * 3600;
        let mut next = Item::from_record(key, &record).map_err(|e| JobError::Permanent(e.into()))?.expiring_at(expires);
        next.version = item.version;
        s.store.put(Put::new(next).if_unchanged()).await.map_err(retry)?;
        let link = format!("{}/exports/{id}?token={token}", s.config.server.api_url);
        let email = Email::DataExportReady { subject: what, link, expires_in_hours: LINK_TTL_HOURS };
        s.jobs().enqueue(Job::SendEmail { to: notify.clone(), email }).await.map_err(retry)?;
        tracing::info!(export_id = %id, "data export ready");
        Ok(JobOutcome::Done)
    }
}

impl Worker {
    async fn cancel_for_deleted(&self, account: AccountId) -> Result<JobOutcome, JobError> {
        let s = &self.services;
        let Some(client) = s.stripe.clone() else {
            return Ok(JobOutcome::Skipped("STRIPE_SECRET_KEY is not set; the marker stays for reconciliation".into()));
        };
        match shared::billing::reconcile::cancel_for_deleted(&s.billing(), &client, account).await {
            Ok(true) => Ok(JobOutcome::Done),
            Ok(false) => Ok(JobOutcome::Skipped("no live subscription to cancel".into())),
            Err(e) => Err(apply_failed(e)),
        }
    }

    async fn sync_seats(&self, account: AccountId) -> Result<JobOutcome, JobError> {
        let s = &self.services;
        let Some(client) = s.stripe.clone() else {
            return Ok(JobOutcome::Skipped("STRIPE_SECRET_KEY is not set".into()));
        };
        match shared::billing::sync_seats(&s.billing(), &client, account).await {
            Ok(Some(n)) => {
                tracing::info!(account_id = %account, seats = n, "subscription quantity synced");
                Ok(JobOutcome::Done)
            }
            Ok(None) => Ok(JobOutcome::Skipped("nothing to sync".into())),
            Err(e) => Err(apply_failed(e)),
        }
    }
}

#[async_trait]
impl JobHandler for Worker {
    async fn run(&self, envelope: &Envelope) -> Result<JobOutcome, JobError> {
        match &envelope.job {
            Job::ExportData { export_id, subject, notify } => self.export(*export_id, *subject, notify).await,
            Job::SyncSeats { account_id } => self.sync_seats(*account_id).await,
            Job::CancelForDeletedAccount { account_id } => self.cancel_for_deleted(*account_id).await,
            Job::Product { name, payload } => self.product.run(name, payload, envelope).await,
            Job::PublishWebhook { account_id, event } => {
                shared::webhooks::delivery::fan_out(&self.services.webhooks(), *account_id, event).await
            }
            Job::DeliverWebhook { delivery } => {
                shared::webhooks::delivery::deliver(&self.services.webhooks(), delivery).await
            }
            Job::VerifyDomain { org_id, domain } => {
                shared::tenancy::domains::verify(&self.services, *org_id, domain).await
            }
            other => Err(JobError::Permanent(anyhow::anyhow!("{} does not run on the jobs queue", other.kind()))),
        }
    }
}

/// The queue consumer Lambda and the local stack attach to the jobs queue: Groundwork's jobs
/// and every product function's ([`products::jobs`]).
pub fn handler(services: Services) -> Arc<dyn MessageHandler> {
    let worker = Arc::new(Worker { product: products::jobs(&services), services: services.clone() });
    Arc::new(services.job_runner(QueueName::Jobs, worker))
}
