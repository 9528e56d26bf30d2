//! Issuing, refreshing and revoking sessions. Refresh tokens rotate: each use marks the
//! token used and issues the next in one transaction. Presenting a used token again within
//! the reuse interval (`GROUNDWORK_REFRESH_REUSE_INTERVAL_SECS`: two tabs refreshing at
//! once) gets the same successor; after it, the token leaked, so the whole session is
//! revoked.
//!
//! The successor is kept on the used token's record sealed (AES-256-GCM) under a key derived
//! from the used token itself, which is stored only as a hash: only a holder of the used
//! token can open it, and a copy of the table reveals no token.

use serde::Serialize;
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::auth::session::{self, Session};
use shared::auth::tokens::{self, AccessClaims};
use shared::error::ApiError;
use shared::http::RequestContext;
use shared::id::{RequestId, SessionId, UserId};
use shared::keys;
use shared::services::Services;
use shared::store::{Condition, Item, Key, Put, StoreError, TxOp, Update};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shared::auth::{hash_secret, random_secret};

/// Tokens handed to a client after login or refresh.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// The access token (a JWT): `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The refresh token: exchange it at `/auth/refresh` for a new pair; it works once
    /// (again within the reuse interval, for the same successor). Absent when it was
    /// delivered in the session cookie instead (`refresh_token_delivery: cookie`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The session these tokens belong to.
    pub session_id: String,
    /// Present (true) when the password just used appears in known data breaches (Pwned
    /// Passwords): the user was emailed, and the app should ask them to change it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub password_breached: bool,
}

fn refresh_key(token: &str) -> Key {
    shared::keys::refresh_token(&hash_secret(token))
}

/// The pair a client gets for session `sid` of `user`: a new access token and `refresh`.
async fn pair(
    services: &Services,
    user: UserId,
    sid: SessionId,
    now_secs: i64,
    refresh: String,
) -> Result<TokenPair, ApiError> {
    let t = &services.tokens;
    let claims = AccessClaims {
        iss: t.issuer.clone(),
        aud: t.audience.clone(),
        sub: user.to_string(),
        sid: sid.to_string(),
        iat: now_secs,
        nbf: now_secs,
        exp: now_secs + t.access_ttl_secs,
        jti: RequestId::new().to_string(),
    };
    Ok(TokenPair {
        access_token: tokens::sign(t.signing_keys().await?, &claims)?,
        token_type: "Bearer",
        expires_in: t.access_ttl_secs,
        refresh_token: Some(refresh),
        session_id: sid.to_string(),
        password_breached: false,
    })
}

/// The user and session a refresh token's record belongs to.
fn owner(item: &Item) -> Option<(UserId, SessionId)> {
    let field = |k: &str| item.data.get(k).and_then(|v| v.as_str());
    Some((field("user_id")?.parse().ok()?, field("session_id")?.parse().ok()?))
}

/// Starts a session for `user`; `mfa` says whether a second factor was checked.
///
/// # Errors
/// When the store fails.
pub async fn start(services: &Services, user: UserId, ctx: &RequestContext, mfa: bool) -> Result<TokenPair, ApiError> {
    start_with(services, user, ctx, mfa, None).await
}

/// As [`start`], for a session opened through `sso_org`'s single sign-on when it is `Some`
/// (recorded, so the SSO a verified domain requires is told from other sign-ins).
///
/// # Errors
/// When the store fails.
pub async fn start_with(
    services: &Services,
    user: UserId,
    ctx: &RequestContext,
    mfa: bool,
    sso_org: Option<shared::id::OrgId>,
) -> Result<TokenPair, ApiError> {
    let now = services.clock.now_ms();
    let expires = now / 1000 + services.tokens.refresh_ttl_secs;
    let sid = SessionId::new();
    let refresh = random_secret()?;
    let record = Session {
        id: sid,
        user_id: user,
        created_at_ms: now,
        last_used_at_ms: now,
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        refresh_hash: hash_secret(&refresh),
        mfa,
        sso_org,
    };
    let refresh_item = Item::new(refresh_key(&refresh))
        .with("session_id", sid.to_string())
        .with("user_id", user.to_string())
        .with("used", false)
        .expiring_at(expires);
    // Every sign-in (password, second factor, OIDC, SSO) starts here: a user their
    // organization's directory deprovisioned gets no session, whatever proved who they are.
    // The check is part of the write, so a deprovisioning that lands between the sign-in's
    // read of the user and this write cannot leave a session behind (it revokes the ones
    // committed before it), and the common path reads nothing more.
    let written = services
        .store
        .transact(vec![
            TxOp::Check(keys::user(user), Condition::Missing("suspended_by".into())),
            TxOp::Put(
                Put::new(Item::from_record(session::key(user, sid), &record)?.expiring_at(expires)).if_not_exists(),
            ),
            TxOp::Put(Put::new(refresh_item).if_not_exists()),
        ])
        .await;
    match written {
        Ok(()) => {}
        Err(e) if e.is_condition_failure() => {
            let suspended = shared::auth::users::by_id(services.store.as_ref(), user).await?;
            return Err(if suspended.is_some_and(|u| u.suspended_by.is_some()) {
                ApiError::ForbiddenBecause {
                    code: "user_suspended",
                    detail: "your organization's directory has deactivated this user: ask its administrators".into(),
                }
            } else {
                // Erased meanwhile.
                ApiError::Unauthenticated
            });
        }
        Err(e) => return Err(e.into()),
    }
    pair(services, user, sid, now / 1000, refresh).await
}

