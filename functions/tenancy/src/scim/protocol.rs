//! The SCIM endpoints (RFC 7644) an organization's identity provider calls, under
//! `/scim/v2`, with the directory's bearer token: `Users` and `Groups` (create, read, list
//! with `filter`, `startIndex`, `count`, `attributes`, `excludedAttributes`, `/.search`,
//! `PUT`, `PATCH`, `DELETE`, ETags with `If-Match` / `If-None-Match`), and the discovery
//! documents `ServiceProviderConfig`, `ResourceTypes` and `Schemas`.
//!
//! Errors are SCIM error bodies (`application/scim+json`, RFC 7644 section 3.12). Lists are
//! filtered in memory over the directory's resources, ordered by creation: a directory is
//! thousands of people, and every filter of the RFC works the same way on every attribute.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use shared::id::{OrgId, ScimId};
use shared::keys;
use shared::scim::schema::{self, GROUP, RESOURCE_TYPES, ResourceType, USER};
use shared::scim::{LIST_RESPONSE_SCHEMA, MAX_RESULTS, SCIM_JSON, ScimError, ScimType, filter, patch};
use shared::services::Services;
use shared::store::{Delete, Item, Key, Put, StoreError, StoreExt as _, TxOp};

use super::DirectoryResource;
use super::directory::{self, Directory, TOKEN_PREFIX};
use super::provisioning;

/// The SCIM routes, outside the API description (SCIM describes itself: `/Schemas`,
/// `/ResourceTypes`, `/ServiceProviderConfig`).
pub fn router() -> Router<Services> {
    let router = resource_routes(Router::new(), Kind::User);
    resource_routes(router, Kind::Group)
        .route("/scim/v2/ServiceProviderConfig", get(service_provider_config))
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{name}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema_by_id))
        .route(
            "/scim/v2/.search",
            post(|s: State<Services>, c: DirectoryCaller, h: HeaderMap, b: Bytes| {
                search(s, c, h, b, &[Kind::User, Kind::Group])
            }),
        )
        .route("/scim/v2", any(unknown))
        .route("/scim/v2/{*rest}", any(unknown))
}

/// A resource type's endpoints: its collection, its `/.search`, its resources.
fn resource_routes(router: Router<Services>, kind: Kind) -> Router<Services> {
    let endpoint = format!("/scim/v2{}", kind.resource_type().endpoint);
    router
        .route(
            &endpoint,
            get(move |s: State<Services>, c: DirectoryCaller, q: RawQuery| list(s, c, q, kind))
                .post(move |s: State<Services>, c: DirectoryCaller, h: HeaderMap, b: Bytes| create(s, c, h, b, kind)),
        )
        .route(
            &format!("{endpoint}/.search"),
            post(move |s: State<Services>, c: DirectoryCaller, h: HeaderMap, b: Bytes| async move {
                search(s, c, h, b, &[kind]).await
            }),
        )
        .route(
            &format!("{endpoint}/{{id}}"),
            get(move |s: State<Services>, c: DirectoryCaller, p: Path<String>, h: HeaderMap, q: RawQuery| {
                read(s, c, p, h, q, kind)
            })
            .put(move |s: State<Services>, c: DirectoryCaller, p: Path<String>, h: HeaderMap, b: Bytes| {
                replace(s, c, p, h, b, kind)
            })
            .patch(move |s: State<Services>, c: DirectoryCaller, p: Path<String>, h: HeaderMap, b: Bytes| {
                modify(s, c, p, h, b, kind)
            })
            .delete(move |s: State<Services>, c: DirectoryCaller, p: Path<String>, h: HeaderMap| {
                remove(s, c, p, h, kind)
            }),
        )
}

/// The routes of [`router`] as `template.yaml` wires them: one catch-all to the tenancy
/// function.
pub const TEMPLATE_ROUTE: &str = "/scim/v2/{proxy+}";

