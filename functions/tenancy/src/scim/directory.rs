//! An organization's SCIM directory: its settings (the account everyone in it joins, and
//! which group grants which role where) and its bearer token, with the admin routes under
//! `/organizations/{org_id}/scim`.
//!
//! The token is `gws_<secret>`, shown once and stored as its SHA-256 (`SCIM_TOKEN#<sha256>`
//! names the organization; the directory's record holds the hash too, so a token replaced by
//! a rotation stops working even if its lookup item outlived the transaction that removed it).
//! Rotation replaces the token at once: the identity provider's admin pastes the new one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::AuthUser;
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, RequestContext, json_with_status};
use shared::id::{AccountId, OrgId};
use shared::keys;
use shared::services::Services;
use shared::store::{Delete, Item, Put, Query, Store, StoreError, StoreExt as _, TxOp};
use shared::tenancy::Role;

use crate::orgs::{account_of, load_as_admin, record};

/// What every directory token starts with (so secret scanners can find a leaked one).
pub const TOKEN_PREFIX: &str = "gws_";
/// The most group mappings a directory holds.
pub const MAX_GROUP_ROLES: usize = 100;

/// A group whose members get a role in an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRole {
    /// The group's `displayName` in the directory (compared without regard to case).
    #[schema(min_length = 1, max_length = 256, pattern = "\\S")]
    pub group: String,
    /// An account of the organization.
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub account_id: AccountId,
    /// The role its members get there (never `owner`).
    #[schema(value_type = crate::GrantableRole)]
    pub role: Role,
}

/// A directory's settings and token, as stored (`ORG#<org>` / `SCIM`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Directory {
    /// The organization.
    pub org_id: OrgId,
    /// The SHA-256 of the current token's secret.
    pub token_hash: Option<String>,
    /// The start of the current token, as shown to people.
    pub token_prefix: Option<String>,
    /// When the current token was issued (Unix ms).
    pub token_created_at_ms: Option<i64>,
    /// The account every active, linked user of the directory joins.
    pub default_account_id: Option<AccountId>,
    /// Their role there.
    pub default_role: Role,
    /// Roles by group, the first mapping of an account winning.
    pub group_roles: Vec<GroupRole>,
    /// When the directory was set up (Unix ms).
    pub created_at_ms: i64,
    /// When its settings or token last changed (Unix ms).
    pub updated_at_ms: i64,
}

impl Directory {
    fn new(org_id: OrgId, now_ms: i64) -> Self {
        Self {
            org_id,
            token_hash: None,
            token_prefix: None,
            token_created_at_ms: None,
            default_account_id: None,
            default_role: Role::Member,
            group_roles: Vec::new(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }
}

/// The directory of `org`, with its version.
///
/// # Errors
/// When the store fails.
pub async fn load(store: &dyn Store, org: OrgId) -> Result<Option<(Directory, u64)>, StoreError> {
    Ok(match store.get(&keys::scim_directory(org)).await? {
        Some(item) => Some((item.record()?, item.version)),
        None => None,
    })
}

/// The SCIM base URL the identity provider is given.
pub fn base_url(s: &Services) -> String {
    format!("{}/scim/v2", s.config.server.api_url.trim_end_matches('/'))
}

/// A directory as its organization's admins see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DirectoryView {
    /// Whether the directory is set up (settings saved or a token issued).
    pub enabled: bool,
    /// The SCIM base URL to give the identity provider ("Tenant URL", "SCIM connector base URL").
    pub base_url: String,
    /// The start of the current token (`gws_…`), if one was issued.
    pub token_prefix: Option<String>,
    /// When it was issued (Unix ms).
    pub token_created_at_ms: Option<i64>,
    /// The account every active user joins.
    pub default_account_id: Option<String>,
    /// Their role there.
    pub default_role: Role,
    /// Roles by group.
    pub group_roles: Vec<GroupRole>,
    /// When the settings last changed (Unix ms).
    pub updated_at_ms: i64,
}

fn view(s: &Services, d: &Directory) -> DirectoryView {
    DirectoryView {
        enabled: true,
        base_url: base_url(s),
        token_prefix: d.token_prefix.clone(),
        token_created_at_ms: d.token_created_at_ms,
        default_account_id: d.default_account_id.map(|a| a.to_string()),
        default_role: d.default_role,
        group_roles: d.group_roles.clone(),
        updated_at_ms: d.updated_at_ms,
    }
}

/// The organization's SCIM directory (its admins): `enabled: false` until it is set up.
#[utoipa::path(get, path = "/organizations/{org_id}/scim", tag = "tenancy", operation_id = "get_scim_directory",
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = DirectoryView),
              (status = 404, description = "No such organization, or the caller is not its admin (`not_found`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(s): State<Services>,
    caller: AuthUser,
    Path(org): Path<OrgId>,
) -> Result<Json<DirectoryView>, ApiError> {
    load_as_admin(&s, org, caller.user_id).await?;
    Ok(Json(match load(s.store.as_ref(), org).await? {
        Some((directory, _)) => view(&s, &directory),
        None => DirectoryView { enabled: false, ..view(&s, &Directory::new(org, 0)) },
    }))
}

