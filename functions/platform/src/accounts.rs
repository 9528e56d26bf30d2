//! The customer-success routes (operator token): every account's latest health, riskiest
//! first, as JSON pages or one CSV file, and one account's health with its daily history
//! (`shared::account_health`, recorded by the daily rollup).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::account_health::{self, AccountHealth, CurrentHealth, HealthStatus};
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, Query};
use shared::id::AccountId;
use shared::keys;
use shared::services::Services;
use shared::store::{Cursor, Index, Query as StoreQuery};
use utoipa::{IntoParams, ToSchema};

use crate::ops::Operator;

/// Which accounts to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AccountsParams {
    /// Only accounts in this state.
    pub health: Option<HealthStatus>,
    /// Only accounts on this plan (`free`, `starter`...).
    #[param(max_length = 64)]
    pub plan: Option<String>,
    /// Only accounts in a trial (`true`) or not in one (`false`).
    pub trial: Option<bool>,
    /// `json` (default: pages) or `csv` (every matching account, one file).
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
    /// Accounts read per page (1 to 200, default 50); `plan` and `trial` narrow each page,
    /// which can then hold fewer (follow `next_cursor`).
    #[serde(default, deserialize_with = "shared::http::bounded::<_, 1, 200>")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of accounts' health.
#[derive(Serialize, ToSchema)]
pub struct AccountHealthPage {
    /// Dormant first, then at risk, then active.
    pub accounts: Vec<AccountHealth>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

fn keep(p: &AccountsParams, h: &AccountHealth) -> bool {
    p.plan.as_ref().is_none_or(|plan| &h.plan == plan) && p.trial.is_none_or(|t| h.trial_days_left.is_some() == t)
}

fn csv_field(value: &str) -> String {
    // RFC 4180 quoting; a leading =, +, - or @ is neutralised so a spreadsheet never reads
    // an account's name as a formula.
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

fn csv_row(h: &AccountHealth) -> String {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        h.account_id.to_string(),
        csv_field(&h.name),
        h.status.as_str().to_owned(),
        csv_field(&h.plan),
        h.payment.clone(),
        opt(h.trial_days_left),
        h.last_activity_ms.map(account_health::rfc3339).unwrap_or_default(),
        h.events_7d.to_string(),
        h.events_30d.to_string(),
        h.active_users_30d.to_string(),
        h.seats.used.to_string(),
        h.seats.allowed.to_string(),
        opt(h.time_to_first_value_ms.map(|ms| ms / account_health::DAY_MS)),
        csv_field(&h.features_30d.join(" ")),
        csv_field(&h.upgrade_suggested.join(" ")),
        h.day.clone(),
    ]
    .join(",")
}

const CSV_HEADER: &str = "account_id,name,health,plan,payment,trial_days_left,last_activity,events_7d,events_30d,\
active_users_30d,seats_used,seats_allowed,days_to_first_value,features_30d,upgrade_suggested,day";

/// Every account's latest health, riskiest first (operator token).
#[utoipa::path(get, path = "/ops/accounts", operation_id = "list_account_health", tag = "operations",
    params(AccountsParams), security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page (JSON), or every matching account (`format=csv`)",
            content((AccountHealthPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A cursor this server did not issue (`invalid_cursor`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    _: Operator,
    State(s): State<Services>,
    Query(p): Query<AccountsParams>,
) -> Result<Response, ApiError> {
    if p.plan.as_ref().is_some_and(|plan| plan.chars().count() > 64) {
        return Err(ApiError::BadRequest { code: "invalid_query", detail: "plan is at most 64 characters".into() });
    }
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::BadRequest { code: "invalid_query", detail: "format is json or csv".into() }),
    };
    let query = |limit: u32, after: Option<Cursor>| {
        let q = StoreQuery::index(Index::Gsi1, keys::ACCOUNT_HEALTH_INDEX).limit(limit).after(after);
        match p.health {
            Some(status) => q.begins_with(format!("{}#", status.rank())),
            None => q,
        }
    };
    if csv {
        let mut body = format!("{CSV_HEADER}\r\n");
        let mut cursor = None;
        loop {
            let page = s.store.query(query(500, cursor)).await?;
            for item in &page.items {
                let record: CurrentHealth = item.record()?;
                if keep(&p, &record.health) {
                    body.push_str(&csv_row(&record.health));
                    body.push_str("\r\n");
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut response = (StatusCode::OK, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"accounts.csv\""));
        return Ok(response);
    }
    let cursor = shared::http::PageParams { limit: p.limit, cursor: p.cursor.clone() }.cursor()?;
    let page = s.store.query(query(p.limit.unwrap_or(50), cursor)).await?;
    let mut accounts = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let record: CurrentHealth = item.record()?;
        if keep(&p, &record.health) {
            accounts.push(record.health);
        }
    }
    Ok(Json(AccountHealthPage { accounts, next_cursor: page.next.map(|c| c.encode()) }).into_response())
}

/// One account's health and its trend.
#[derive(Serialize, ToSchema)]
pub struct AccountHealthDetail {
    /// The latest record.
    pub current: AccountHealth,
    /// Since when it is dormant (Unix ms), while it is.
    pub dormant_since_ms: Option<i64>,
    /// The daily records, newest first (up to 90 days).
    pub history: Vec<AccountHealth>,
}

/// One account's health, with up to 90 days of daily records (operator token).
#[utoipa::path(get, path = "/ops/accounts/{account_id}/health", operation_id = "get_account_health", tag = "operations",
    params(("account_id" = String, Path)), security(("operator_token" = [])),
    responses((status = 200, body = AccountHealthDetail),
              (status = 404, description = "No such account, or no health recorded yet (`not_found`)", body = Problem, content_type = "application/problem+json")))]
pub async fn detail(
    _: Operator,
    State(s): State<Services>,
    Path(account): Path<AccountId>,
) -> Result<Json<AccountHealthDetail>, ApiError> {
    let current = account_health::current(s.store.as_ref(), account).await?.ok_or(ApiError::NotFound)?;
    let history = account_health::history(s.store.as_ref(), account, 90).await?;
    Ok(Json(AccountHealthDetail { current: current.health, dormant_since_ms: current.dormant_since_ms, history }))
}