/// Which resource type a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn resource_type(self) -> &'static ResourceType {
        match self {
            Self::User => &USER,
            Self::Group => &GROUP,
        }
    }

    fn key(self, org: OrgId, id: ScimId) -> Key {
        match self {
            Self::User => keys::scim_user(org, id),
            Self::Group => keys::scim_group(org, id),
        }
    }
}

/// The caller: an identity provider holding the current token of a live organization's
/// directory.
pub struct DirectoryCaller {
    directory: Directory,
    base_url: String,
    origin: Origin,
}

impl FromRequestParts<Services> for DirectoryCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, s: &Services) -> Result<Self, Self::Rejection> {
        let refused =
            || ScimError::status(StatusCode::UNAUTHORIZED, "send the directory's token: Authorization: Bearer gws_…");
        let token = shared::auth::bearer(parts).filter(|t| t.starts_with(TOKEN_PREFIX)).ok_or_else(refused)?;
        let hash = shared::auth::hash_secret(token);
        let item = s.store.get(&keys::scim_token(&hash)).await?.ok_or_else(refused)?;
        let org: OrgId =
            item.data.get("org_id").and_then(Value::as_str).and_then(|o| o.parse().ok()).ok_or_else(refused)?;
        let (directory, _) = directory::load(s.store.as_ref(), org).await?.ok_or_else(refused)?;
        // A token replaced by a rotation whose lookup item outlived it.
        if directory.token_hash.as_deref() != Some(hash.as_str())
            || s.store.get(&keys::organization(org)).await?.is_none()
        {
            return Err(refused());
        }
        let origin = parts.extensions.get::<shared::http::RequestContext>().map(|c| c.origin()).unwrap_or_default();
        Ok(Self { directory, base_url: directory::base_url(s), origin })
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// A body: `application/scim+json` or `application/json`, a JSON object.
fn body_json(headers: &HeaderMap, body: &Bytes) -> Result<Value, ScimError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence != SCIM_JSON && essence != "application/json" {
        return Err(ScimError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/scim+json (or application/json)",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ScimError::bad(ScimType::InvalidSyntax, "the body is not valid JSON"))?;
    if !value.is_object() {
        return Err(ScimError::bad(ScimType::InvalidSyntax, "the body must be a JSON object"));
    }
    Ok(value)
}

/// The resource as SCIM shows it: `schemas`, `id`, its attributes, `meta`.
fn render(kind: Kind, resource: &DirectoryResource, version: u64, base_url: &str) -> Value {
    let resource_type = kind.resource_type();
    let mut out = Map::new();
    out.insert("schemas".into(), json!([resource_type.schema]));
    out.insert("id".into(), json!(resource.id.to_string()));
    out.extend(resource.attributes.clone());
    out.insert(
        "meta".into(),
        json!({
            "resourceType": resource_type.name,
            "created": shared::scim::rfc3339(resource.created_at_ms),
            "lastModified": shared::scim::rfc3339(resource.updated_at_ms),
            "location": format!("{base_url}{}/{}", resource_type.endpoint, resource.id),
            "version": etag(version),
        }),
    );
    Value::Object(out)
}

fn with_etag(mut response: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `If-Match` (RFC 7644 section 3.14, RFC 9110 section 13.1.1): `*`, or one of the listed
/// ETags (weak or strong form) must be the current version.
fn check_if_match(headers: &HeaderMap, version: u64) -> Result<(), ScimError> {
    let Some(wanted) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let current = version.to_string();
    let ok = wanted
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == current);
    if ok {
        Ok(())
    } else {
        Err(ScimError::status(StatusCode::PRECONDITION_FAILED, "the resource changed: read it again for its ETag"))
    }
}

async fn load(s: &Services, org: OrgId, kind: Kind, id: &str) -> Result<(DirectoryResource, u64), ScimError> {
    let id: ScimId = id.parse().map_err(|_| ScimError::not_found())?;
    let item = s.store.get(&kind.key(org, id)).await?.ok_or_else(ScimError::not_found)?;
    Ok((item.record()?, item.version))
}

async fn audit(s: &Services, caller: &DirectoryCaller, action: AuditAction, id: ScimId, detail: Value) {
    let event = NewEvent::new(Actor::Directory, action, caller.origin.clone()).target(id).detail(detail);
    let stream = AuditStream::Organization(caller.directory.org_id);
    shared::audit::logged_after_commit(s.audit(stream, event).await, action.as_str());
}

/// The query parameters of a list (RFC 7644 section 3.4.2), names in any case.
#[derive(Default)]
struct ListParams {
    filter: Option<String>,
    start_index: usize,
    count: usize,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// `startIndex` below 1 is 1, a negative `count` is 0 (RFC 7644 section 3.4.2.4); `count`
/// is at most [`MAX_RESULTS`].
fn paging(start_index: Option<i64>, count: Option<i64>) -> (usize, usize) {
    let start = usize::try_from(start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = usize::try_from(count.unwrap_or(100).max(0)).unwrap_or(0).min(MAX_RESULTS);
    (start, count)
}

fn query_params(raw: Option<&str>) -> Result<ListParams, ScimError> {
    let mut p = ListParams::default();
    let (mut start, mut count) = (None, None);
    let number = |name: &str, v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| ScimError::bad(ScimType::InvalidValue, format!("`{name}` must be an integer")))
    };
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.to_ascii_lowercase().as_str() {
            "filter" => p.filter = Some(value.into_owned()),
            "startindex" => start = Some(number("startIndex", &value)?),
            "count" => count = Some(number("count", &value)?),
            "attributes" => p.attributes = split_list(&value),
            "excludedattributes" => p.excluded = split_list(&value),
            _ => {}
        }
    }
    (p.start_index, p.count) = paging(start, count);
    Ok(p)
}

async fn list_answer(
    s: &Services,
    caller: &DirectoryCaller,
    kinds: &[Kind],
    p: ListParams,
) -> Result<Response, ScimError> {
    let org = caller.directory.org_id;
    let parsed = p.filter.as_deref().map(filter::parse).transpose()?;
    let mut matched = Vec::new();
    for &kind in kinds {
        let resource_type = kind.resource_type();
        let stored = match kind {
            Kind::User => provisioning::users_of(s, org).await?,
            Kind::Group => {
                let query =
                    shared::store::Query::partition(keys::org_partition(org)).begins_with(keys::SCIM_GROUP_PREFIX);
                let items = s.store.query_all(query).await?;
                items.iter().map(|i| Ok::<_, StoreError>((i.record()?, i.version))).collect::<Result<Vec<_>, _>>()?
            }
        };
        for (resource, version) in &stored {
            let rendered = render(kind, resource, *version, &caller.base_url);
            if parsed.as_ref().map(|f| filter::matches(resource_type, &rendered, f)).transpose()?.unwrap_or(true) {
                matched.push((resource_type, rendered));
            }
        }
    }
    let total = matched.len();
    let page: Vec<Value> = matched
        .into_iter()
        .skip(p.start_index - 1)
        .take(p.count)
        .map(|(resource_type, r)| schema::project(resource_type, r, &p.attributes, &p.excluded))
        .collect();
    let body = json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": p.start_index,
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    Ok(scim_json(StatusCode::OK, &body))
}

async fn list(
    State(s): State<Services>,
    caller: DirectoryCaller,
    RawQuery(raw): RawQuery,
    kind: Kind,
) -> Result<Response, ScimError> {
    list_answer(&s, &caller, &[kind], query_params(raw.as_deref())?).await
}

/// `POST /.search` (RFC 7644 section 3.4.3): the list's parameters in a body; at the
/// root, over users and groups at once (users first).
async fn search(
    State(s): State<Services>,
    caller: DirectoryCaller,
    headers: HeaderMap,
    body: Bytes,
    kinds: &[Kind],
) -> Result<Response, ScimError> {
    let body = body_json(&headers, &body)?;
    let field = |name: &str| {
        body.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))).map(|(_, v)| v)
    };
    let strings = |name: &str| -> Result<Vec<String>, ScimError> {
        match field(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, format!("`{name}` lists strings")))
                })
                .collect(),
            Some(Value::String(s)) => Ok(split_list(s)),
            Some(_) => Err(ScimError::bad(ScimType::InvalidValue, format!("`{name}` lists strings"))),
        }
    };
    let number = |name: &str| -> Result<Option<i64>, ScimError> {
        match field(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, format!("`{name}` must be an integer"))),
        }
    };
    let filter = match field("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.clone()),
        Some(_) => return Err(ScimError::bad(ScimType::InvalidFilter, "`filter` must be a string")),
    };
    let (start_index, count) = paging(number("startIndex")?, number("count")?);
    let p = ListParams {
        filter,
        start_index,
        count,
        attributes: strings("attributes")?,
        excluded: strings("excludedAttributes")?,
    };
    list_answer(&s, &caller, kinds, p).await
}

