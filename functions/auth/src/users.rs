//! Users and their single-use tokens in the table.
//!
//! - `USER#<id>` / `USER`: the user ([`User`]);
//! - `EMAIL#<email>` / `EMAIL`: the address's owner, created with the user in one
//!   transaction, so an address belongs to one user at most;
//! - `TOKEN#<sha256>` / `TOKEN`: a single-use token (email verification, password reset),
//!   stored hashed, expiring, deleted when used.

use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::id::UserId;
use shared::mail::EmailAddress;
use shared::store::{Condition, Delete, Item, Key, Put, Store, StoreError, StoreExt as _, TxOp};

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The id.
    pub id: UserId,
    /// The email address, unique.
    pub email: EmailAddress,
    /// Whether the address was confirmed.
    pub email_verified: bool,
    /// A display name.
    pub name: Option<String>,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// When the account was created (Unix ms).
    pub created_at_ms: i64,
    /// When the password last changed (Unix ms).
    pub password_changed_at_ms: i64,
    /// Two-factor authentication, once enabled.
    #[serde(default)]
    pub mfa: Option<crate::mfa::Mfa>,
    /// A TOTP secret (base32) enrolled but not yet confirmed with a first code.
    #[serde(default)]
    pub mfa_pending: Option<String>,
}

/// The key of user `id`.
pub fn user_key(id: UserId) -> Key {
    Key::new(format!("USER#{id}"), "USER")
}

/// The key of an address's owner record.
pub fn email_key(email: &EmailAddress) -> Key {
    Key::new(format!("EMAIL#{email}"), "EMAIL")
}

/// The user with this address, if any.
///
/// # Errors
/// When the store fails.
pub async fn by_email(store: &dyn Store, email: &EmailAddress) -> Result<Option<User>, StoreError> {
    let Some(owner) = store.get(&email_key(email)).await? else { return Ok(None) };
    let Some(id) = owner.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok()) else {
        return Err(StoreError::Corrupt(format!("email index of {email} has no user id")));
    };
    by_id(store, id).await
}

/// The user `id`, if any.
///
/// # Errors
/// When the store fails.
pub async fn by_id(store: &dyn Store, id: UserId) -> Result<Option<User>, StoreError> {
    store.get_record(&user_key(id)).await
}

/// The user `id` read for a change: the record, and the version to save it against.
///
/// # Errors
/// When the store fails or the record is corrupt.
pub async fn load_versioned(store: &dyn Store, id: UserId) -> Result<Option<(User, u64)>, StoreError> {
    match store.get(&user_key(id)).await? {
        Some(item) => Ok(Some((item.record()?, item.version))),
        None => Ok(None),
    }
}

/// Creates `user`; `Ok(false)` if the address is taken.
///
/// # Errors
/// When the store fails.
pub async fn create(store: &dyn Store, user: &User) -> Result<bool, StoreError> {
    let owner = Item::new(email_key(&user.email)).with("user_id", user.id.to_string());
    let ops = vec![
        TxOp::Put(Put::new(Item::from_record(user_key(user.id), user)?).if_not_exists()),
        TxOp::Put(Put::new(owner).if_not_exists()),
    ];
    match store.transact(ops).await {
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
    let mut item = Item::from_record(user_key(user.id), user)?;
    item.version = read_version;
    store.put(Put::new(item).if_unchanged()).await.map(|_| ())
}

/// What a single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirms an email address.
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
}

pub use shared::auth::{hash_secret, random_secret};

fn token_key(token: &str) -> Key {
    Key::new(format!("TOKEN#{}", hash_secret(token)), "TOKEN")
}

/// Issues a single-use token for `user` valid until `expires_at_secs`; returns the token.
///
/// # Errors
/// When the store fails.
pub async fn issue_token(
    store: &dyn Store,
    purpose: Purpose,
    user: UserId,
    expires_at_secs: i64,
) -> anyhow::Result<String> {
    let token = random_secret()?;
    let item = Item::new(token_key(&token))
        .with("purpose", purpose.as_str())
        .with("user_id", user.to_string())
        .expiring_at(expires_at_secs);
    store.put(Put::new(item).if_not_exists()).await?;
    Ok(token)
}

/// The user of a live token, without using it up (an MFA challenge survives wrong codes).
///
/// # Errors
/// When the store fails.
pub async fn peek_token(store: &dyn Store, purpose: Purpose, token: &str) -> Result<Option<UserId>, StoreError> {
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    let Some(item) = store.get(&token_key(token)).await? else { return Ok(None) };
    if item.data.get("purpose").and_then(|v| v.as_str()) != Some(purpose.as_str()) {
        return Ok(None);
    }
    Ok(item.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok()))
}

/// Uses a token: deletes it if it exists, has not expired and is for `purpose`; returns
/// its user. A token works once, however many requests race for it.
///
/// # Errors
/// When the store fails.
pub async fn use_token(store: &dyn Store, purpose: Purpose, token: &str) -> Result<Option<UserId>, StoreError> {
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    let delete = Delete::new(token_key(token)).when(Condition::Equals("purpose".into(), json!(purpose.as_str())));
    match store.delete(delete).await {
        Ok(Some(item)) => Ok(item.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok())),
        Ok(None) | Err(StoreError::ConditionFailed) => Ok(None),
        Err(e) => Err(e),
    }
}
