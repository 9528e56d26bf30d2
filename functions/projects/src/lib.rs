//! The projects function: the example product function, a small tenant-scoped resource that
//! uses every piece a product route needs. Copy it for your own resources; delete it (see
//! ARCHITECTURE.md, "Adding a product function") when you no longer want it.
//!
//! - Routes under `/accounts/{account_id}/projects`: create, list (paginated; `?deleted=true`
//!   lists the bin), read, update, soft-delete, restore. The `Tenant` extractor checks the
//!   caller belongs to the account; each handler asks for the action it needs
//!   (`Action::ReadData`, `Action::WriteData`), which the role table decides; the security
//!   requirement of each route names that action, so the isolation matrix reads it.
//! - Gated by the feature flag `projects` (off unless an operator defines it; 403
//!   `feature_disabled` while off).
//! - Bounded by the plan's `projects` limit (`shared/config/plans.toml`): creating or
//!   restoring one past it answers 402 `plan_limit`, naming the limit and the upgrade route.
//!   The count is an item of the account kept in the same transaction as each project, so
//!   two concurrent creates cannot both pass the limit (one gets 409 and retries).
//! - Each change writes an audit event (`project.created`, `project.updated`,
//!   `project.deleted`, `project.restored`) to the account's stream, and a product event for
//!   the customer-success layer in the change's own transaction; creating and deleting also
//!   publish a webhook message (`project.created`, `project.deleted`) to the account's
//!   endpoints with the change ([`shared::webhooks::stage`]).
//! - Creating, deleting and restoring stage the background job [`RecountProjects`] with the
//!   change (the transactional outbox): the worker recounts the live projects and repairs
//!   the count if it ever drifted. It is registered in [`jobs`], the product jobs path.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{AuditAction, logged_after_commit};
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Path, Query, RequestContext, json_with_status};
use shared::id::AccountId;
use shared::jobs::outbox::StagedJob;
use shared::jobs::{Envelope, Job, JobError, JobOutcome, ProductJob, ProductJobs};
use shared::product_events::ProductEvent;
use shared::services::Services;
use shared::soft_delete::{self, RestoreError};
use shared::store::{Condition, Item, Put, Query as StoreQuery, StoreError, StoreExt as _, TxOp, Update};
use shared::tenancy::{Action, Tenant, TenantScope};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The kind of this function's items in the account's partition (`PROJECT#<id>`).
pub const KIND: &str = "PROJECT";
/// The feature flag that turns projects on for an account.
pub const FLAG: &str = "projects";
/// The plan limit (`limits.projects` in the plan catalogue).
pub const LIMIT: &str = "projects";
/// The longest name.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

shared::ulid_id!(
    /// Identifies a project.
    ProjectId
);

#[derive(utoipa::OpenApi)]
#[openapi(tags((name = "projects", description = "The example product resource: an account's projects")))]
struct ApiDoc;

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create, list))
        .routes(routes!(read, update, delete))
        .routes(routes!(restore))
}

shared::function_routes!();