/// A directory's settings.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorySettings {
    /// An account of the organization that every active user of the directory joins.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub default_account_id: Option<String>,
    /// Their role there (default `member`; never `owner`).
    #[schema(value_type = Option<crate::GrantableRole>)]
    pub default_role: Option<Role>,
    /// Roles by group (at most 100): members of a group get its role in its account; for an
    /// account named more than once, the first mapping a user's groups match wins, and any
    /// mapping wins over the default.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub group_roles: Vec<GroupRole>,
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::Invalid { code, detail: detail.into() }
}

/// Sets the directory's settings (creating the directory if needed), then brings every
/// linked user's memberships in line with them.
#[utoipa::path(put, path = "/organizations/{org_id}/scim", tag = "tenancy", operation_id = "put_scim_directory",
    request_body = DirectorySettings, security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = DirectoryView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "An account outside the organization (`invalid_account`), `owner` (`invalid_role`), a bad mapping (`invalid_group_roles`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(org): Path<OrgId>,
    Json(req): Json<DirectorySettings>,
) -> Result<Json<DirectoryView>, ApiError> {
    load_as_admin(&s, org, caller.user_id).await?;
    let default_account_id = match &req.default_account_id {
        None => None,
        Some(raw) => Some(account_of(&s, org, raw, "default_account_id").await?),
    };
    let default_role = req.default_role.unwrap_or(Role::Member);
    if default_role == Role::Owner || req.group_roles.iter().any(|g| g.role == Role::Owner) {
        return Err(invalid("invalid_role", "directory sync cannot make owners"));
    }
    if req.group_roles.len() > MAX_GROUP_ROLES {
        return Err(invalid("invalid_group_roles", format!("at most {MAX_GROUP_ROLES} group mappings")));
    }
    let mut group_roles = Vec::with_capacity(req.group_roles.len());
    for mapping in &req.group_roles {
        let group = mapping.group.trim();
        if group.is_empty() || group.chars().count() > 256 || group.chars().any(char::is_control) {
            return Err(invalid("invalid_group_roles", "a group name is 1 to 256 printable characters"));
        }
        account_of(&s, org, &mapping.account_id.to_string(), "a group mapping's account_id").await?;
        group_roles.push(GroupRole { group: group.to_owned(), ..mapping.clone() });
    }
    let now = s.clock.now_ms();
    let (mut directory, version) = match load(s.store.as_ref(), org).await? {
        Some((d, v)) => (d, Some(v)),
        None => (Directory::new(org, now), None),
    };
    directory.default_account_id = default_account_id;
    directory.default_role = default_role;
    directory.group_roles = group_roles;
    directory.updated_at_ms = now;
    let mut item = Item::from_record(keys::scim_directory(org), &directory)?;
    let put = match version {
        Some(v) => {
            item.version = v;
            Put::new(item).if_unchanged()
        }
        None => Put::new(item).if_not_exists(),
    };
    s.store.put(put).await.map_err(conflict)?;
    let detail = json!({"default_account_id": directory.default_account_id, "default_role": directory.default_role,
                        "group_roles": directory.group_roles});
    record(&s, org, caller.user_id, AuditAction::OrganizationScimConfigured, &ctx, detail).await?;
    super::provisioning::resync_all(&s, &directory, &ctx.origin()).await?;
    Ok(Json(view(&s, &directory)))
}

/// After `account` left the organization: the directory's default and mappings no longer
/// name it (the memberships it granted there stay, as members of an account do).
///
/// # Errors
/// When the store fails.
pub(crate) async fn forget_account(
    s: &Services,
    org: OrgId,
    account: AccountId,
    actor: shared::id::UserId,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    for _ in 0..3 {
        let Some((mut directory, version)) = load(s.store.as_ref(), org).await? else { return Ok(()) };
        let mappings = directory.group_roles.len();
        directory.group_roles.retain(|m| m.account_id != account);
        let was_default = directory.default_account_id == Some(account);
        if !was_default && directory.group_roles.len() == mappings {
            return Ok(());
        }
        if was_default {
            directory.default_account_id = None;
        }
        directory.updated_at_ms = s.clock.now_ms();
        let mut item = Item::from_record(keys::scim_directory(org), &directory)?;
        item.version = version;
        match s.store.put(Put::new(item).if_unchanged()).await {
            Ok(_) => {
                let detail = json!({"default_account_id": directory.default_account_id, "default_role": directory.default_role,
                                    "group_roles": directory.group_roles, "detached_account": account});
                return record(s, org, actor, AuditAction::OrganizationScimConfigured, ctx, detail).await;
            }
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict { code: "conflict", detail: "the directory kept changing; retry".into() })
}

fn conflict(e: StoreError) -> ApiError {
    if e.is_condition_failure() {
        ApiError::Conflict { code: "conflict", detail: "the directory changed meanwhile; retry".into() }
    } else {
        e.into()
    }
}

/// A new directory token: shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewDirectoryToken {
    /// The bearer token for the identity provider ("Secret Token", "API token").
    pub token: String,
    /// Its visible start.
    pub token_prefix: String,
    /// The SCIM base URL.
    pub base_url: String,
}

