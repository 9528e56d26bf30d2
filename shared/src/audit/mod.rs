//! The audit log: security and tenancy events (who, what, target, when, from where), per
//! [`AuditStream`] (a user's own events, a tenant's, an organization's, the operators'),
//! append-only and tamper-evident: each entry carries the hash of the previous entry of its
//! stream, and its own hash over its content and that link. A stream's head (`AUDIT#<stream>`
//! / `HEAD`) is advanced in the same transaction as the entry is written, under an optimistic
//! lock, so concurrent appends serialise and the chain never forks. What can be recorded is
//! the [`AuditAction`] catalogue; who did it is an [`Actor`].

pub mod actions;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use actions::AuditAction;

use crate::id::{AccountId, OrgId, UserId};
use crate::keys;
use crate::store::{Condition, Cursor, Item, Put, Query, Store, StoreError, TxOp};

/// Where an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditStream {
    /// A user's own events (`user:<id>`): sign-ins, sessions, passwords, second factors.
    User(UserId),
    /// A tenant's events (`account:<id>`), readable by its owners and admins.
    Account(AccountId),
    /// An organization's events (`org:<id>`).
    Organization(OrgId),
    /// The operators' events (`ops`): flag definitions.
    Operations,
}

impl fmt::Display for AuditStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Account(id) => write!(f, "account:{id}"),
            Self::Organization(id) => write!(f, "org:{id}"),
            Self::Operations => f.write_str("ops"),
        }
    }
}

/// Who did it, written the same way for every kind of caller: `user:<id>`,
/// `api_key:<id>`, `operator`; nobody (the system, acting on Stripe's word or a schedule) is
/// written as no actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user.
    User(UserId),
    /// An account's API key (its id).
    ApiKey(String),
    /// An operator, through the `/ops` routes.
    Operator,
    /// An organization's identity provider, through its SCIM directory token.
    Directory,
    /// Groundwork itself.
    System,
}

impl Actor {
    /// The stored form.
    pub fn stored(&self) -> Option<String> {
        match self {
            Self::User(id) => Some(format!("user:{id}")),
            Self::ApiKey(id) => Some(format!("api_key:{id}")),
            Self::Operator => Some("operator".into()),
            Self::Directory => Some("scim_directory".into()),
            Self::System => None,
        }
    }
}

/// The hash before the first entry of every stream.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where an event came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Origin {
    /// The client's IP address.
    pub ip: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    pub action: AuditAction,
    /// What it was done to (an id), if anything.
    pub target: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// Anything else worth keeping (never a secret).
    pub detail: Value,
}

impl NewEvent {
    /// `actor` did `action`, from `origin`, to nothing in particular, with no detail.
    pub fn new(actor: Actor, action: AuditAction, origin: Origin) -> Self {
        Self { actor, action, target: None, origin, detail: json!({}) }
    }

    /// The event, done to `target`.
    #[must_use]
    pub fn target(mut self, target: impl ToString) -> Self {
        self.target = Some(target.to_string());
        self
    }