/// This function's background jobs, registered with the worker (see `shared::jobs::product`).
pub fn jobs(services: Services) -> ProductJobs {
    ProductJobs::new().register(move |job: RecountProjects, _: Envelope| {
        let services = services.clone();
        async move { recount(&services, job.account_id).await }
    })
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Project {
    /// Its id.
    #[schema(value_type = String)]
    pub id: ProjectId,
    /// Its name.
    pub name: String,
    /// What it is about.
    pub description: Option<String>,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
    /// When it was deleted (Unix ms), for projects in the bin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_ms: Option<i64>,
}

/// A new project.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Website relaunch", "description": "The new marketing site"}))]
pub struct NewProject {
    /// Its name: 1 to 100 printable characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// What it is about: at most 2000 characters.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// Changes to a project; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Website relaunch (phase 2)"}))]
pub struct ProjectChanges {
    /// A new name.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// A new description (`""` removes it).
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// A page of projects.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProjectPage {
    /// Oldest first.
    pub projects: Vec<Project>,
    /// Pass it as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Which projects a list shows.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page (1 to 100, default 50).
    #[serde(default, deserialize_with = "shared::http::bounded::<_, 1, 100>")]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `true`: the deleted projects that can still be restored, instead of the live ones.
    #[serde(default)]
    pub deleted: bool,
}

/// The background job that recounts an account's live projects and repairs the stored
/// count if it differs. Idempotent: running it twice writes the same count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecountProjects {
    /// The account.
    pub account_id: AccountId,
}

impl ProductJob for RecountProjects {
    const NAME: &'static str = "projects.recount";
}

/// Bidirectional formatting characters (Unicode's explicit embeddings, overrides and
/// isolates), which can make a name display as something else (the "Trojan Source" trick).
fn bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn clean(text: &str, max: usize, field: &'static str) -> Result<String, ApiError> {
    let trimmed = text.trim();
    let control = trimmed.chars().any(bidi_control)
        || if field == "name" { trimmed.chars().any(char::is_control) } else { false };
    if trimmed.chars().count() > max || control {
        return Err(ApiError::Invalid {
            code: "invalid_project",
            detail: format!("the {field} is at most {max} characters{}", if control { ", printable" } else { "" }),
        });
    }
    Ok(trimmed.to_owned())
}

fn name(raw: &str) -> Result<String, ApiError> {
    let name = clean(raw, MAX_NAME_CHARS, "name")?;
    if name.is_empty() {
        return Err(ApiError::Invalid { code: "invalid_project", detail: "a project needs a name".into() });
    }
    Ok(name)
}

fn description(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    raw.map(|d| clean(d, MAX_DESCRIPTION_CHARS, "description")).transpose().map(|d| d.filter(|d| !d.is_empty()))
}

/// 403 `feature_disabled` unless the `projects` flag is on for the account.
async fn gate(s: &Services, scope: &TenantScope) -> Result<(), ApiError> {
    // Recorded as the `feature.used` product event (once a day per account).
    if s.flags().use_feature(scope.account_id(), FLAG, scope.user_id()).await? {
        return Ok(());
    }
    Err(ApiError::ForbiddenBecause {
        code: "feature_disabled",
        detail: format!("the `{FLAG}` feature is not enabled for this account"),
    })
}

/// The stored count of live projects, and its version (0: none yet).
async fn count(s: &Services, scope: &TenantScope) -> Result<(u64, u64), ApiError> {
    let item = s.store.get(&scope.key("COUNTER", LIMIT)).await?;
    Ok(item.map_or((0, 0), |i| (i.data.get("count").and_then(serde_json::Value::as_u64).unwrap_or(0), i.version)))
}

/// The write that takes one more project under the plan's limit (402 past it), conditional
/// on the count read, so a concurrent change makes the transaction fail.
async fn take_one(s: &Services, scope: &TenantScope) -> Result<TxOp, ApiError> {
    let entitlements = s.entitlements(scope.account_id()).await?;
    let (taken, version) = count(s, scope).await?;
    if let Some(allowed) = entitlements.limit(LIMIT)
        && taken >= allowed
    {
        let route = if entitlements.plan == "free" { "checkout" } else { "change-plan" };
        return Err(ApiError::PlanLimit {
            limit: LIMIT,
            allowed,
            upgrade: format!("/accounts/{}/billing/{route}", scope.account_id()),
        });
    }
    let key = scope.key("COUNTER", LIMIT);
    Ok(if version == 0 {
        TxOp::Put(Put::new(Item::new(key).with("count", 1)).if_not_exists())
    } else {
        TxOp::Update(Update::new(key).add("count", 1).when(Condition::VersionIs(version)))
    })
}

/// The write that gives one project back (never below zero: the recount repairs drift).
async fn give_one(s: &Services, scope: &TenantScope) -> Result<Option<TxOp>, ApiError> {
    let (taken, version) = count(s, scope).await?;
    Ok((taken > 0).then(|| {
        TxOp::Update(Update::new(scope.key("COUNTER", LIMIT)).add("count", -1).when(Condition::VersionIs(version)))
    }))
}

fn event(scope: &TenantScope, name: &str, project: ProjectId, now: i64) -> Result<TxOp, ApiError> {
    let event = ProductEvent::new(name, scope.account_id(), scope.user_id(), now)
        .and_then(|e| e.with("project_id", project.to_string()))
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(event.op()?)
}

fn recount_job(s: &Services, scope: &TenantScope) -> Result<StagedJob, ApiError> {
    let job = Job::product(&RecountProjects { account_id: scope.account_id() })
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(s.jobs().stage(job, None)?)
}

/// Commits `ops` with the recount job and, when given, the webhook message of the change
/// (its `data`); dispatches both, and records the audit event.
async fn commit(
    s: &Services,
    scope: &TenantScope,
    ctx: &RequestContext,
    mut ops: Vec<TxOp>,
    action: &'static str,
    project: ProjectId,
    webhook: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let job = recount_job(s, scope)?;
    ops.push(job.op());
    let now = s.clock.now_ms();
    let message = webhook
        .map(|data| {
            // One change, one id: `project.created` of project p at t.
            let id = format!("{}-{project}-{now}", action.replace('.', "-"));
            shared::webhooks::stage(&s.jobs(), scope.account_id(), &shared::webhooks::Event::new(action, id, now, data))
        })
        .transpose()?;
    ops.extend(message.iter().map(StagedJob::op));
    s.store.transact(ops).await?;
    s.jobs().dispatch(job).await;
    if let Some(message) = message {
        s.jobs().dispatch(message).await;
    }
    let audited =
        scope.audit(s, AuditAction::Product(action), Some(project.to_string()), ctx.origin(), json!({})).await;
    logged_after_commit(audited, action);
    Ok(())
}

const PROBLEM: &str = "application/problem+json";

/// Creates a project. Needs the `projects` flag and room under the plan's `projects` limit.
#[utoipa::path(post, path = "/accounts/{account_id}/projects", tag = "projects", operation_id = "create_project",
    request_body = NewProject, security(("bearer" = ["write_data"])), params(("account_id" = String, Path)),
    responses((status = 201, body = Project),
              (status = 402, description = "The plan's `projects` limit is reached (`plan_limit`: `limit`, `allowed`, `upgrade`)", body = Problem, content_type = PROBLEM),
              (status = 403, description = "The role may not write, or the `projects` feature is off (`feature_disabled`)", body = Problem, content_type = PROBLEM),
              (status = 404, body = Problem, content_type = PROBLEM),
              (status = 409, description = "A concurrent change: retry", body = Problem, content_type = PROBLEM),
              (status = 422, body = Problem, content_type = PROBLEM)))]
