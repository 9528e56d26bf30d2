//! The user record, the one shape every function reads and writes a user through, and the
//! single-use tokens of emailed links.
//!
//! Items (see [`crate::keys`]): the user at `USER#<id>` / `USER`; the owner of an address at
//! `EMAIL#<email>` / `EMAIL`, created with the user in one transaction, so an address belongs
//! to one user at most; single-use tokens at `TOKEN#<sha256>` / `TOKEN`, stored hashed,
//! expiring, deleted when used; for reset links, the newest one's hash at `USER#<id>` /
//! `LINK#reset_password`, which a token must match to work. An erased user's record is a tombstone holding only its id
//! and `erased_at_ms` (the pseudonym audit entries refer to): every read here treats it as
//! no user.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{hash_secret, random_secret};
use crate::id::UserId;
use crate::keys;
use crate::mail::EmailAddress;
use crate::store::{Condition, Delete, Item, Put, Store, StoreError, TxOp};

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The id.
    pub id: UserId,
    /// The email address, unique (a `.invalid` placeholder for an external subject without one).
    pub email: EmailAddress,
    /// Whether the address was confirmed.
    pub email_verified: bool,
    /// A display name.
    pub name: Option<String>,
    /// The argon2id PHC string; empty for users who sign in only through a provider.
    pub password_hash: String,
    /// When the user was created (Unix ms).
    pub created_at_ms: i64,
    /// When the password last changed (Unix ms).
    pub password_changed_at_ms: i64,
    /// Two-factor authentication, once enabled.
    #[serde(default)]
    pub mfa: Option<Mfa>,
    /// A TOTP secret (base32) enrolled but not yet confirmed with a first code.
    #[serde(default)]
    pub mfa_pending: Option<String>,
    /// Rent-auth mode: the external issuer this user was first seen from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_issuer: Option<String>,
    /// Unverified, and signed up for more than once: the sign-ups chose passwords that no one
    /// has proven, so verifying sets none of them (the owner chooses one by a reset link).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contested: bool,
    /// Set while the SCIM directory of this organization has the user deactivated or deleted
    /// (their address is at a domain it verified, so it speaks for them): no session starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_by: Option<crate::id::OrgId>,
}

impl User {
    /// A new user with a fresh id, created at `now_ms`, with no second factor.
    pub fn new(
        email: EmailAddress,
        email_verified: bool,
        name: Option<String>,
        password_hash: String,
        now_ms: i64,
    ) -> Self {
        Self {
            id: UserId::new(),
            email,
            email_verified,
            name,
            password_hash,
            created_at_ms: now_ms,
            password_changed_at_ms: now_ms,
            mfa: None,
            mfa_pending: None,
            external_issuer: None,
            contested: false,
            suspended_by: None,
        }
    }
}

/// A user's enabled second factor (TOTP, RFC 6238, with recovery codes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mfa {
    /// The TOTP secret, base32.
    pub secret: String,
    /// When it was enabled (Unix ms).
    pub enabled_at_ms: i64,
    /// The last TOTP step accepted (codes of this step or earlier are refused).
    pub last_step: u64,
    /// SHA-256 hashes of the unused recovery codes.
    pub recovery_hashes: Vec<String>,
}

fn is_tombstone(item: &Item) -> bool {
    item.data.contains_key("erased_at_ms")
}

/// The user with this address, if any.
///
/// # Errors
/// When the store fails.
pub async fn by_email(store: &dyn Store, email: &EmailAddress) -> Result<Option<User>, StoreError> {
    let Some(owner) = store.get(&keys::email_owner(email)).await? else { return Ok(None) };
    let Some(id) = owner.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok()) else {
        return Err(StoreError::Corrupt(format!("email index of {email} has no user id")));
    };
    by_id(store, id).await
}

/// The user `id`, if any (an erased user is none).
///
/// # Errors
/// When the store fails.
pub async fn by_id(store: &dyn Store, id: UserId) -> Result<Option<User>, StoreError> {
    Ok(load_versioned(store, id).await?.map(|(u, _)| u))
}

/// The user `id` read for a change: the record, and the version to save it against.
///
/// # Errors
/// When the store fails or the record is corrupt.
pub async fn load_versioned(store: &dyn Store, id: UserId) -> Result<Option<(User, u64)>, StoreError> {
    match store.get(&keys::user(id)).await? {
        Some(item) if !is_tombstone(&item) => Ok(Some((item.record()?, item.version))),
        _ => Ok(None),
    }
}

