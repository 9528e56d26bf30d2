//! Account health for customer success: computed once a day per account from its product
//! events and its billing and tenancy state, so a trend is drawn from one record a day
//! instead of re-reading raw events.
//!
//! Per account and day ([`AccountHealth`]): activity (events by people in the last 7 and 30
//! days, active users), the resulting status (active; at risk after
//! `GROUNDWORK_HEALTH_AT_RISK_DAYS` without activity; dormant after
//! `GROUNDWORK_HEALTH_DORMANT_DAYS`), time to first value (from the account's creation to the
//! first `GROUNDWORK_VALUE_EVENT`), the features used (the `feature.used` events of the last 7
//! and 30 days), seat and plan-limit usage with the limits past
//! `GROUNDWORK_UPGRADE_THRESHOLD_PERCENT`, trial days left and payment state.
//!
//! Items, under the account's partition (so an account's export holds them and its erasure
//! removes them):
//! - `HEALTH#<yyyy-mm-dd>`: the day's record (kept 400 days, the trend);
//! - `HEALTH`: the latest, indexed for the operators' list (gsi1 `ACCOUNT_HEALTH` /
//!   `<risk rank>#<account>`: dormant first, then at risk, then active), with when the
//!   account turned dormant and whether its owners were told;
//! - `UPGRADE_TRIGGER#<limit>#<yyyy-mm>`: a limit crossed the threshold this month (once: its
//!   owners are emailed, and an `upgrade.suggested` product event records it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::billing::{API_BURST, API_MONTHLY_QUOTA, API_RATE, SubscriptionStatus};
use crate::id::AccountId;
use crate::jobs::Job;
use crate::keys;
use crate::mail::templates::Email;
use crate::product_events::ProductEvent;
use crate::services::Services;
use crate::store::{Index, Item, Put, Query, Store, StoreError, StoreExt as _, TxOp};
use crate::tenancy::{Account, Role};

/// A day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// How long day records are kept (as product events are).
pub const HISTORY_DAYS: i64 = 400;
/// The most events one account's daily pass reads (the counts say "at least" past it).
pub const MAX_EVENTS_READ: usize = 20_000;

/// The thresholds (`GROUNDWORK_HEALTH_*`, `GROUNDWORK_VALUE_EVENT`,
/// `GROUNDWORK_UPGRADE_THRESHOLD_PERCENT`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HealthConfig {
    /// `GROUNDWORK_VALUE_EVENT`: the event that marks an account's first value (default
    /// `project.created`, the example product's create event).
    #[serde(rename = "value_event", default = "default_value_event")]
    pub value_event: String,
    /// `GROUNDWORK_HEALTH_AT_RISK_DAYS`: days without activity before an account is at risk
    /// (default 7).
    #[serde(rename = "health_at_risk_days", default = "default_at_risk")]
    pub at_risk_days: u32,
    /// `GROUNDWORK_HEALTH_DORMANT_DAYS`: days without activity before it is dormant (default
    /// 30).
    #[serde(rename = "health_dormant_days", default = "default_dormant")]
    pub dormant_days: u32,
    /// `GROUNDWORK_UPGRADE_THRESHOLD_PERCENT`: the usage of a plan limit that suggests an
    /// upgrade (default 80).
    #[serde(rename = "upgrade_threshold_percent", default = "default_threshold")]
    pub upgrade_threshold_percent: u32,
}

fn default_value_event() -> String {
    "project.created".into()
}
fn default_at_risk() -> u32 {
    7
}
fn default_dormant() -> u32 {
    30
}
fn default_threshold() -> u32 {
    80
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            value_event: default_value_event(),
            at_risk_days: default_at_risk(),
            dormant_days: default_dormant(),
            upgrade_threshold_percent: default_threshold(),
        }
    }
}

impl HealthConfig {
    /// From the environment.
    ///
    /// # Errors
    /// A malformed number, at-risk days not below dormant days, a threshold outside 1 to 100.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        let config: Self = env.area("GROUNDWORK_")?;
        if ProductEvent::new(&config.value_event, AccountId::new(), None, 0).is_err() {
            return Err(crate::settings::ConfigError::Invalid {
                var: "GROUNDWORK_VALUE_EVENT".into(),
                value: config.value_event.chars().take(64).collect(),
                reason: "expected an event name, noun.verb in lower case (project.created)".into(),
            });
        }
        crate::settings::at_least("GROUNDWORK_HEALTH_AT_RISK_DAYS", config.at_risk_days, 1)?;
        crate::settings::at_least("GROUNDWORK_HEALTH_DORMANT_DAYS", config.dormant_days, config.at_risk_days + 1)?;
        crate::settings::at_least("GROUNDWORK_UPGRADE_THRESHOLD_PERCENT", config.upgrade_threshold_percent, 1)?;
        crate::settings::at_most("GROUNDWORK_UPGRADE_THRESHOLD_PERCENT", config.upgrade_threshold_percent, 100)?;
        Ok(config)
    }
}

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// People used it within the at-risk threshold.
    Active,
    /// No activity for the at-risk threshold.
    AtRisk,
    /// No activity for the dormant threshold.
    Dormant,
}

