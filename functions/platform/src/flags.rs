//! Operator routes for feature flags (operator token, like the other `/ops` routes): list,
//! define or change (a kill switch takes effect within the flag cache's 30 seconds, with no
//! deploy), delete, and per-account overrides. Changes are audited in the `ops` stream, and
//! overrides also in the account's.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::error::{ApiError, Problem};
use shared::flags::{Flag, FlagSettings, Override, flag_key, override_key};
use shared::http::{Json, Path, RequestContext};
use shared::id::AccountId;
use shared::services::Services;
use shared::store::{Delete, Item, Put};

use crate::ops::Operator;

async fn record(
    s: &Services,
    ctx: &RequestContext,
    action: AuditAction,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let event = NewEvent::new(Actor::Operator, action, ctx.origin()).target(target).detail(detail);
    s.audit(AuditStream::Operations, event).await?;
    Ok(())
}

/// Every flag.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlagList {
    /// The definitions.
    pub flags: Vec<FlagView>,
}

/// A flag's definition as the API shows it: the settings and the key side by side. Its own
/// type because the settings refuse unknown fields, which a flattened schema would carry
/// over to the key and the time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagView {
    /// Its key (`new_editor`).
    pub key: String,
    /// What it is for.
    pub description: String,
    /// The kill switch: false turns it off for everyone, overrides included.
    pub enabled: bool,
    /// Plans it is limited to (plan ids, or `free`); empty: every plan.
    pub plans: Vec<String>,
    /// The share of qualifying accounts it is on for, 0 to 100.
    pub rollout_percent: u8,
    /// A/B variants; empty: a plain on/off flag.
    pub variants: Vec<shared::flags::Variant>,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
}

impl From<Flag> for FlagView {
    fn from(flag: Flag) -> Self {
        let FlagSettings { description, enabled, plans, rollout_percent, variants } = flag.settings;
        Self {
            key: flag.key,
            description,
            enabled,
            plans,
            rollout_percent,
            variants,
            updated_at_ms: flag.updated_at_ms,
        }
    }
}

/// Lists the feature flags.
#[utoipa::path(get, path = "/ops/flags", tag = "operations", operation_id = "list_flags", security(("operator_token" = [])),
    responses((status = 200, body = FlagList), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list(_: Operator, State(s): State<Services>) -> Result<Json<FlagList>, ApiError> {
    let flags = shared::flags::read_definitions(s.store.as_ref()).await?;
    Ok(Json(FlagList { flags: flags.into_iter().map(FlagView::from).collect() }))
}

/// Defines or changes a flag.
#[utoipa::path(put, path = "/ops/flags/{key}", tag = "operations", security(("operator_token" = [])),
    params(("key" = String, Path, pattern = "^[a-z0-9_-]{1,64}$")), request_body = FlagSettings,
    responses((status = 200, body = FlagView), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put(
    _: Operator,
    State(s): State<Services>,
    ctx: RequestContext,
    Path(key): Path<String>,
    Json(req): Json<FlagSettings>,
) -> Result<Json<FlagView>, ApiError> {
    let flag = Flag { key: key.clone(), settings: req, updated_at_ms: s.clock.now_ms() };
    flag.validate().map_err(|detail| ApiError::Invalid { code: "invalid_flag", detail })?;
    let plans = &s.plans;
    if let Some(unknown) = flag.settings.plans.iter().find(|p| *p != "free" && plans.plan(p).is_none()) {
        return Err(ApiError::Invalid {
            code: "unknown_plan",
            detail: format!("no plan {unknown:?} in the catalogue"),
        });
    }
    s.store.put(Put::new(Item::from_record(flag_key(&key), &flag)?)).await?;
    s.flag_cache.invalidate();
    record(
        &s,
        &ctx,
        AuditAction::FlagChanged,
        &key,
        json!({"enabled": flag.settings.enabled, "rollout_percent": flag.settings.rollout_percent}),
    )
    .await?;
    Ok(Json(flag.into()))
}

/// Deletes a flag (it is then off everywhere).
#[utoipa::path(delete, path = "/ops/flags/{key}", tag = "operations", security(("operator_token" = [])),
    params(("key" = String, Path, pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    _: Operator,
    State(s): State<Services>,
    ctx: RequestContext,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.store.delete(Delete::new(flag_key(&key))).await?.ok_or(ApiError::NotFound)?;
    s.flag_cache.invalidate();
    record(&s, &ctx, AuditAction::FlagDeleted, &key, json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets one account's override of a flag.
#[utoipa::path(put, path = "/ops/flags/{key}/overrides/{account}", tag = "operations", security(("operator_token" = [])),
    params(("key" = String, Path, pattern = "^[a-z0-9_-]{1,64}$"), ("account" = String, Path)), request_body = Override,
    responses((status = 200, body = Override), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put_override(
    _: Operator,
    State(s): State<Services>,
    ctx: RequestContext,
    Path(ids): Path<(String, AccountId)>,
    Json(req): Json<Override>,
) -> Result<Json<Override>, ApiError> {
    let (key, account) = ids;
    let flag: Flag = {
        use shared::store::StoreExt as _;
        s.store.get_record(&flag_key(&key)).await?.ok_or(ApiError::NotFound)?
    };
    if shared::tenancy::load_account(s.store.as_ref(), account).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    flag.accepts(&req).map_err(|detail| ApiError::Invalid { code: "invalid_override", detail })?;
    s.store.put(Put::new(Item::from_record(override_key(account, &key), &req)?)).await?;
    let detail = json!({"enabled": req.enabled, "variant": req.variant});
    record(&s, &ctx, AuditAction::FlagOverrideSet, &format!("{key}:{account}"), detail.clone()).await?;
    let event = NewEvent::new(Actor::Operator, AuditAction::FlagOverrideSet, ctx.origin()).target(key).detail(detail);
    s.audit(AuditStream::Account(account), event).await?;
    Ok(Json(req))
}

/// Removes one account's override of a flag.
#[utoipa::path(delete, path = "/ops/flags/{key}/overrides/{account}", tag = "operations", security(("operator_token" = [])),
    params(("key" = String, Path, pattern = "^[a-z0-9_-]{1,64}$"), ("account" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_override(
    _: Operator,
    State(s): State<Services>,
    ctx: RequestContext,
    Path(ids): Path<(String, AccountId)>,
) -> Result<StatusCode, ApiError> {
    let (key, account) = ids;
    s.store.delete(Delete::new(override_key(account, &key))).await?.ok_or(ApiError::NotFound)?;
    record(&s, &ctx, AuditAction::FlagOverrideRemoved, &format!("{key}:{account}"), json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}