/// The writes that create `user` and claim its address, each failing if taken.
///
/// # Errors
/// When the record does not serialise.
pub fn create_ops(user: &User) -> Result<Vec<TxOp>, StoreError> {
    let owner = Item::new(keys::email_owner(&user.email)).with("user_id", user.id.to_string());
    Ok(vec![
        TxOp::Put(Put::new(Item::from_record(keys::user(user.id), user)?).if_not_exists()),
        TxOp::Put(Put::new(owner).if_not_exists()),
    ])
}

/// Creates `user`; `Ok(false)` if the address is taken.
///
/// # Errors
/// When the store fails.
pub async fn create(store: &dyn Store, user: &User) -> Result<bool, StoreError> {
    match store.transact(create_ops(user)?).await {
        Ok(()) => Ok(true),
        Err(StoreError::TransactionCanceled { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Saves a changed user, failing if it changed since it was read.
///
/// # Errors
/// [`StoreError::ConditionFailed`] on a concurrent change; store failures.
pub async fn save(store: &dyn Store, user: &User, read_version: u64) -> Result<(), StoreError> {
    let mut item = Item::from_record(keys::user(user.id), user)?;
    item.version = read_version;
    store.put(Put::new(item).if_unchanged()).await.map(|_| ())
}

/// The write that replaces the user read at `read_version` by its tombstone (erasure).
pub fn tombstone_op(id: UserId, read_version: u64, now_ms: i64) -> TxOp {
    let mut tombstone = Item::new(keys::user(id)).with("id", id.to_string()).with("erased_at_ms", now_ms);
    tombstone.version = read_version;
    TxOp::Put(Put::new(tombstone).if_unchanged())
}

/// What a single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirms an email address (with the credentials of the sign-up that sent it, when it
    /// was the only one).
    VerifyEmail,
    /// Sets a new password.
    ResetPassword,
    /// Completes a login with a second factor.
    MfaChallenge,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::MfaChallenge => "mfa_challenge",
        }
    }

    /// Whether a new link ends the user's earlier ones of this purpose. A reset link does
    /// (only the newest works, and a reset or a password change ends them all). A
    /// verification link does not: any of them proves the address (a second sign-up makes
    /// the record contested, so none sets a password), and once it is verified the rest
    /// change nothing.
    fn supersedes(self) -> bool {
        matches!(self, Self::ResetPassword)
    }
}

/// A live single-use token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkToken {
    /// Whose it is.
    pub user_id: UserId,
    /// A verification link's credentials: the password hash chosen by the sign-up that sent
    /// it, which verifying sets unless the address was signed up for more than once.
    pub password_hash: Option<String>,
}

/// The longest token accepted from a client; anything longer is no token of ours.
const MAX_TOKEN_CHARS: usize = 200;

/// Issues a single-use token for `user` valid until `expires_at_secs`; returns the token.
/// For a purpose that [supersedes](Purpose::supersedes), it becomes the user's only live
/// token of that purpose.
///
/// # Errors
/// When the store fails or the system has no randomness.
pub async fn issue_token(
    store: &dyn Store,
    purpose: Purpose,
    user: UserId,
    expires_at_secs: i64,
) -> Result<String, crate::error::ApiError> {
    issue(store, purpose, user, None, expires_at_secs).await
}

/// Issues a verification link for the sign-up of `user` that chose `password_hash`.
///
/// # Errors
/// When the store fails or the system has no randomness.
pub async fn issue_verification(
    store: &dyn Store,
    user: UserId,
    password_hash: &str,
    expires_at_secs: i64,
) -> Result<String, crate::error::ApiError> {
    issue(store, Purpose::VerifyEmail, user, Some(password_hash), expires_at_secs).await
}

async fn issue(
    store: &dyn Store,
    purpose: Purpose,
    user: UserId,
    password_hash: Option<&str>,
    expires_at_secs: i64,
) -> Result<String, crate::error::ApiError> {
    let token = random_secret()?;
    let token_hash = hash_secret(&token);
    let mut item = Item::new(keys::link_token(&token_hash))
        .with("purpose", purpose.as_str())
        .with("user_id", user.to_string())
        .expiring_at(expires_at_secs);
    if let Some(hash) = password_hash {
        item = item.with("password_hash", hash);
    }
    if purpose.supersedes() {
        let latest = Item::new(keys::latest_link(user, purpose.as_str()))
            .with("token_hash", token_hash)
            .expiring_at(expires_at_secs);
        store.transact(vec![TxOp::Put(Put::new(item).if_not_exists()), TxOp::Put(Put::new(latest))]).await?;
    } else {
        store.put(Put::new(item).if_not_exists()).await?;
    }
    Ok(token)
}