async fn create(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(req): Json<NewProject>,
) -> Result<Response, ApiError> {
    scope.require(Action::WriteData)?;
    gate(&s, &scope).await?;
    let now = s.clock.now_ms();
    let project = Project {
        id: ProjectId::new(),
        name: name(&req.name)?,
        description: description(req.description.as_deref())?,
        created_at_ms: now,
        updated_at_ms: now,
        deleted_at_ms: None,
    };
    let id = project.id.to_string();
    let put = Put::new(Item::from_record(scope.key(KIND, &id), &project)?).if_not_exists();
    let ops = vec![TxOp::Put(put), take_one(&s, &scope).await?, event(&scope, "project.created", project.id, now)?];
    let webhook = json!({"project_id": project.id, "name": project.name});
    commit(&s, &scope, &ctx, ops, "project.created", project.id, Some(webhook)).await?;
    Ok(json_with_status(StatusCode::CREATED, &project))
}

/// Lists the account's projects, oldest first; `?deleted=true` lists the bin instead.
#[utoipa::path(get, path = "/accounts/{account_id}/projects", tag = "projects", operation_id = "list_projects",
    security(("bearer" = ["read_data"])), params(("account_id" = String, Path), ListParams),
    responses((status = 200, body = ProjectPage),
              (status = 400, body = Problem, content_type = PROBLEM),
              (status = 403, body = Problem, content_type = PROBLEM),
              (status = 404, body = Problem, content_type = PROBLEM)))]
async fn list(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Query(params): Query<ListParams>,
) -> Result<Json<ProjectPage>, ApiError> {
    scope.require(Action::ReadData)?;
    gate(&s, &scope).await?;
    let page = PageParams { limit: params.limit, cursor: params.cursor };
    if !params.deleted {
        let (projects, next) =
            shared::tenancy::list(s.store.as_ref(), &scope, KIND, page.limit(), page.cursor()?).await?;
        return Ok(Json(ProjectPage { projects, next_cursor: next.map(|c| c.encode()) }));
    }
    // The bin: the kind's items that are deleted, in full pages.
    let query = StoreQuery::partition(shared::keys::account_partition(scope.account_id()))
        .begins_with(shared::keys::tenant_kind_prefix(KIND))
        .limit(page.limit())
        .after(page.cursor()?);
    let now = s.clock.now_ms();
    let restorable = move |i: &Item| {
        i.data.get("purge_after_ms").and_then(serde_json::Value::as_i64).is_some_and(|purge| purge > now)
    };
    let found = s.store.query_kept(query, restorable).await?;
    Ok(Json(ProjectPage { projects: found.records()?, next_cursor: found.next.map(|c| c.encode()) }))
}

