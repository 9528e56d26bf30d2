//! Account data exports (GDPR): the request, and the download by the emailed link.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::hash_secret;
use shared::error::{ApiError, Problem};
use shared::exports::{Download, ExportRecord, ExportSubject};
use shared::http::{Path, Query, RequestContext, json_with_status};
use shared::id::ExportId;
use shared::services::Services;
use shared::tenancy::{Action, Tenant};

/// A started export.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExportStarted {
    /// The export; a link to it is emailed when it is ready.
    pub export_id: String,
}

/// Starts an export of all the account's data; the requester gets a download link by email.
#[utoipa::path(post, path = "/accounts/{account_id}/export", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 202, body = ExportStarted), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn export_account(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
) -> Result<Response, ApiError> {
    scope.require(Action::ExportData)?;
    let user = scope.require_user()?;
    let id = shared::gdpr::start_export(&s, ExportSubject::Account(scope.account_id()), user).await?;
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::AccountExportRequested, Some(id.to_string()), ctx.origin(), json!({})).await,
        AuditAction::AccountExportRequested.as_str(),
    );
    Ok(json_with_status(StatusCode::ACCEPTED, &ExportStarted { export_id: id.to_string() }))
}

/// The download link's token.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct DownloadParams {
    /// The `token` of the emailed link.
    pub token: String,
}

fn no_export() -> ApiError {
    ApiError::Gone { code: "export_unavailable", detail: "the link is invalid or has expired".into() }
}

/// Downloads an export with the token of its emailed link (the link is the credential, so
/// it works from an email client): the JSON document, or a redirect to short-lived storage.
#[utoipa::path(get, path = "/exports/{export_id}", tag = "tenancy", params(("export_id" = String, Path), DownloadParams),
    responses((status = 200, description = "The export, JSON", content_type = "application/json"),
              (status = 302, description = "To the stored document"),
              (status = 410, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn download_export(
    State(s): State<Services>,
    Path(id): Path<ExportId>,
    Query(p): Query<DownloadParams>,
) -> Result<Response, ApiError> {
    let record: ExportRecord = {
        use shared::store::StoreExt as _;
        s.store.get_record(&shared::exports::key(id)).await?.ok_or_else(no_export)?
    };
    let presented = hash_secret(&p.token);
    let matches =
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), record.token_hash.as_bytes()).is_ok();
    if record.ready_at_ms.is_none() || record.token_hash.is_empty() || !matches {
        return Err(no_export());
    }
    match s.exports.download(id).await.map_err(ApiError::Unavailable)? {
        Download::Bytes(bytes) => {
            let mut res = bytes.into_response();
            let headers = res.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"export-{id}.json\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(res)
        }
        Download::Redirect(url) => Ok(Redirect::to(&url).into_response()),
        Download::Missing => Err(no_export()),
    }
}