impl HealthStatus {
    /// The order of the operators' list: the riskiest first.
    pub fn rank(self) -> u8 {
        match self {
            Self::Dormant => 0,
            Self::AtRisk => 1,
            Self::Active => 2,
        }
    }

    /// The name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::AtRisk => "at_risk",
            Self::Dormant => "dormant",
        }
    }
}

/// How much of a limit is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// In use.
    pub used: u64,
    /// What the plan allows.
    pub allowed: u64,
}

/// One account's health on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountHealth {
    /// The account.
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// Its name.
    pub name: String,
    /// The day (UTC, `yyyy-mm-dd`).
    pub day: String,
    /// When it was computed (Unix ms).
    pub computed_at_ms: i64,
    /// Active, at risk or dormant.
    pub status: HealthStatus,
    /// The newest event by a person (Unix ms), if any.
    pub last_activity_ms: Option<i64>,
    /// Events by people in the last 7 days.
    pub events_7d: u64,
    /// Events by people in the last 30 days.
    pub events_30d: u64,
    /// People who did something in the last 30 days.
    pub active_users_30d: u64,
    /// When the value event first happened (Unix ms).
    pub first_value_ms: Option<i64>,
    /// From the account's creation to its first value (ms).
    pub time_to_first_value_ms: Option<i64>,
    /// Features (flags) used in the last 7 days.
    pub features_7d: Vec<String>,
    /// Features used in the last 30 days.
    pub features_30d: Vec<String>,
    /// The plan.
    pub plan: String,
    /// The subscription's status, if there is one.
    pub subscription_status: Option<SubscriptionStatus>,
    /// Whole days of trial left, while trialing.
    pub trial_days_left: Option<i64>,
    /// `ok`, `past_due`, `unpaid` or `none` (no subscription).
    pub payment: String,
    /// Monthly recurring revenue in the currency's minor unit (cents; see
    /// `BillingState::mrr`): 0 without a billing subscription.
    #[serde(default)]
    pub mrr_minor: i64,
    /// Its currency (ISO 4217, lower case), when there is a subscription.
    #[serde(default)]
    pub currency: Option<String>,
    /// Members against the plan's seats (`allowed` 0: unlimited).
    pub seats: Usage,
    /// Each plan limit with a known usage.
    pub limits: BTreeMap<String, Usage>,
    /// The limits past the upgrade threshold.
    pub upgrade_suggested: Vec<String>,
}

/// The latest record, with the dormancy bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentHealth {
    /// The latest day's record.
    #[serde(flatten)]
    pub health: AccountHealth,
    /// When the account turned dormant, while it is.
    pub dormant_since_ms: Option<i64>,
    /// The dormancy its owners were told of (`dormant_since_ms` then).
    pub dormant_notified_for_ms: Option<i64>,
}