/// Reads a project.
#[utoipa::path(get, path = "/accounts/{account_id}/projects/{project_id}", tag = "projects", operation_id = "get_project",
    security(("bearer" = ["read_data"])), params(("account_id" = String, Path), ("project_id" = String, Path)),
    responses((status = 200, body = Project),
              (status = 403, body = Problem, content_type = PROBLEM),
              (status = 404, body = Problem, content_type = PROBLEM)))]
async fn read(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, ProjectId)>,
) -> Result<Json<Project>, ApiError> {
    let id = ids.1;
    scope.require(Action::ReadData)?;
    gate(&s, &scope).await?;
    let (project, _) = shared::tenancy::get::<Project>(s.store.as_ref(), &scope, KIND, &id.to_string())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(project))
}

/// Changes a project's name or description (a request that changes nothing writes nothing).
#[utoipa::path(patch, path = "/accounts/{account_id}/projects/{project_id}", tag = "projects", operation_id = "update_project",
    request_body = ProjectChanges, security(("bearer" = ["write_data"])),
    params(("account_id" = String, Path), ("project_id" = String, Path)),
    responses((status = 200, body = Project),
              (status = 403, body = Problem, content_type = PROBLEM),
              (status = 404, body = Problem, content_type = PROBLEM),
              (status = 409, description = "A concurrent change: read it again and retry", body = Problem, content_type = PROBLEM),
              (status = 422, body = Problem, content_type = PROBLEM)))]
async fn update(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, ProjectId)>,
    Json(req): Json<ProjectChanges>,
) -> Result<Json<Project>, ApiError> {
    let id = ids.1;
    scope.require(Action::WriteData)?;
    gate(&s, &scope).await?;
    let store = s.store.as_ref();
    let (before, version) =
        shared::tenancy::get::<Project>(store, &scope, KIND, &id.to_string()).await?.ok_or(ApiError::NotFound)?;
    let mut project = before.clone();
    if let Some(n) = &req.name {
        project.name = name(n)?;
    }
    if req.description.is_some() {
        project.description = description(req.description.as_deref())?;
    }
    let changed: Vec<&str> =
        [("name", project.name != before.name), ("description", project.description != before.description)]
            .into_iter()
            .filter_map(|(field, differs)| differs.then_some(field))
            .collect();
    if changed.is_empty() {
        // Nothing to change: nothing written, nothing audited.
        return Ok(Json(project));
    }
    let now = s.clock.now_ms();
    project.updated_at_ms = now;
    let mut item = Item::from_record(scope.key(KIND, &id.to_string()), &project)?;
    item.version = version;
    let ops = vec![TxOp::Put(Put::new(item).if_unchanged()), event(&scope, "project.updated", id, now)?];
    store.transact(ops).await?;
    let detail = json!({"changed": changed});
    let audited =
        scope.audit(&s, AuditAction::Product("project.updated"), Some(id.to_string()), ctx.origin(), detail).await;
    logged_after_commit(audited, "project.updated");
    Ok(Json(project))
}

/// Moves a project to the bin: it can be restored within the retention window
/// (`GROUNDWORK_SOFT_DELETE_RETENTION_DAYS`), then it is purged.
#[utoipa::path(delete, path = "/accounts/{account_id}/projects/{project_id}", tag = "projects", operation_id = "delete_project",
    security(("bearer" = ["write_data"])), params(("account_id" = String, Path), ("project_id" = String, Path)),
    responses((status = 204),
              (status = 403, body = Problem, content_type = PROBLEM),
              (status = 404, body = Problem, content_type = PROBLEM),
              (status = 409, description = "A concurrent change: retry", body = Problem, content_type = PROBLEM)))]