/// The user and session a refresh token (used or not) belongs to; `None` for an unknown or
/// expired token.
///
/// # Errors
/// When the store fails.
pub async fn owner_of(services: &Services, token: &str) -> Result<Option<(UserId, SessionId)>, ApiError> {
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    Ok(services.store.get(&refresh_key(token)).await?.as_ref().and_then(owner))
}

/// Exchanges a refresh token for a new pair.
///
/// # Errors
/// [`ApiError::Unauthenticated`] for an unknown, expired or revoked token, or a used one
/// outside the reuse interval (which also ends the session).
pub async fn refresh(services: &Services, token: &str, ctx: &RequestContext) -> Result<TokenPair, ApiError> {
    let store = services.store.as_ref();
    if token.is_empty() || token.len() > 200 {
        return Err(ApiError::Unauthenticated);
    }
    let Some(item) = store.get(&refresh_key(token)).await? else { return Err(ApiError::Unauthenticated) };
    let Some((user, sid)) = owner(&item) else {
        return Err(ApiError::Unexpected(anyhow::anyhow!("refresh record without a valid session")));
    };
    if item.data.get("used").and_then(serde_json::Value::as_bool) == Some(true) {
        return reuse(services, &item, token, user, sid, ctx).await;
    }
    let Some(current) = session::load(store, user, sid).await? else { return Err(ApiError::Unauthenticated) };
    require_domain_sso(services, &current).await?;
    let now = services.clock.now_ms();
    let expires = now / 1000 + services.tokens.refresh_ttl_secs;
    let next = random_secret()?;
    let next_item = Item::new(refresh_key(&next))
        .with("session_id", sid.to_string())
        .with("user_id", user.to_string())
        .with("used", false)
        .expiring_at(expires);
    let rotated = store
        .transact(vec![
            TxOp::Update(
                Update::new(refresh_key(token))
                    .set("used", true)
                    .set("used_at_ms", now)
                    .set("successor", seal_successor(token, &next)?)
                    .when(Condition::Equals("used".into(), json!(false))),
            ),
            TxOp::Put(Put::new(next_item).if_not_exists()),
            TxOp::Update(
                Update::new(session::key(user, sid))
                    .set("refresh_hash", hash_secret(&next))
                    .set("last_used_at_ms", now)
                    .expires_at(Some(expires))
                    .when(Condition::Equals("refresh_hash".into(), json!(hash_secret(token)))),
            ),
        ])
        .await;
    match rotated {
        Ok(()) => {}
        // Another request rotated this token first (a second tab): read what it did.
        Err(StoreError::TransactionCanceled { .. }) => {
            let Some(item) = store.get(&refresh_key(token)).await? else { return Err(ApiError::Unauthenticated) };
            return reuse(services, &item, token, user, sid, ctx).await;
        }
        Err(e) => return Err(e.into()),
    }
    pair(services, user, sid, now / 1000, next).await
}