/// A time as RFC 3339, UTC, to the second (`2026-01-02T03:04:05Z`).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `yyyy-mm-dd` of a time (UTC).
pub fn day_of(ms: i64) -> String {
    use chrono::Datelike as _;
    let date = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().date_naive();
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// The events of an account since `since_ms`, newest first (at most [`MAX_EVENTS_READ`]).
async fn events_between(
    store: &dyn Store,
    account: AccountId,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<ProductEvent>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let query = Query::partition(keys::account_partition(account))
            .begins_with(keys::PRODUCT_EVENT_PREFIX)
            .descending()
            .limit(500)
            .after(cursor);
        let page = store.query(query).await?;
        for item in &page.items {
            let event: ProductEvent = item.record()?;
            if event.at_ms < since_ms || out.len() >= MAX_EVENTS_READ {
                return Ok(out);
            }
            // Later than the day computed (a day filled in after newer ones).
            if event.at_ms > until_ms {
                continue;
            }
            out.push(event);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// When `name` first happened in `account` (oldest first, at most [`MAX_EVENTS_READ`] read).
async fn first_occurrence(store: &dyn Store, account: AccountId, name: &str) -> Result<Option<i64>, StoreError> {
    let mut read = 0;
    let mut cursor = None;
    loop {
        let query = Query::partition(keys::account_partition(account))
            .begins_with(keys::PRODUCT_EVENT_PREFIX)
            .limit(500)
            .after(cursor);
        let page = store.query(query).await?;
        for item in &page.items {
            let event: ProductEvent = item.record()?;
            if event.name == name {
                return Ok(Some(event.at_ms));
            }
            read += 1;
        }
        match page.next {
            Some(next) if read < MAX_EVENTS_READ => cursor = Some(next),
            _ => return Ok(None),
        }
    }
}

fn counter(item: Option<Item>, field: &str) -> Option<u64> {
    item.and_then(|i| i.data.get(field).and_then(serde_json::Value::as_u64))
}

/// Computes `account`'s health at `now_ms`, keeping what an earlier record knew of its first
/// value.
///
/// # Errors
/// When the store fails.
pub async fn compute(
    s: &Services,
    account: &Account,
    previous: Option<&CurrentHealth>,
    now_ms: i64,
) -> Result<AccountHealth, StoreError> {
    let store = s.store.as_ref();
    let config = &s.config.health;
    let id = account.id;
    let events = events_between(store, id, now_ms - 30 * DAY_MS, now_ms).await?;
    let by_people: Vec<&ProductEvent> = events.iter().filter(|e| e.user_id.is_some()).collect();
    // Older activity than the window read is what the previous record knew.
    let last_activity_ms = by_people.first().map(|e| e.at_ms).or(previous.and_then(|p| p.health.last_activity_ms));
    let week = now_ms - 7 * DAY_MS;
    let users: BTreeSet<_> = by_people.iter().filter_map(|e| e.user_id).collect();
    let features = |since: i64| -> Vec<String> {
        let used: BTreeSet<String> = events
            .iter()
            .filter(|e| e.name == "feature.used" && e.at_ms >= since)
            .filter_map(|e| e.properties.get("flag").and_then(|f| f.as_str()).map(str::to_owned))
            .collect();
        used.into_iter().collect()
    };
    // Once known, kept; until then looked for in the whole history (an account that has not
    // reached its first value has few events to look through).
    let first_value_ms = match previous.and_then(|p| p.health.first_value_ms) {
        Some(known) => Some(known),
        None => first_occurrence(store, id, &config.value_event).await?.filter(|at| *at <= now_ms),
    };
    let idle_days = (now_ms - last_activity_ms.unwrap_or(account.created_at_ms)) / DAY_MS;
    let status = if idle_days >= i64::from(config.dormant_days) {
        HealthStatus::Dormant
    } else if idle_days >= i64::from(config.at_risk_days) {
        HealthStatus::AtRisk
    } else {
        HealthStatus::Active
    };
    let (state, _) = crate::billing::state(store, id).await?;
    let entitlements = crate::billing::entitlements(store, &s.plans, id).await?;
    let members = crate::tenancy::members(store, id).await?.len() as u64;
    let mut limits = BTreeMap::new();
    for (name, allowed) in &entitlements.limits {
        let used = match name.as_str() {
            API_RATE | API_BURST => None,
            "seats" => Some(members),
            API_MONTHLY_QUOTA => {
                let (month, _, _) = crate::auth::rate_limit::month_of(now_ms);
                Some(counter(store.get(&keys::api_usage(id, &month)).await?, "n").unwrap_or(0))
            }
            // A product's own limit, by the counter convention (`COUNTER#<limit>`, `count`).
            other => counter(store.get(&keys::tenant_item(id, "COUNTER", other)).await?, "count"),
        };
        if let Some(used) = used {
            limits.insert(name.clone(), Usage { used, allowed: *allowed });
        }
    }
    let threshold = u64::from(config.upgrade_threshold_percent);
    let upgrade_suggested = limits
        .iter()
        .filter(|(_, u)| u.allowed > 0 && u.used * 100 >= threshold * u.allowed)
        .map(|(n, _)| n.clone())
        .collect();
    let trial_days_left = match (state.status, state.trial_end) {
        (Some(SubscriptionStatus::Trialing), Some(end)) => {
            Some(((end * 1000 - now_ms) + DAY_MS - 1).div_euclid(DAY_MS).max(0))
        }
        _ => None,
    };
    let payment = match state.status {
        None | Some(SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired) => "none",
        Some(SubscriptionStatus::PastDue) => "past_due",
        Some(SubscriptionStatus::Unpaid | SubscriptionStatus::Incomplete | SubscriptionStatus::Paused) => "unpaid",
        Some(SubscriptionStatus::Active | SubscriptionStatus::Trialing) => "ok",
    };
    let mrr = state.mrr();
    Ok(AccountHealth {
        account_id: id,
        name: account.name.clone(),
        day: day_of(now_ms),
        computed_at_ms: now_ms,
        status,
        last_activity_ms,
        events_7d: by_people.iter().filter(|e| e.at_ms >= week).count() as u64,
        events_30d: by_people.len() as u64,
        active_users_30d: users.len() as u64,
        first_value_ms,
        time_to_first_value_ms: first_value_ms.map(|v| v - account.created_at_ms),
        features_7d: features(week),
        features_30d: features(now_ms - 30 * DAY_MS),
        plan: entitlements.plan,
        subscription_status: state.status,
        trial_days_left,
        payment: payment.into(),
        mrr_minor: mrr.map_or(0, |(amount, _)| amount),
        currency: mrr.map(|(_, currency)| currency.to_owned()),
        seats: limits.get("seats").copied().unwrap_or(Usage { used: members, allowed: 0 }),
        limits,
        upgrade_suggested,
    })
}

/// The latest health record of `account`.
///
/// # Errors
/// When the store fails.
pub async fn current(store: &dyn Store, account: AccountId) -> Result<Option<CurrentHealth>, StoreError> {
    store.get_record(&keys::account_health(account)).await
}

/// The day records of `account`, newest first, at most `days`.
///
/// # Errors
/// When the store fails.
pub async fn history(store: &dyn Store, account: AccountId, days: u32) -> Result<Vec<AccountHealth>, StoreError> {
    let query = Query::partition(keys::account_partition(account))
        .begins_with(keys::ACCOUNT_HEALTH_DAY_PREFIX)
        .descending()
        .limit(days.clamp(1, 400));
    store.query(query).await?.records()
}

/// The owners' addresses.
async fn owners(store: &dyn Store, account: AccountId) -> Result<Vec<crate::mail::EmailAddress>, StoreError> {
    let mut out = Vec::new();
    for m in crate::tenancy::members(store, account).await? {
        if m.role == Role::Owner
            && let Some(u) = crate::auth::users::by_id(store, m.user_id).await?
        {
            out.push(u.email);
        }
    }
    Ok(out)
}

/// Records each limit past the threshold once a month: the trigger item, an
/// `upgrade.suggested` product event, and an email to the owners.
async fn upgrade_triggers(s: &Services, health: &AccountHealth, now_ms: i64) -> anyhow::Result<usize> {
    let (month, _, _) = crate::auth::rate_limit::month_of(now_ms);
    let mut fired = 0;
    for limit in &health.upgrade_suggested {
        let usage = health.limits[limit];
        let marker = Item::new(keys::upgrade_trigger(health.account_id, limit, &month))
            .with("used", usage.used)
            .with("allowed", usage.allowed)
            .with("at_ms", now_ms)
            .expiring_at(now_ms / 1000 + HISTORY_DAYS * 86_400);
        let event = crate::product_events::lifecycle(
            "upgrade.suggested",
            health.account_id,
            None,
            now_ms,
            &[("limit", json!(limit)), ("used", json!(usage.used)), ("allowed", json!(usage.allowed))],
            Some(&format!("{limit}:{month}")),
        )?;
        match s.store.transact(vec![TxOp::Put(Put::new(marker).if_not_exists()), event]).await {
            Ok(()) => {}
            Err(e) if e.is_condition_failure() => continue,
            Err(e) => return Err(e.into()),
        }
        fired += 1;
        let link = format!("{}/accounts/{}/billing", s.config.server.app_url.trim_end_matches('/'), health.account_id);
        for to in owners(s.store.as_ref(), health.account_id).await? {
            let email = Email::UpgradeSuggested {
                account_name: health.name.clone(),
                limit: limit.clone(),
                used: usage.used,
                allowed: usage.allowed,
                link: link.clone(),
            };
            let key = format!("upgrade:{}:{limit}:{month}:{to}", health.account_id);
            s.jobs().enqueue_with_key(Job::SendEmail { to, email }, crate::jobs::JobId::new(), key).await?;
        }
    }
    Ok(fired)
}

/// What a rollup did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    /// Accounts whose health was recorded.
    pub accounts: usize,
    /// Of them, dormant.
    pub dormant: usize,
    /// Upgrade triggers fired.
    pub upgrade_triggers: usize,
}

/// Records every live account's health for the day of `now_ms` (a second run the same day
/// writes the day's record again, with the newer figures; a run for a day before the latest
/// record's writes that day's record only, from the events up to `now_ms`).
///
/// # Errors
/// When the store or the queue fails.
pub async fn rollup(s: &Services, now_ms: i64) -> anyhow::Result<Rollup> {
    let mut out = Rollup::default();
    let today = day_of(now_ms);
    let expires = now_ms / 1000 + HISTORY_DAYS * 86_400;
    let mut cursor = None;
    loop {
        let (accounts, next) = crate::tenancy::directory_page(s.store.as_ref(), 1000, cursor).await?;
        for account in &accounts {
            // A deleted account leaves the operators' list (its day records go with its
            // partition when it is purged, or stay if it is restored).
            if account.deleted_at_ms.is_some() {
                s.store.delete(crate::store::Delete::new(keys::account_health(account.id))).await?;
                continue;
            }
            let previous = current(s.store.as_ref(), account.id).await?;
            // A day before the latest record's (filled in after newer ones, or a rollup run
            // for a simulated past) only joins the history: the latest record, the dormancy
            // it tracks and the upgrade triggers belong to the newest day.
            if previous.as_ref().is_some_and(|p| p.health.day > today) {
                let health = compute(s, account, None, now_ms).await?;
                let day = Item::from_record(keys::account_health_day(account.id, &health.day), &health)?;
                s.store.put(Put::new(day.expiring_at(expires))).await?;
                out.accounts += 1;
                continue;
            }
            let health = compute(s, account, previous.as_ref(), now_ms).await?;
            let dormant_since_ms = match (health.status, previous.as_ref()) {
                (HealthStatus::Dormant, Some(p)) if p.health.status == HealthStatus::Dormant => p.dormant_since_ms,
                (HealthStatus::Dormant, _) => Some(now_ms),
                _ => None,
            };
            let record = CurrentHealth {
                health: health.clone(),
                dormant_since_ms,
                dormant_notified_for_ms: previous
                    .as_ref()
                    .and_then(|p| p.dormant_notified_for_ms)
                    .filter(|_| dormant_since_ms.is_some()),
            };
            let index = keys::account_health_index(health.status.rank(), account.id);
            s.store
                .transact(vec![
                    TxOp::Put(Put::new(Item::from_record(keys::account_health(account.id), &record)?.with_gsi1(index))),
                    TxOp::Put(Put::new(
                        Item::from_record(keys::account_health_day(account.id, &health.day), &health)?
                            .expiring_at(expires),
                    )),
                ])
                .await?;
            out.accounts += 1;
            if health.status == HealthStatus::Dormant {
                out.dormant += 1;
            }
            out.upgrade_triggers += upgrade_triggers(s, &health, now_ms).await?;
        }
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(out),
        }
    }
}

/// Emails the owners of each account that turned dormant, once per dormancy; returns how
/// many accounts were told.
///
/// # Errors
/// When the store or the queue fails.
pub async fn notify_dormant(s: &Services) -> anyhow::Result<usize> {
    let mut told = 0;
    let mut cursor = None;
    loop {
        let query = Query::index(Index::Gsi1, keys::ACCOUNT_HEALTH_INDEX)
            .begins_with(format!("{}#", HealthStatus::Dormant.rank()))
            .limit(100)
            .after(cursor);
        let page = s.store.query(query).await?;
        for item in &page.items {
            let mut record: CurrentHealth = item.record()?;
            let Some(since) = record.dormant_since_ms else { continue };
            if record.dormant_notified_for_ms == Some(since) {
                continue;
            }
            let idle_days = record.health.last_activity_ms.map(|t| (s.clock.now_ms() - t) / DAY_MS);
            let link =
                format!("{}/accounts/{}", s.config.server.app_url.trim_end_matches('/'), record.health.account_id);
            for to in owners(s.store.as_ref(), record.health.account_id).await? {
                let email = Email::AccountDormant {
                    account_name: record.health.name.clone(),
                    idle_days: idle_days.unwrap_or(i64::from(s.config.health.dormant_days)),
                    link: link.clone(),
                };
                let key = format!("dormant:{}:{since}:{to}", record.health.account_id);
                s.jobs().enqueue_with_key(Job::SendEmail { to, email }, crate::jobs::JobId::new(), key).await?;
            }
            record.dormant_notified_for_ms = Some(since);
            let mut changed = Item::from_record(item.key.clone(), &record)?;
            changed.gsi1.clone_from(&item.gsi1);
            changed.version = item.version;
            match s.store.put(Put::new(changed).if_unchanged()).await {
                // Rewritten by a rollup meanwhile: the emails' keys keep the next pass from
                // sending them twice.
                Ok(_) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            told += 1;
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(told),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_ranks() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_767_225_600_000), "2026-01-01");
        assert!(HealthStatus::Dormant.rank() < HealthStatus::AtRisk.rank());
        assert!(HealthStatus::AtRisk.rank() < HealthStatus::Active.rank());
    }
}
