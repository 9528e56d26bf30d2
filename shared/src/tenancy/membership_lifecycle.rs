//! Joining and leaving an account: the one transaction every path writes.
//!
//! A member joins through an invitation, a verified domain, single sign-on or directory
//! sync, and leaves by removal, by leaving or by deprovisioning. Whatever the path, the
//! membership change, the seat count sync (per-seat plans), the account's webhook message
//! (`member.joined` / `member.removed`) and, on joining, the `member.joined` product event
//! commit together through the job outbox, and the staged jobs are sent after the commit.
//! So a webhook subscriber, the seat count on the subscription and the customer-success
//! numbers never disagree with the membership they describe.

use serde_json::json;

use crate::id::{AccountId, UserId};
use crate::jobs::outbox::StagedJob;
use crate::keys;
use crate::services::Services;
use crate::soft_delete;
use crate::store::{Condition, Put, TxOp};

use super::{Membership, Role};

/// How a member joined, as the `via` property of the `member.joined` product event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinedVia {
    /// Accepted an invitation.
    Invitation,
    /// Joined automatically through the organization's verified domain.
    Domain,
    /// Just-in-time membership at single sign-on.
    Sso,
    /// Granted by the organization's SCIM directory.
    Scim,
}

impl JoinedVia {
    /// The property value: `invitation`, `domain`, `sso` or `scim`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::Domain => "domain",
            Self::Sso => "sso",
            Self::Scim => "scim",
        }
    }
}

/// Writes `membership` (the put carries the caller's condition: new, or over a removed
/// membership at its version) with the seat sync, the `member.joined` webhook message
/// (`event_id` makes its delivery idempotent) and product event, plus `extra` (for
/// example the accepted invitation), in one transaction; then sends the staged jobs.
///
/// `Ok(false)`, with nothing written or sent, when a condition failed: the membership or an
/// `extra` item changed meanwhile (callers decide whether that means "joined already").
///
/// # Errors
/// Store and queue failures.
pub async fn join(
    s: &Services,
    membership: Put,
    m: &Membership,
    via: JoinedVia,
    event_id: String,
    extra: Vec<TxOp>,
) -> Result<bool, crate::error::ApiError> {
    let (account, user, role) = (m.account_id, m.user_id, m.role);
    let seats = crate::billing::stage_seat_sync(&s.billing(), account)?;
    let joined = crate::webhooks::Event::new(
        "member.joined",
        event_id,
        m.joined_at_ms,
        json!({"account_id": account, "user_id": user, "role": role}),
    );
    let joined = crate::webhooks::stage(&s.jobs(), account, &joined)?;
    let event = crate::product_events::lifecycle(
        "member.joined",
        account,
        Some(user),
        m.joined_at_ms,
        &[("role", json!(role)), ("via", json!(via.as_str()))],
        None,
    )?;
    let mut ops = vec![TxOp::Put(membership), joined.op(), event];
    ops.extend(extra);
    commit(s, ops, joined, seats).await
}

/// Ends `user`'s membership of `account`, read at `version`, with the seat sync and the
/// `member.removed` webhook message, in one transaction; then sends the staged jobs.
/// `owner_check` is the [`TxOp::Check`] that another owner is still there, required when
/// the leaving member is an owner (see [`other_owner`]).
///
/// `Ok(false)`, with nothing written or sent, when the membership (or the other owner)
/// changed meanwhile.
///
/// # Errors
/// Store and queue failures.
pub async fn end(
    s: &Services,
    account: AccountId,
    user: UserId,
    version: u64,
    owner_check: Option<TxOp>,
) -> Result<bool, crate::error::ApiError> {
    let seats = crate::billing::stage_seat_sync(&s.billing(), account)?;
    let removed = crate::webhooks::Event::new(
        "member.removed",
        format!("member-removed-{user}-{version}"),
        s.clock.now_ms(),
        json!({"account_id": account, "user_id": user}),
    );
    let removed = crate::webhooks::stage(&s.jobs(), account, &removed)?;
    let mut ops = vec![removed.op()];
    ops.extend(owner_check);
    let mark =
        soft_delete::mark_deleted(keys::membership(account, user), s.clock.now_ms(), s.config.soft_delete.retention);
    ops.push(TxOp::Update(mark.when(live_at(version))));
    commit(s, ops, removed, seats).await
}

/// The check that an owner of `account` other than `leaving` stays, at the version read
/// now; `None` when there is no other owner.
///
/// # Errors
/// When the store fails.
pub async fn other_owner(
    s: &Services,
    account: AccountId,
    leaving: UserId,
) -> Result<Option<TxOp>, crate::store::StoreError> {
    let members = super::members(s.store.as_ref(), account).await?;
    let Some(other) = members.iter().find(|m| m.role == Role::Owner && m.user_id != leaving) else {
        return Ok(None);
    };
    let Some((_, version)) = super::load_membership(s.store.as_ref(), account, other.user_id).await? else {
        return Ok(None);
    };
    Ok(Some(TxOp::Check(keys::membership(account, other.user_id), live_at(version))))
}

fn live_at(version: u64) -> Condition {
    Condition::All(vec![Condition::VersionIs(version), Condition::Missing("deleted_at_ms".into())])
}

async fn commit(
    s: &Services,
    mut ops: Vec<TxOp>,
    message: StagedJob,
    seats: Option<StagedJob>,
) -> Result<bool, crate::error::ApiError> {
    if let Some(job) = &seats {
        ops.push(job.op());
    }
    match s.store.transact(ops).await {
        Ok(()) => {}
        Err(e) if e.is_condition_failure() => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    s.jobs().dispatch(message).await;
    if let Some(job) = seats {
        s.jobs().dispatch(job).await;
    }
    Ok(true)
}
