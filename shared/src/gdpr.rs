//! Data-subject rights (GDPR), the work that crosses domains, in one place:
//!
//! - access and portability (Articles 15 and 20): [`start_export`] records an export of a
//!   user's or an account's data and queues the job that builds it and emails the link;
//! - erasure (Article 17): [`erase_user`]. The user record becomes a tombstone holding only
//!   its id (the pseudonym audit entries refer to), the address is released, linked
//!   identities and memberships go, every session ends. An account the user alone is in is
//!   soft-deleted with them, and its subscription is then cancelled by a job; an account with
//!   other members but no other owner must be handed over first.
//!
//! The routes that ask for these check who may; this module decides and writes.

use serde_json::json;

use crate::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use crate::auth::session;
use crate::auth::users::{self, User};
use crate::error::ApiError;
use crate::exports::{ExportRecord, ExportSubject};
use crate::id::AccountId;
use crate::id::{ExportId, UserId};
use crate::jobs::Job;
use crate::keys;
use crate::services::Services;
use crate::soft_delete;
use crate::store::{Delete, Index, Item, Put, Query, StoreExt as _, TxOp};
use crate::tenancy::{self, Membership, Role};

/// What an erasure did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erasure {
    /// The accounts the user was removed from.
    pub memberships_removed: Vec<AccountId>,
    /// The accounts deleted with the user (they were its only member); their subscriptions
    /// are being cancelled.
    pub accounts_deleted: Vec<AccountId>,
}

/// What erasing a user would write, decided before anything is written.
struct Plan {
    ops: Vec<TxOp>,
    erasure: Erasure,
    /// Accounts with other members and no other owner: erasure must wait for a handover.
    blocking: Vec<AccountId>,
}

async fn plan(s: &Services, user: &User, version: u64, now_ms: i64) -> Result<Plan, ApiError> {
    let store = s.store.as_ref();
    let memberships: Vec<Membership> = store
        .query_all(Query::index(Index::Gsi1, keys::memberships_of(user.id)))
        .await?
        .iter()
        .filter(|i| !soft_delete::is_deleted(i))
        .map(Item::record)
        .collect::<Result<_, _>>()?;
    let mut plan = Plan { ops: Vec::new(), erasure: Erasure::default(), blocking: Vec::new() };
    for m in &memberships {
        plan.ops.push(TxOp::Delete(Delete::new(keys::membership(m.account_id, m.user_id))));
        plan.erasure.memberships_removed.push(m.account_id);
        if m.role != Role::Owner {
            continue;
        }
        let others = tenancy::members(store, m.account_id).await?;
        if others.iter().any(|o| o.user_id != user.id && o.role == Role::Owner) {
            continue;
        }
        if others.iter().any(|o| o.user_id != user.id) {
            plan.blocking.push(m.account_id);
        } else if let Some((account, _)) = tenancy::load_account(store, m.account_id).await?
            && account.deleted_at_ms.is_none()
        {
            plan.ops.extend(tenancy::delete_account_ops(account.id, now_ms, s.config.soft_delete.retention));
            plan.erasure.accounts_deleted.push(account.id);
        }
    }
    for identity in store.query_all(Query::index(Index::Gsi1, keys::identities_of(user.id))).await? {
        plan.ops.push(TxOp::Delete(Delete::new(identity.key)));
    }
    plan.ops.push(users::tombstone_op(user.id, version, now_ms));
    plan.ops.push(TxOp::Delete(Delete::new(keys::email_owner(&user.email))));
    Ok(plan)
}

/// Erases `user`, read at `version`, as asked from `origin`.
///
/// # Errors
/// 409 `sole_owner` (nothing written) when the user is the only owner of an account that has
/// other members; 409 when the user changed since it was read; 503 when the store or a queue
/// fails (what was written stays consistent: a retry finishes the job).
pub async fn erase_user(s: &Services, user: &User, version: u64, origin: Origin) -> Result<Erasure, ApiError> {
    let now = s.clock.now_ms();
    let plan = plan(s, user, version, now).await?;
    if !plan.blocking.is_empty() {
        let list: Vec<String> = plan.blocking.iter().map(ToString::to_string).collect();
        return Err(ApiError::Conflict {
            code: "sole_owner",
            detail: format!("transfer ownership of these accounts first: {}", list.join(", ")),
        });
    }
    // One transaction holds at most 100 operations; members of that many accounts are rare.
    for chunk in plan.ops.chunks(100) {
        s.store.transact(chunk.to_vec()).await?;
    }
    let erasure = plan.erasure;
    for account in &erasure.accounts_deleted {
        s.jobs().enqueue(Job::CancelForDeletedAccount { account_id: *account }).await?;
    }
    session::revoke_all(s.store.as_ref(), user.id, None).await?;
    let actor = Actor::User(user.id);
    let event = NewEvent::new(actor.clone(), AuditAction::UserErased, origin.clone())
        .detail(json!({"memberships_removed": erasure.memberships_removed.len()}));
    s.audit(AuditStream::User(user.id), event).await?;
    for account in &erasure.memberships_removed {
        let event = NewEvent::new(actor.clone(), AuditAction::MemberErased, origin.clone()).target(user.id);
        s.audit(AuditStream::Account(*account), event).await?;
        crate::billing::seats_changed(&s.billing(), *account).await?;
    }
    Ok(erasure)
}

/// Starts an export (GDPR) of `subject` for `user`: records it and queues the job that
/// builds it and emails the link.
///
/// # Errors
/// When the store or the queue fails.
pub async fn start_export(s: &Services, subject: ExportSubject, user: UserId) -> Result<ExportId, ApiError> {
    let notify = crate::auth::users::by_id(s.store.as_ref(), user).await?.ok_or(ApiError::Unauthenticated)?.email;
    let record = ExportRecord {
        id: ExportId::new(),
        subject,
        requested_by: user,
        requested_at_ms: s.clock.now_ms(),
        ready_at_ms: None,
        token_hash: String::new(),
    };
    // The request expires with the link it would produce, ready or not.
    let expires = s.clock.now_secs() + 7 * 86_400;
    let item = Item::from_record(keys::export(record.id), &record)?.expiring_at(expires);
    s.store.put(Put::new(item).if_not_exists()).await?;
    s.jobs().enqueue(Job::ExportData { export_id: record.id, subject, notify }).await?;
    Ok(record.id)
}