async fn delete(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, ProjectId)>,
) -> Result<StatusCode, ApiError> {
    let id = ids.1;
    scope.require(Action::WriteData)?;
    gate(&s, &scope).await?;
    if shared::tenancy::get::<Project>(s.store.as_ref(), &scope, KIND, &id.to_string()).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let now = s.clock.now_ms();
    let mut ops = vec![
        TxOp::Update(soft_delete::mark_deleted(scope.key(KIND, &id.to_string()), now, s.config.soft_delete.retention)),
        event(&scope, "project.deleted", id, now)?,
    ];
    ops.extend(give_one(&s, &scope).await?);
    commit(&s, &scope, &ctx, ops, "project.deleted", id, Some(json!({"project_id": id}))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Restores a project from the bin, if the plan's `projects` limit leaves room.
#[utoipa::path(post, path = "/accounts/{account_id}/projects/{project_id}/restore", tag = "projects", operation_id = "restore_project",
    security(("bearer" = ["write_data"])), params(("account_id" = String, Path), ("project_id" = String, Path)),
    responses((status = 200, body = Project),
              (status = 402, description = "The plan's `projects` limit is reached (`plan_limit`)", body = Problem, content_type = PROBLEM),
              (status = 403, body = Problem, content_type = PROBLEM),
              (status = 404, description = "No such project in the bin", body = Problem, content_type = PROBLEM),
              (status = 409, description = "Not deleted, or a concurrent change", body = Problem, content_type = PROBLEM),
              (status = 410, description = "The retention window has passed", body = Problem, content_type = PROBLEM)))]
async fn restore(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Path(ids): Path<(AccountId, ProjectId)>,
) -> Result<Json<Project>, ApiError> {
    let id = ids.1;
    scope.require(Action::WriteData)?;
    gate(&s, &scope).await?;
    let key = scope.key(KIND, &id.to_string());
    let item = s.store.get(&key).await?.ok_or(ApiError::NotFound)?;
    let now = s.clock.now_ms();
    let restore = soft_delete::restore_update(&item, now).map_err(|e| match e {
        RestoreError::NotDeleted => {
            ApiError::Conflict { code: "not_deleted", detail: "the project is not deleted".into() }
        }
        RestoreError::Expired => {
            ApiError::Gone { code: "retention_passed", detail: "the project is past its retention window".into() }
        }
        RestoreError::NotFound => ApiError::NotFound,
        RestoreError::Store(e) => e.into(),
    })?;
    let ops = vec![TxOp::Update(restore), take_one(&s, &scope).await?, event(&scope, "project.restored", id, now)?];
    commit(&s, &scope, &ctx, ops, "project.restored", id, None).await?;
    let mut project: Project = item.record()?;
    project.deleted_at_ms = None;
    Ok(Json(project))
}

/// The [`RecountProjects`] job: sets the stored count to the live projects, if it differs.
async fn recount(s: &Services, account: AccountId) -> Result<JobOutcome, JobError> {
    let retry = |e: StoreError| JobError::Retry(e.into());
    // The count first, then the projects: every create, delete and restore moves the
    // count's version, so one that commits in between makes the write below fail (and the
    // job count again) instead of overwriting it with a stale number.
    let key = shared::keys::tenant_item(account, "COUNTER", LIMIT);
    let stored = s.store.get(&key).await.map_err(retry)?;
    let (count, version) =
        stored.map_or((0, 0), |i| (i.data.get("count").and_then(serde_json::Value::as_u64).unwrap_or(0), i.version));
    let partition = shared::keys::account_partition(account);
    let items = s
        .store
        .query_all(StoreQuery::partition(partition).begins_with(shared::keys::tenant_kind_prefix(KIND)))
        .await
        .map_err(retry)?;
    let live = items.iter().filter(|i| !soft_delete::is_deleted(i)).count() as u64;
    if count == live {
        return Ok(JobOutcome::Skipped(format!("{live} project(s): the count is right")));
    }
    let mut item = Item::new(key).with("count", live);
    item.version = version;
    let put = if version == 0 { Put::new(item).if_not_exists() } else { Put::new(item).if_unchanged() };
    // A change in between moves the version: retried, the job counts again.
    s.store.put(put).await.map_err(retry)?;
    tracing::warn!(account_id = %account, from = count, to = live, "project count repaired");
    Ok(JobOutcome::Done)
}