async fn read(
    State(s): State<Services>,
    caller: DirectoryCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    kind: Kind,
) -> Result<Response, ScimError> {
    let p = query_params(raw.as_deref())?;
    let (resource, version) = load(&s, caller.directory.org_id, kind, &id).await?;
    let not_modified = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|tags| {
        tags.split(',')
            .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/").trim_matches('"') == version.to_string())
    });
    if not_modified {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), version));
    }
    let rendered = render(kind, &resource, version, &caller.base_url);
    let body = schema::project(kind.resource_type(), rendered, &p.attributes, &p.excluded);
    Ok(with_etag(scim_json(StatusCode::OK, &body), version))
}

/// Checks a group's members: users of this directory only.
async fn check_members(s: &Services, org: OrgId, attributes: &Map<String, Value>) -> Result<(), ScimError> {
    let Some(members) = attributes.get("members").and_then(Value::as_array) else { return Ok(()) };
    for member in members {
        if member.get("type").and_then(Value::as_str).is_some_and(|t| !t.eq_ignore_ascii_case("User")) {
            return Err(ScimError::bad(ScimType::InvalidValue, "only users can be members of a group here"));
        }
        let id = member.get("value").and_then(Value::as_str).unwrap_or_default();
        let exists = match id.parse::<ScimId>() {
            Ok(id) => s.store.get(&keys::scim_user(org, id)).await?.is_some(),
            Err(_) => false,
        };
        if !exists {
            return Err(ScimError::bad(ScimType::InvalidValue, format!("no user `{id}` in this directory")));
        }
    }
    Ok(())
}

