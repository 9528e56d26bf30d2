//! The customer-success routes (the operator token, or a staff member signed in: see
//! [`Staff`]): every account's latest health, riskiest first, as JSON pages or one CSV file,
//! and one account's health with its daily history (`shared::account_health`, recorded by
//! the daily rollup). The console page (`console.rs`) reads them.

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

use crate::ops::Staff;

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
    /// `risk` (default: dormant, then at risk, then active) or `mrr` (highest monthly
    /// recurring revenue first, then by risk).
    #[param(pattern = "^(risk|mrr)$")]
    pub sort: Option<String>,
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
    /// Dormant first, then at risk, then active (or by MRR, with `sort=mrr`).
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
        h.mrr_minor.to_string(),
        h.currency.clone().unwrap_or_default(),
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

const CSV_HEADER: &str = "account_id,name,health,plan,payment,mrr_minor,currency,trial_days_left,last_activity,events_7d,events_30d,\
active_users_30d,seats_used,seats_allowed,days_to_first_value,features_30d,upgrade_suggested,day";

/// Every account's latest health, riskiest first or by MRR (operator token or staff).
#[utoipa::path(get, path = "/ops/accounts", operation_id = "list_account_health", tag = "operations",
    params(AccountsParams), security(("operator_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "A page (JSON), or every matching account (`format=csv`)",
            content((AccountHealthPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A cursor this server did not issue (`invalid_cursor`); a plan not in the catalogue, or `format=csv` with `cursor` or `limit` (`invalid_query`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A signed-in user who is not staff (`not_staff`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(_: Staff, State(s): State<Services>, Query(p): Query<AccountsParams>) -> Result<Response, ApiError> {
    let query_error = |detail: String| ApiError::BadRequest { code: "invalid_query", detail };
    if let Some(plan) = &p.plan {
        let known: Vec<&str> = std::iter::once("free").chain(s.plans.plans.iter().map(|p| p.id.as_str())).collect();
        if !known.contains(&plan.as_str()) {
            let shown: String = plan.chars().take(64).collect();
            return Err(query_error(format!("no plan named {shown:?} (plans: {})", known.join(", "))));
        }
    }
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(query_error("format is json or csv".into())),
    };
    let by_mrr = match p.sort.as_deref() {
        None | Some("risk") => false,
        Some("mrr") => true,
        Some(_) => return Err(query_error("sort is risk or mrr".into())),
    };
    if csv && (p.cursor.is_some() || p.limit.is_some()) {
        return Err(query_error("format=csv is every matching account in one file: leave out cursor and limit".into()));
    }
    let limit = p.limit.unwrap_or(50);
    if csv || by_mrr {
        let mut all = matching(&s, &p).await?;
        if by_mrr {
            // Stable: within one MRR, the riskiest first, as the index gave them.
            all.sort_by_key(|h| std::cmp::Reverse(h.mrr_minor));
        }
        if csv {
            let mut body = format!("{CSV_HEADER}\r\n");
            for h in &all {
                body.push_str(&csv_row(h));
                body.push_str("\r\n");
            }
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            headers
                .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"accounts.csv\""));
            return Ok(response);
        }
        // Sorted in memory, so the cursor is a position in that order.
        let start = match p.cursor.as_deref() {
            None => 0,
            Some(c) => c.strip_prefix(MRR_CURSOR).and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| {
                ApiError::BadRequest { code: "invalid_cursor", detail: "the cursor is not valid".into() }
            })?,
        };
        let end = start.saturating_add(limit as usize).min(all.len());
        let next_cursor = (end < all.len()).then(|| format!("{MRR_CURSOR}{end}"));
        let accounts = all.get(start..end).map(<[AccountHealth]>::to_vec).unwrap_or_default();
        return Ok(Json(AccountHealthPage { accounts, next_cursor }).into_response());
    }
    let cursor = shared::http::PageParams { limit: p.limit, cursor: p.cursor.clone() }.cursor()?;
    let page = s.store.query(by_risk(&p, limit, cursor)).await?;
    let mut accounts = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let record: CurrentHealth = item.record()?;
        if keep(&p, &record.health) {
            accounts.push(record.health);
        }
    }
    Ok(Json(AccountHealthPage { accounts, next_cursor: page.next.map(|c| c.encode()) }).into_response())
}

/// The cursor of a page sorted by MRR: `mrr.<position>`.
const MRR_CURSOR: &str = "mrr.";

/// The health index, riskiest first, from `after`; only `p.health`'s state when it is set.
fn by_risk(p: &AccountsParams, limit: u32, after: Option<Cursor>) -> StoreQuery {
    let q = StoreQuery::index(Index::Gsi1, keys::ACCOUNT_HEALTH_INDEX).limit(limit).after(after);
    match p.health {
        Some(status) => q.begins_with(format!("{}#", status.rank())),
        None => q,
    }
}

/// Every account `p` selects, riskiest first.
async fn matching(s: &Services, p: &AccountsParams) -> Result<Vec<AccountHealth>, ApiError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.store.query(by_risk(p, 500, cursor)).await?;
        for item in &page.items {
            let record: CurrentHealth = item.record()?;
            if keep(p, &record.health) {
                out.push(record.health);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
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

/// One account's health, with up to 90 days of daily records (operator token or staff).
#[utoipa::path(get, path = "/ops/accounts/{account_id}/health", operation_id = "get_account_health", tag = "operations",
    params(("account_id" = String, Path)), security(("operator_token" = []), ("bearer" = [])),
    responses((status = 200, body = AccountHealthDetail),
              (status = 403, description = "A signed-in user who is not staff (`not_staff`)", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such account, or no health recorded yet (`not_found`)", body = Problem, content_type = "application/problem+json")))]
pub async fn detail(
    _: Staff,
    State(s): State<Services>,
    Path(account): Path<AccountId>,
) -> Result<Json<AccountHealthDetail>, ApiError> {
    let current = account_health::current(s.store.as_ref(), account).await?.ok_or(ApiError::NotFound)?;
    let history = account_health::history(s.store.as_ref(), account, 90).await?;
    Ok(Json(AccountHealthDetail { current: current.health, dormant_since_ms: current.dormant_since_ms, history }))
}
