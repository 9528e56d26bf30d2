//! The account's audit log, readable by owners and admins.

use axum::extract::State;
use shared::audit::AuditPage;
use shared::error::{ApiError, Problem};
use shared::http::{Json, PageParams, Query};
use shared::services::Services;
use shared::tenancy::{Action, Tenant};

/// The account's audit events, newest first.
#[utoipa::path(get, path = "/accounts/{account_id}/audit", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path), PageParams),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn account_audit(
    State(s): State<Services>,
    Tenant(scope): Tenant,
    Query(p): Query<PageParams>,
) -> Result<Json<AuditPage>, ApiError> {
    scope.require(Action::ReadAudit)?;
    let stream = shared::audit::AuditStream::Account(scope.account_id());
    Ok(Json(shared::audit::page_for(s.store.as_ref(), stream, p.limit(), p.cursor()?).await?))
}
