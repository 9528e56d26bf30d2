//! The account's feature flags, evaluated for it (what a frontend reads).

use axum::extract::State;
use serde::Serialize;
use shared::error::ApiError;
use shared::http::Json;
use shared::services::Services;
use shared::tenancy::{Action, Tenant};

/// The account's feature flags, evaluated (for the frontend).
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlagValues {
    /// Each flag, by key: on or off, its variant, and why.
    pub flags: std::collections::BTreeMap<String, shared::flags::Evaluation>,
}

/// The account's feature flags, evaluated for it.
#[utoipa::path(get, path = "/accounts/{account_id}/flags", tag = "tenancy", security(("bearer" = [])),
    params(("account_id" = String, Path)), responses((status = 200, body = FlagValues)))]
pub(crate) async fn account_flags(
    State(s): State<Services>,
    Tenant(scope): Tenant,
) -> Result<Json<FlagValues>, ApiError> {
    scope.require(Action::ReadAccount)?;
    let flags = s.flags().for_account(scope.account_id()).await?;
    Ok(Json(FlagValues { flags }))
}
