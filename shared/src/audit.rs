//! The audit log: security and tenancy events (who, what, target, when, from where), per
//! stream (`user:<id>` for a user's own events, `account:<id>` for a tenant's), append-only
//! and tamper-evident: each entry carries the hash of the previous entry of its stream, and
//! its own hash over its content and that link. A stream's head (`AUDIT#<stream>` / `HEAD`)
//! is advanced in the same transaction as the entry is written, under an optimistic lock,
//! so concurrent appends serialise and the chain never forks.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::store::{Condition, Cursor, Item, Key, Put, Query, Store, StoreError, TxOp};

/// The hash before the first entry of every stream.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where an event came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Who did it (a user id), if anyone known.
    pub actor: Option<String>,
    /// What happened, as `noun.verb` (`user.logged_in`, `session.revoked`).
    pub action: String,
    /// What it was done to (an id), if anything.
    pub target: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// Anything else worth keeping (never a secret).
    pub detail: Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// More.
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

fn head_key(stream: &str) -> Key {
    Key::new(format!("AUDIT#{stream}"), "HEAD")
}

fn entry_key(stream: &str, seq: u64) -> Key {
    Key::new(format!("AUDIT#{stream}"), format!("E#{seq:012}"))
}

/// Appends `event` to `stream` at `now_ms`.
///
/// # Errors
/// When the store fails, or the head keeps moving under heavy contention.
pub async fn append(store: &dyn Store, stream: &str, event: NewEvent, now_ms: i64) -> Result<AuditEvent, StoreError> {
    for _ in 0..10 {
        let head = store.get(&head_key(stream)).await?;
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
            actor: event.actor.clone(),
            action: event.action.clone(),
            target: event.target.clone(),
            origin: event.origin.clone(),
            detail: event.detail.clone(),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        let mut new_head = Item::new(head_key(stream)).with("seq", entry.seq).with("hash", entry.hash.clone());
        new_head.version = head.as_ref().map_or(0, |h| h.version);
        let ops = vec![
            TxOp::Put(Put::new(Item::from_record(entry_key(stream, entry.seq), &entry)?).if_not_exists()),
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
    let q = Query::partition(format!("AUDIT#{stream}")).begins_with("E#").descending().limit(limit).after(cursor);
    let page = store.query(q).await?;
    Ok((page.records()?, page.next))
}

/// A page of audit events, as routes answer it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<AuditEvent>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// One page of `stream` for a route: newest first, `params` paging.
///
/// # Errors
/// 400 for a bad cursor; 503 when the store fails.
pub async fn page_for(
    store: &dyn Store,
    stream: &str,
    params: &crate::http::PageParams,
) -> Result<AuditPage, crate::error::ApiError> {
    let (events, next) = page(store, stream, params.limit(), params.cursor()?).await?;
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
        let q = Query::partition(format!("AUDIT#{stream}")).begins_with("E#").limit(500).after(cursor);
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
    let head = store.get(&head_key(stream)).await?;
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
        let q = Query::partition(format!("AUDIT#{stream}")).begins_with("E#").limit(500).after(cursor);
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