fn link_of(item: &Item) -> Option<LinkToken> {
    let user_id = item.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok())?;
    let password_hash = item.data.get("password_hash").and_then(|v| v.as_str()).map(str::to_owned);
    Some(LinkToken { user_id, password_hash })
}

/// The live token `token` of `purpose`, if it is one, and whether it is still the user's
/// newest (always, for a purpose that does not supersede).
async fn live(store: &dyn Store, purpose: Purpose, token: &str) -> Result<Option<(LinkToken, String)>, StoreError> {
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Ok(None);
    }
    let token_hash = hash_secret(token);
    let Some(item) = store.get(&keys::link_token(&token_hash)).await? else { return Ok(None) };
    if item.data.get("purpose").and_then(|v| v.as_str()) != Some(purpose.as_str()) {
        return Ok(None);
    }
    let Some(link) = link_of(&item) else { return Ok(None) };
    if purpose.supersedes() {
        let latest = store.get(&keys::latest_link(link.user_id, purpose.as_str())).await?;
        if latest.and_then(|i| i.data.get("token_hash").and_then(|v| v.as_str()).map(str::to_owned)).as_deref()
            != Some(token_hash.as_str())
        {
            return Ok(None);
        }
    }
    Ok(Some((link, token_hash)))
}

/// The user of a live token, without using it up (an MFA challenge survives wrong codes).
///
/// # Errors
/// When the store fails.
pub async fn peek_token(store: &dyn Store, purpose: Purpose, token: &str) -> Result<Option<UserId>, StoreError> {
    Ok(live(store, purpose, token).await?.map(|(link, _)| link.user_id))
}

/// A live token, read but not used yet: [`redeem`] uses it together with the writes it
/// pays for, in one transaction.
#[derive(Debug)]
pub struct Redeemable {
    /// What the token is for.
    pub link: LinkToken,
    uses: Vec<TxOp>,
}

/// The token if it exists, has not expired, is for `purpose` and (for a purpose that
/// supersedes) is the user's newest; nothing is written.
///
/// # Errors
/// When the store fails.
pub async fn redeemable(store: &dyn Store, purpose: Purpose, token: &str) -> Result<Option<Redeemable>, StoreError> {
    let Some((link, token_hash)) = live(store, purpose, token).await? else { return Ok(None) };
    let mut uses = vec![TxOp::Delete(
        Delete::new(keys::link_token(&token_hash)).when(Condition::Equals("purpose".into(), json!(purpose.as_str()))),
    )];
    if purpose.supersedes() {
        uses.push(TxOp::Delete(
            Delete::new(keys::latest_link(link.user_id, purpose.as_str()))
                .when(Condition::Equals("token_hash".into(), json!(token_hash))),
        ));
    }
    Ok(Some(Redeemable { link, uses }))
}

/// Uses the token and applies `writes` in one transaction: both or neither, so a failure
/// half-way never leaves a used link whose effect is missing (the retry would find the link
/// gone). `Ok(false)`: another request used the token first, or a write's condition did
/// not hold (the record changed since it was read); nothing was written.
///
/// # Errors
/// When the store fails.
pub async fn redeem(store: &dyn Store, token: Redeemable, writes: Vec<TxOp>) -> Result<bool, StoreError> {
    let mut ops = token.uses;
    ops.extend(writes);
    match store.transact(ops).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_condition_failure() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The write that saves a changed user, failing if it changed since `read_version`.
///
/// # Errors
/// When the record does not serialise.
pub fn save_op(user: &User, read_version: u64) -> Result<TxOp, StoreError> {
    let mut item = Item::from_record(keys::user(user.id), user)?;
    item.version = read_version;
    Ok(TxOp::Put(Put::new(item).if_unchanged()))
}

/// Uses a token on its own (see [`redeemable`]); returns it. A token works once, however
/// many requests race for it.
///
/// # Errors
/// When the store fails.
pub async fn use_token(store: &dyn Store, purpose: Purpose, token: &str) -> Result<Option<LinkToken>, StoreError> {
    let Some(token) = redeemable(store, purpose, token).await? else { return Ok(None) };
    let link = token.link.clone();
    Ok(redeem(store, token, Vec::new()).await?.then_some(link))
}

/// Ends every outstanding link of `purpose` for `user` (after a reset or a password
/// change, for reset links). Only purposes that supersede keep track of their links.
///
/// # Errors
/// When the store fails.
pub async fn end_links(store: &dyn Store, user: UserId, purpose: Purpose) -> Result<(), StoreError> {
    debug_assert!(purpose.supersedes(), "only superseding purposes can be ended");
    store.delete(Delete::new(keys::latest_link(user, purpose.as_str()))).await.map(|_| ())
}