/// After a write: the memberships of the users it may concern.
async fn sync_after(
    s: &Services,
    caller: &DirectoryCaller,
    kind: Kind,
    before: Option<&DirectoryResource>,
    after: Option<&DirectoryResource>,
) -> Result<(), ScimError> {
    let directory = &caller.directory;
    match kind {
        Kind::User => {
            if let Some(user) = after {
                let groups = provisioning::groups(s, directory.org_id).await?;
                provisioning::sync_user(s, directory, &groups, user.id, &caller.origin).await?;
            }
        }
        Kind::Group => {
            let mapped = |g: Option<&DirectoryResource>| {
                g.is_some_and(|g| directory.group_roles.iter().any(|m| m.group.eq_ignore_ascii_case(g.display_name())))
            };
            if !mapped(before) && !mapped(after) {
                return Ok(());
            }
            let mut ids: Vec<String> = before.map(DirectoryResource::member_ids).unwrap_or_default();
            for id in after.map(DirectoryResource::member_ids).unwrap_or_default() {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let groups = provisioning::groups(s, directory.org_id).await?;
            for id in ids.iter().filter_map(|i| i.parse::<ScimId>().ok()) {
                provisioning::sync_user(s, directory, &groups, id, &caller.origin).await?;
            }
        }
    }
    Ok(())
}

/// The writes that keep `userName` unique when a user's changes from `old` to `new`.
fn user_name_ops(org: OrgId, id: ScimId, old: Option<&str>, new: &str) -> Vec<TxOp> {
    let mut ops = Vec::new();
    if old.is_some_and(|o| o.to_lowercase() == new.to_lowercase()) {
        return ops;
    }
    if let Some(old) = old {
        ops.push(TxOp::Delete(Delete::new(keys::scim_user_name(org, old))));
    }
    let holder = Item::new(keys::scim_user_name(org, new)).with("scim_id", id.to_string());
    ops.push(TxOp::Put(Put::new(holder).if_not_exists()));
    ops
}

/// A failed write: `userName` taken when the write claimed one, else a concurrent change.
fn taken(e: StoreError, claimed_user_name: bool) -> ScimError {
    if e.is_condition_failure() && claimed_user_name {
        ScimError::uniqueness("another user of this directory has this userName")
    } else if e.is_condition_failure() {
        changed_meanwhile()
    } else {
        e.into()
    }
}

fn changed_meanwhile() -> ScimError {
    ScimError::status(StatusCode::CONFLICT, "the resource changed meanwhile; read it again and retry")
}

/// How often a `PUT` or `PATCH` without `If-Match` is applied again over a concurrent
/// change (providers send a group's membership changes in parallel).
const WRITE_ATTEMPTS: usize = 8;

async fn answer_with(
    s: &Services,
    caller: &DirectoryCaller,
    kind: Kind,
    id: ScimId,
    status: StatusCode,
) -> Result<Response, ScimError> {
    let (resource, version) = load(s, caller.directory.org_id, kind, &id.to_string()).await?;
    let body = render(kind, &resource, version, &caller.base_url);
    Ok(with_etag(scim_json(status, &body), version))
}

async fn create(
    State(s): State<Services>,
    caller: DirectoryCaller,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Result<Response, ScimError> {
    let org = caller.directory.org_id;
    let attributes = schema::normalize(kind.resource_type(), &body_json(&headers, &body)?)?;
    if kind == Kind::Group {
        check_members(&s, org, &attributes).await?;
    }
    let now = s.clock.now_ms();
    let resource = DirectoryResource {
        id: ScimId::new(),
        attributes,
        created_at_ms: now,
        updated_at_ms: now,
        user_id: None,
        granted: Default::default(),
    };
    let mut ops = vec![TxOp::Put(Put::new(Item::from_record(kind.key(org, resource.id), &resource)?).if_not_exists())];
    if kind == Kind::User {
        ops.extend(user_name_ops(org, resource.id, None, resource.user_name()));
    }
    s.store.transact(ops).await.map_err(|e| taken(e, kind == Kind::User))?;
    sync_after(&s, &caller, kind, None, Some(&resource)).await?;
    let (stored, version) = load(&s, org, kind, &resource.id.to_string()).await?;
    let (action, detail) = match kind {
        Kind::User => (AuditAction::ScimUserCreated, json!({"active": stored.active(), "user_id": stored.user_id})),
        Kind::Group => (
            AuditAction::ScimGroupChanged,
            json!({"name": stored.display_name(), "members": stored.member_ids().len()}),
        ),
    };
    audit(&s, &caller, action, stored.id, detail).await;
    let body = render(kind, &stored, version, &caller.base_url);
    let mut response = with_etag(scim_json(StatusCode::CREATED, &body), version);
    // RFC 7644 section 3.3: the new resource's URI, as in `meta.location`.
    if let Some(location) = body["meta"]["location"].as_str().and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Writes `attributes` over the resource (a `PUT`, or a `PATCH`'s result).
async fn write(
    s: &Services,
    caller: &DirectoryCaller,
    kind: Kind,
    before: DirectoryResource,
    version: u64,
    attributes: Map<String, Value>,
) -> Result<Response, ScimError> {
    let org = caller.directory.org_id;
    if kind == Kind::Group {
        check_members(s, org, &attributes).await?;
    }
    let after = DirectoryResource { attributes, updated_at_ms: s.clock.now_ms(), ..before.clone() };
    if after.attributes != before.attributes {
        let mut item = Item::from_record(kind.key(org, after.id), &after)?;
        item.version = version;
        let mut ops = vec![TxOp::Put(Put::new(item).if_unchanged())];
        if kind == Kind::User {
            ops.extend(user_name_ops(org, after.id, Some(before.user_name()), after.user_name()));
        }
        let claimed = ops.len() > 1;
        s.store.transact(ops).await.map_err(|e| taken(e, claimed))?;
        let (action, detail) = match kind {
            Kind::User => (AuditAction::ScimUserUpdated, json!({"active": after.active(), "user_id": after.user_id})),
            Kind::Group => (
                AuditAction::ScimGroupChanged,
                json!({"name": after.display_name(), "members": after.member_ids().len()}),
            ),
        };
        audit(s, caller, action, after.id, detail).await;
    }
    // Synced even when nothing changed: a retried request finishes what a failed one began.
    sync_after(s, caller, kind, Some(&before), Some(&after)).await?;
    answer_with(s, caller, kind, after.id, StatusCode::OK).await
}

async fn replace(
    State(s): State<Services>,
    caller: DirectoryCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Result<Response, ScimError> {
    let body = body_json(&headers, &body)?;
    let attributes = schema::normalize(kind.resource_type(), &body)?;
    write_current(&s, &caller, kind, &id, &headers, |_| Ok(attributes.clone())).await
}

async fn modify(
    State(s): State<Services>,
    caller: DirectoryCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Result<Response, ScimError> {
    let operations = patch::parse(&body_json(&headers, &body)?)?;
    // Operations are relative to the resource: over a concurrent change they apply again.
    write_current(&s, &caller, kind, &id, &headers, |before| {
        let mut attributes = before.attributes.clone();
        patch::apply(kind.resource_type(), &mut attributes, &operations)?;
        schema::normalize(kind.resource_type(), &Value::Object(attributes))
    })
    .await
}

/// Reads the resource, checks `If-Match`, and [`write`]s what `attributes` makes of it.
/// Without `If-Match` a concurrent change is read again and the request applied over it, up
/// to [`WRITE_ATTEMPTS`] times; with it, the change is refused (412 from the check, or 409).
async fn write_current(
    s: &Services,
    caller: &DirectoryCaller,
    kind: Kind,
    id: &str,
    headers: &HeaderMap,
    attributes: impl Fn(&DirectoryResource) -> Result<Map<String, Value>, ScimError>,
) -> Result<Response, ScimError> {
    for _ in 0..WRITE_ATTEMPTS {
        let (before, version) = load(s, caller.directory.org_id, kind, id).await?;
        check_if_match(headers, version)?;
        let after = attributes(&before)?;
        match write(s, caller, kind, before, version, after).await {
            Err(e) if e == changed_meanwhile() && !headers.contains_key(header::IF_MATCH) => continue,
            answer => return answer,
        }
    }
    Err(changed_meanwhile())
}

async fn remove(
    State(s): State<Services>,
    caller: DirectoryCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    kind: Kind,
) -> Result<Response, ScimError> {
    let org = caller.directory.org_id;
    let (resource, version) = load(&s, org, kind, &id).await?;
    check_if_match(&headers, version)?;
    // The user's access ends before their record goes: a failure here leaves the record for
    // the provider's retry, which deprovisions again (each step is idempotent).
    if kind == Kind::User
        && let Some(user) = resource.user_id
    {
        let done = provisioning::deprovision(&s, org, user).await?;
        let detail = serde_json::to_value(&done).unwrap_or_default();
        audit(&s, &caller, AuditAction::ScimUserDeprovisioned, resource.id, detail).await;
    }
    if kind == Kind::User {
        forget_member(&s, org, &resource.id.to_string()).await?;
    }
    let mut ops =
        vec![TxOp::Delete(Delete::new(kind.key(org, resource.id)).when(shared::store::Condition::VersionIs(version)))];
    if kind == Kind::User {
        ops.push(TxOp::Delete(Delete::new(keys::scim_user_name(org, resource.user_name()))));
        if let Some(user) = resource.user_id {
            ops.push(TxOp::Delete(Delete::new(keys::scim_link(org, user))));
        }
    }
    s.store.transact(ops).await.map_err(|e| taken(e, false))?;
    match kind {
        Kind::User => {
            audit(&s, &caller, AuditAction::ScimUserDeleted, resource.id, json!({"user_id": resource.user_id})).await;
        }
        Kind::Group => {
            let detail = json!({"name": resource.display_name(), "deleted": true});
            audit(&s, &caller, AuditAction::ScimGroupChanged, resource.id, detail).await;
            sync_after(&s, &caller, kind, Some(&resource), None).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Takes a deleted user out of every group that lists them.
async fn forget_member(s: &Services, org: OrgId, id: &str) -> Result<(), ScimError> {
    for group in provisioning::groups(s, org).await? {
        if !group.member_ids().iter().any(|m| m == id) {
            continue;
        }
        let key = keys::scim_group(org, group.id);
        // Re-read for the version: groups are written by other requests too.
        let Some(item) = s.store.get(&key).await? else { continue };
        let mut current: DirectoryResource = item.record()?;
        if let Some(Value::Array(members)) = current.attributes.get_mut("members") {
            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
            if members.is_empty() {
                current.attributes.remove("members");
            }
        }
        let mut changed = Item::from_record(key, &current)?;
        changed.version = item.version;
        if let Err(e) = s.store.put(Put::new(changed).if_unchanged()).await {
            tracing::warn!(error = %e, %org, group = %group.id, "could not take a deleted user out of a group");
        }
    }
    Ok(())
}

async fn service_provider_config(_: DirectoryCaller, State(s): State<Services>) -> Response {
    scim_json(StatusCode::OK, &schema::service_provider_config(&directory::base_url(&s)))
}

fn list_of(resources: Vec<Value>) -> Value {
    json!({"schemas": [LIST_RESPONSE_SCHEMA], "totalResults": resources.len(), "startIndex": 1,
           "itemsPerPage": resources.len(), "Resources": resources})
}

async fn resource_types(caller: DirectoryCaller) -> Response {
    let all = RESOURCE_TYPES.iter().map(|t| t.resource_type_document(&caller.base_url)).collect();
    scim_json(StatusCode::OK, &list_of(all))
}

async fn resource_type(caller: DirectoryCaller, Path(name): Path<String>) -> Result<Response, ScimError> {
    let t = RESOURCE_TYPES.iter().find(|t| t.name == name).ok_or_else(ScimError::not_found)?;
    Ok(scim_json(StatusCode::OK, &t.resource_type_document(&caller.base_url)))
}

async fn schemas(caller: DirectoryCaller) -> Response {
    let all = RESOURCE_TYPES.iter().map(|t| t.schema_document(&caller.base_url)).collect();
    scim_json(StatusCode::OK, &list_of(all))
}

async fn schema_by_id(caller: DirectoryCaller, Path(id): Path<String>) -> Result<Response, ScimError> {
    let t = RESOURCE_TYPES.iter().find(|t| t.schema == id).ok_or_else(ScimError::not_found)?;
    Ok(scim_json(StatusCode::OK, &t.schema_document(&caller.base_url)))
}

async fn unknown(_: DirectoryCaller) -> ScimError {
    ScimError::status(StatusCode::NOT_FOUND, "no SCIM endpoint at this path")
}