/// Issues the directory's bearer token, replacing the previous one at once (setting the
/// directory up if needed). The token is shown in this answer only.
#[utoipa::path(post, path = "/organizations/{org_id}/scim/token", tag = "tenancy", operation_id = "rotate_scim_token",
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 201, body = NewDirectoryToken), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn rotate_token(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(org): Path<OrgId>,
) -> Result<Response, ApiError> {
    load_as_admin(&s, org, caller.user_id).await?;
    let now = s.clock.now_ms();
    let (mut directory, version) = match load(s.store.as_ref(), org).await? {
        Some((d, v)) => (d, Some(v)),
        None => (Directory::new(org, now), None),
    };
    let token = format!("{TOKEN_PREFIX}{}", shared::auth::random_secret()?);
    let hash = shared::auth::hash_secret(&token);
    let mut ops = Vec::new();
    if let Some(old) = &directory.token_hash {
        ops.push(TxOp::Delete(Delete::new(keys::scim_token(old))));
    }
    ops.push(TxOp::Put(Put::new(Item::new(keys::scim_token(&hash)).with("org_id", org.to_string())).if_not_exists()));
    let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
    directory.token_hash = Some(hash);
    directory.token_prefix = Some(format!("{prefix}…"));
    directory.token_created_at_ms = Some(now);
    directory.updated_at_ms = now;
    let mut item = Item::from_record(keys::scim_directory(org), &directory)?;
    ops.push(TxOp::Put(match version {
        Some(v) => {
            item.version = v;
            Put::new(item).if_unchanged()
        }
        None => Put::new(item).if_not_exists(),
    }));
    s.store.transact(ops).await.map_err(conflict)?;
    let detail = json!({"token_prefix": directory.token_prefix});
    record(&s, org, caller.user_id, AuditAction::OrganizationScimTokenRotated, &ctx, detail).await?;
    let answer = NewDirectoryToken {
        token,
        token_prefix: directory.token_prefix.clone().unwrap_or_default(),
        base_url: base_url(&s),
    };
    Ok(json_with_status(StatusCode::CREATED, &answer))
}

/// Switches the directory off: its token stops working and its users and groups are
/// forgotten. Memberships it granted stay (remove members from the accounts to end them).
/// Idempotent: 204 also when it was off, and a retry finishes a removal that failed partway.
#[utoipa::path(delete, path = "/organizations/{org_id}/scim", tag = "tenancy", operation_id = "delete_scim_directory",
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 204, description = "Directory sync is off (whether or not it was on)"),
              (status = 404, description = "No such organization, or the caller is not its admin (`not_found`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(org): Path<OrgId>,
) -> Result<StatusCode, ApiError> {
    load_as_admin(&s, org, caller.user_id).await?;
    let directory = load(s.store.as_ref(), org).await?;
    if let Some((directory, _)) = &directory {
        // The token first: once it is gone, the provider cannot add what the rest removes.
        let mut first = vec![TxOp::Delete(Delete::new(keys::scim_directory(org)))];
        if let Some(hash) = &directory.token_hash {
            first.push(TxOp::Delete(Delete::new(keys::scim_token(hash))));
        }
        s.store.transact(first).await?;
    }
    let partition = keys::org_partition(org);
    let mut removed = 0_usize;
    for prefix in [keys::SCIM_USER_PREFIX, keys::SCIM_USER_NAME_PREFIX, keys::SCIM_LINK_PREFIX, keys::SCIM_GROUP_PREFIX]
    {
        for item in s.store.query_all(Query::partition(partition.clone()).begins_with(prefix)).await? {
            s.store.delete(Delete::new(item.key)).await?;
            removed += 1;
        }
    }
    if directory.is_some() || removed > 0 {
        record(&s, org, caller.user_id, AuditAction::OrganizationScimDisabled, &ctx, json!({})).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