    /// The event, with `detail`.
    #[must_use]
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// The stream (`user:<id>`, `account:<id>`).
    pub stream: String,
    /// Position in the stream, from 1.
    pub seq: u64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Who.
    pub actor: Option<String>,
    /// What.
    pub action: String,
    /// To what.
    pub target: Option<String>,
    /// From where.
    pub origin: Origin,
    /// More: an object whose members depend on the action.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl AuditEvent {
    fn compute_hash(&self) -> String {
        let content = json!({
            "stream": self.stream, "seq": self.seq, "at_ms": self.at_ms, "actor": self.actor,
            "action": self.action, "target": self.target, "origin": self.origin, "detail": self.detail,
            "prev_hash": self.prev_hash,
        });
        // serde_json writes object keys in sorted order (no preserve_order), so this is canonical.
        hex(&Sha256::digest(content.to_string().as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entries(stream: &str) -> Query {
    Query::partition(keys::audit_partition(stream)).begins_with(keys::AUDIT_ENTRY_PREFIX)
}

/// For an audit write that follows a committed change: a failure is logged at error level
/// (for the alarm) and not returned, because answering 503 would send the client to repeat
/// a change that was made (a second account, a used link).
pub fn logged_after_commit<T, E: std::fmt::Debug>(result: Result<T, E>, change: &str) {
    if let Err(e) = result {
        tracing::error!(change, error = ?e, "the change is made but its audit event was not written");
    }
}

/// Appends `event` to `stream` at `now_ms`: the one way anything is audited.
///
/// # Errors
/// When the store fails, or the head keeps moving under heavy contention.
pub async fn record(
    store: &dyn Store,
    stream: AuditStream,
    event: NewEvent,
    now_ms: i64,
) -> Result<AuditEvent, StoreError> {
    let stream = stream.to_string();
    let stream = stream.as_str();
    let (head_key, actor, action) = (keys::audit_head(stream), event.actor.stored(), event.action.as_str());
    // One append of this process at a time per stream (see `keyed_lock`): the head's
    // condition then only fails for appends from other processes.
    let _serialized = crate::keyed_lock::process().lock(&head_key).await;
    for _ in 0..10 {
        let head = store.get(&head_key).await?;
        let (seq, prev_hash, head_condition) = match &head {
            Some(h) => (
                h.data.get("seq").and_then(Value::as_u64).unwrap_or(0),
                h.data.get("hash").and_then(Value::as_str).unwrap_or(GENESIS).to_owned(),
                Condition::VersionIs(h.version),
            ),
            None => (0, GENESIS.to_owned(), Condition::NotExists),
        };
        let mut entry = AuditEvent {
            stream: stream.to_owned(),
            seq: seq + 1,
            at_ms: now_ms,
            actor: actor.clone(),
            action: action.to_owned(),
            target: event.target.clone(),
            origin: event.origin.clone(),
            detail: event.detail.clone(),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        let mut new_head = Item::new(head_key.clone()).with("seq", entry.seq).with("hash", entry.hash.clone());
        new_head.version = head.as_ref().map_or(0, |h| h.version);
        let ops = vec![
            TxOp::Put(Put::new(Item::from_record(keys::audit_entry(stream, entry.seq), &entry)?).if_not_exists()),
            TxOp::Put(Put::new(new_head).when(head_condition)),
        ];
        match store.transact(ops).await {
            Ok(()) => return Ok(entry),
            Err(StoreError::TransactionCanceled { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("the audit stream {stream} is too contended")))
}

/// One page of a stream, newest first.
///
/// # Errors
/// When the store fails or the cursor is not valid.
pub async fn page(
    store: &dyn Store,
    stream: &str,
    limit: u32,
    cursor: Option<Cursor>,
) -> Result<(Vec<AuditEvent>, Option<Cursor>), StoreError> {
    let q = entries(stream).descending().limit(limit).after(cursor);
    let page = store.query(q).await?;
    Ok((page.records()?, page.next))
}

/// A page of audit events, as routes answer it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// One page of `stream` for a route: newest first, at most `limit` events after `cursor`.
///
/// # Errors
/// When the store fails.
pub async fn page_for(
    store: &dyn Store,
    stream: AuditStream,
    limit: u32,
    cursor: Option<Cursor>,
) -> Result<AuditPage, StoreError> {
    let (events, next) = page(store, &stream.to_string(), limit, cursor).await?;
    Ok(AuditPage { events, next_cursor: next.map(|c| c.encode()) })
}

/// Where a stream's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit chain of {stream} breaks at entry {seq}")]
pub struct ChainBroken {
    /// The stream.
    pub stream: String,
    /// The first entry that does not verify.
    pub seq: u64,
}

/// Checks every entry of `stream`: its hash, its link to the previous one, its sequence,
/// and that the head points at the last one.
///
/// # Errors
/// [`ChainBroken`] at the first bad entry; store failures as `Ok(Err)` are not possible:
/// they are returned in the outer result.
pub async fn verify(store: &dyn Store, stream: &str) -> Result<Result<u64, ChainBroken>, StoreError> {
    let mut prev = GENESIS.to_owned();
    let mut expected = 1;
    let mut cursor = None;
    loop {
        let q = entries(stream).limit(500).after(cursor);
        let page = store.query(q).await?;
        for e in page.records::<AuditEvent>()? {
            if e.seq != expected || e.prev_hash != prev || e.hash != e.compute_hash() {
                return Ok(Err(ChainBroken { stream: stream.to_owned(), seq: expected }));
            }
            prev = e.hash;
            expected += 1;
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let head = store.get(&keys::audit_head(stream)).await?;
    let head_hash = head.as_ref().and_then(|h| h.data.get("hash").and_then(Value::as_str)).unwrap_or(GENESIS);
    if head_hash != prev {
        return Ok(Err(ChainBroken { stream: stream.to_owned(), seq: expected }));
    }
    Ok(Ok(expected - 1))
}

/// A stream as JSON lines (one event per line, oldest first), for export.
///
/// # Errors
/// When the store fails.
pub async fn export_json_lines(store: &dyn Store, stream: &str) -> Result<String, StoreError> {
    let mut out = String::new();
    let mut cursor = None;
    loop {
        let q = entries(stream).limit(500).after(cursor);
        let page = store.query(q).await?;
        for e in page.records::<AuditEvent>()? {
            out.push_str(&serde_json::to_string(&e).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            out.push('\n');
        }
        cursor = page.next;
        if cursor.is_none() {
            return Ok(out);
        }
    }
}