/// Ends a session that did not come through the single sign-on its user's verified domain
/// requires (turned on after it was opened): its refresh answers 403 `sso_required`, so the
/// client sends the user to the organization's IdP. Its access token lapses within its TTL.
async fn require_domain_sso(services: &Services, current: &session::Session) -> Result<(), ApiError> {
    let store = services.store.as_ref();
    let Some(user) = shared::auth::users::by_id(store, current.user_id).await? else { return Ok(()) };
    let Some(org) = shared::tenancy::domains::sso_required(store, user.email.as_str()).await? else { return Ok(()) };
    if current.sso_org == Some(org) {
        return Ok(());
    }
    revoke(services, current.user_id, current.id).await?;
    Err(shared::tenancy::domains::sso_required_error(org))
}

/// A used refresh token presented again: within the reuse interval, the successor it was
/// rotated to (with a fresh access token); after it, or without one, theft.
async fn reuse(
    services: &Services,
    item: &Item,
    token: &str,
    user: UserId,
    sid: SessionId,
    ctx: &RequestContext,
) -> Result<TokenPair, ApiError> {
    let now = services.clock.now_ms();
    let used_at = item.data.get("used_at_ms").and_then(serde_json::Value::as_i64);
    let within = used_at.is_some_and(|t| now - t <= services.tokens.refresh_reuse_interval_ms);
    let successor = item.data.get("successor").and_then(|v| v.as_str()).and_then(|s| open_successor(token, s));
    if let (true, Some(next)) = (within, successor)
        && session::load(services.store.as_ref(), user, sid).await?.is_some()
    {
        tracing::info!(user_id = %user, session_id = %sid, "refresh token reused within the reuse interval");
        return pair(services, user, sid, now / 1000, next).await;
    }
    reuse_detected(services, user, sid, ctx).await?;
    Err(ApiError::Unauthenticated)
}

/// The AES-256-GCM key of a used token's successor: SHA-256 of the used token, which the
/// store never holds (only its own hash, under a different label).
fn successor_key(token: &str) -> Result<LessSafeKey, ApiError> {
    let mut material = b"groundwork refresh successor\0".to_vec();
    material.extend_from_slice(token.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
    let key = UnboundKey::new(&AES_256_GCM, digest.as_ref())
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("the successor key does not build")))?;
    Ok(LessSafeKey::new(key))
}

/// `nonce || ciphertext+tag`, base64url.
fn seal_successor(token: &str, next: &str) -> Result<String, ApiError> {
    let key = successor_key(token)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ApiError::Unexpected(anyhow::anyhow!("no randomness")))?;
    let mut sealed = next.as_bytes().to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut sealed)
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("sealing the successor failed")))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

fn open_successor(token: &str, sealed: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = ciphertext.to_vec();
    let plain = successor_key(token).ok()?.open_in_place(nonce, Aad::empty(), &mut buffer).ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

async fn reuse_detected(
    services: &Services,
    user: UserId,
    sid: SessionId,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    tracing::warn!(user_id = %user, session_id = %sid, "refresh token reused: revoking the session");
    revoke(services, user, sid).await?;
    record(services, user, AuditAction::SessionRefreshTokenReused, Some(sid.to_string()), ctx, json!({})).await
}

/// Ends a session; `Ok(false)` if there was none.
///
/// # Errors
/// When the store fails.
pub async fn revoke(services: &Services, user: UserId, sid: SessionId) -> Result<bool, ApiError> {
    Ok(session::revoke(services.store.as_ref(), user, sid).await?)
}

/// Ends every session of `user` but `keep`; returns how many ended.
///
/// # Errors
/// When the store fails.
pub async fn revoke_all(services: &Services, user: UserId, keep: Option<SessionId>) -> Result<usize, ApiError> {
    Ok(session::revoke_all(services.store.as_ref(), user, keep).await?)
}

/// [`record`] for an event whose change is already stored: a failure is logged (at error
/// level, for the alarm) instead of answered, because a 503 would send the client to repeat a
/// change that was made (a second session, a used link).
pub async fn record_after_commit(
    services: &Services,
    user: UserId,
    action: AuditAction,
    target: Option<String>,
    ctx: &RequestContext,
    detail: serde_json::Value,
) {
    shared::audit::logged_after_commit(record(services, user, action, target, ctx, detail).await, action.as_str());
}

/// Appends an event to the user's own audit stream.
///
/// # Errors
/// When the store fails.
pub async fn record(
    services: &Services,
    user: UserId,
    action: AuditAction,
    target: Option<String>,
    ctx: &RequestContext,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let event = NewEvent { actor: Actor::User(user), action, target, origin: ctx.origin(), detail };
    services.audit(AuditStream::User(user), event).await?;
    Ok(())
}
