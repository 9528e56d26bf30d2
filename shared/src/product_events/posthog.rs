//! Forwarding product events to PostHog, on when `POSTHOG_API_KEY` is set.
//!
//! Every product event is written with an entry in a sparse index of events not yet forwarded
//! (gsi1 `PRODUCT_EVENTS#PENDING#<shard>`, oldest first), so recording an event is its outbox
//! entry: nothing recorded is ever left unforwarded, and nothing waits on PostHog. The
//! `forward-product-events` schedule ([`forward`], every minute) drains the index in
//! batches through PostHog's batch capture API (`POST <host>/batch/`,
//! <https://posthog.com/docs/api/capture>):
//! - a 2xx takes the batch's events out of the index;
//! - a refusal of the batch itself (a 4xx other than 408 and 429) moves them to the
//!   dead-letter index `PRODUCT_EVENTS#DEAD`, so one bad batch never blocks the rest;
//! - anything else (5xx, 408, 429, no answer) leaves them for the next run: the retries.
//!
//! Each event is sent with a `uuid` derived from its key, so PostHog drops the second copy of
//! an event sent twice (a run that died after PostHog took the batch). The account is the
//! `company` group (group analytics, <https://posthog.com/docs/product-analytics/group-analytics>):
//! each batch carries a `$groupidentify` per account with its name, plan, subscription status,
//! billing interval, seats in use and MRR (in the currency's major unit, with the currency;
//! from the Stripe price the subscription bills). People are their user ids only; with
//! `POSTHOG_SEND_EMAIL=true`, a user's address is set on their person too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{FORWARD_SHARDS, ProductEvent};
use crate::id::AccountId;
use crate::keys;
use crate::secret::Secret;
use crate::store::{Index, Item, Query, Store, StoreError, Update};

/// Events per batch (PostHog takes far more; small batches keep one refusal small).
pub const BATCH: u32 = 100;
/// How long one run keeps sending (the schedule fires every minute; a backlog larger than a
/// run sends goes on at the next).
pub const RUN_BUDGET: Duration = Duration::from_secs(45);
/// How long one batch may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The forwarding settings (`POSTHOG_*`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PostHogConfig {
    /// `POSTHOG_API_KEY`: the project API key (`phc_…`); unset or empty, nothing is forwarded.
    #[serde(rename = "api_key", default)]
    pub api_key: Option<Secret<String>>,
    /// `POSTHOG_HOST`: where the project lives (default `https://us.i.posthog.com`;
    /// `https://eu.i.posthog.com` for the EU cloud, or a self-hosted instance).
    #[serde(rename = "host", default)]
    pub host: Option<String>,
    /// `POSTHOG_SEND_EMAIL`: also set each user's email address on their PostHog person
    /// (default false: people are ids only).
    #[serde(rename = "send_email", default)]
    pub send_email: bool,
}

impl PostHogConfig {
    /// From `POSTHOG_API_KEY`, `POSTHOG_HOST` and `POSTHOG_SEND_EMAIL`.
    ///
    /// # Errors
    /// A host that is not an `http(s)` URL, or a malformed boolean.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        let mut config: Self = env.area("POSTHOG_")?;
        config.api_key = config.api_key.filter(|k| !k.expose().trim().is_empty());
        config.host = env.url("POSTHOG_HOST", Some("https://us.i.posthog.com".into()))?;
        Ok(config)
    }

    /// Whether forwarding is on.
    pub fn enabled(&self) -> bool {
        self.api_key.is_some()
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// Events PostHog took.
    pub sent: usize,
    /// Events it refused, moved to the dead-letter index.
    pub dead_lettered: usize,
    /// Batches left for the next run (PostHog unavailable).
    pub deferred: usize,
}

/// What forwarding reads: the store, the plan catalogue (group properties), the settings.
pub struct Forwarder<'a> {
    /// The table.
    pub store: &'a dyn Store,
    /// The plan catalogue.
    pub plans: &'a crate::billing::Plans,
    /// The settings.
    pub config: &'a PostHogConfig,
    /// The HTTP client (`crate::outbound::client`).
    pub http: &'a reqwest::Client,
}

/// A UUID (RFC 9562 layout, version 8: custom) from the event's key, the same for every
/// send of one event, which PostHog deduplicates on.
fn uuid_of(item: &Item) -> String {
    let h = crate::auth::hash_secret(&format!("{}#{}", item.key.pk, item.key.sk));
    format!("{}-{}-8{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Forwarder<'_> {
    /// The `$groupidentify` of an account: its name, plan, subscription status, billing
    /// interval, seats in use and MRR.
    async fn group(&self, account: AccountId) -> Result<Value, StoreError> {
        let name = crate::tenancy::load_account(self.store, account).await?.map(|(a, _)| a.name);
        let (state, _) = crate::billing::state(self.store, account).await?;
        let plan = crate::billing::entitlements(self.store, self.plans, account).await?.plan;
        let seats = crate::tenancy::members(self.store, account).await?.len();
        #[allow(clippy::cast_precision_loss)] // Minor units below 2^53 are exact.
        let (mrr, currency) = match state.mrr() {
            Some((minor, currency)) => (
                Some(minor as f64 / f64::from(10_u32.pow(crate::billing::currency_decimals(currency)))),
                Some(currency.to_owned()),
            ),
            None => (None, None),
        };
        Ok(json!({
            "event": "$groupidentify",
            "distinct_id": format!("account:{account}"),
            "properties": {
                "$group_type": "company",
                "$group_key": account.to_string(),
                "$group_set": {
                    "name": name,
                    "plan": plan,
                    "subscription_status": state.status,
                    "interval": state.interval,
                    "seats": seats,
                    "mrr": mrr,
                    "currency": currency,
                },
            },
        }))
    }

    /// One event as PostHog captures it: the user (or the account, for a system event) as
    /// the distinct id, the account as the `company` group.
    async fn event(&self, item: &Item, emails: &mut BTreeMap<String, Option<String>>) -> Result<Value, StoreError> {
        let event: ProductEvent = item.record()?;
        let mut properties = event.properties.clone();
        properties.insert("$groups".into(), json!({"company": event.account_id.to_string()}));
        let distinct_id = match event.user_id {
            Some(user) => {
                if self.config.send_email {
                    let key = user.to_string();
                    if !emails.contains_key(&key) {
                        let email = crate::auth::users::by_id(self.store, user).await?.map(|u| u.email.to_string());
                        emails.insert(key.clone(), email);
                    }
                    if let Some(Some(email)) = emails.get(&key) {
                        properties.insert("$set".into(), json!({"email": email}));
                    }
                }
                user.to_string()
            }
            None => format!("account:{}", event.account_id),
        };
        Ok(json!({
            "event": event.name,
            "distinct_id": distinct_id,
            "timestamp": timestamp(event.at_ms),
            "uuid": uuid_of(item),
            "properties": Value::Object(properties),
        }))
    }

    /// Sends one shard's next batch; `None` when the shard has nothing pending. `done` holds
    /// the events this run already handled: DynamoDB updates an index a moment after the item,
    /// so a query may still list them, and they are neither sent nor touched again.
    async fn batch(
        &self,
        shard: u8,
        key: &str,
        out: &mut Forwarded,
        done: &mut BTreeSet<(String, String)>,
    ) -> Result<Option<bool>, StoreError> {
        let query = Query::index(Index::Gsi1, keys::product_events_pending_partition(shard)).limit(BATCH);
        let items: Vec<Item> = self
            .store
            .query(query)
            .await?
            .items
            .into_iter()
            .filter(|i| !done.contains(&(i.key.pk.clone(), i.key.sk.clone())))
            .collect();
        if items.is_empty() {
            return Ok(None);
        }
        let mut batch = Vec::with_capacity(items.len() + 8);
        let mut accounts = BTreeSet::new();
        let mut emails = BTreeMap::new();
        for item in &items {
            let event = self.event(item, &mut emails).await?;
            if let Some(account) = event["properties"]["$groups"]["company"].as_str().and_then(|a| a.parse().ok()) {
                accounts.insert(account);
            }
            batch.push(event);
        }
        for account in accounts {
            batch.push(self.group(account).await?);
        }
        let host = self.config.host.as_deref().unwrap_or("https://us.i.posthog.com").trim_end_matches('/');
        let body = json!({"api_key": key, "batch": batch});
        let answer = self.http.post(format!("{host}/batch/")).json(&body).send().await;
        let status = match answer {
            Ok(response) => response.status().as_u16(),
            Err(e) => {
                tracing::warn!(error = %e, shard, "PostHog did not answer: the batch waits for the next run");
                out.deferred += 1;
                return Ok(Some(false));
            }
        };
        let refused = (400..500).contains(&status) && status != 408 && status != 429;
        if !(200..300).contains(&status) && !refused {
            tracing::warn!(status, shard, "PostHog is unavailable: the batch waits for the next run");
            out.deferred += 1;
            return Ok(Some(false));
        }
        for item in &items {
            let index = if refused {
                Some(crate::store::Key::new(keys::PRODUCT_EVENTS_DEAD, item.gsi1.as_ref().map_or("", |k| &k.sk)))
            } else {
                None
            };
            let update = Update::new(item.key.clone()).gsi1(index).when(crate::store::Condition::Exists);
            match self.store.update(update).await {
                // Purged meanwhile (the account's erasure): nothing to take out of the index.
                Ok(_) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
        done.extend(items.iter().map(|i| (i.key.pk.clone(), i.key.sk.clone())));
        if refused {
            tracing::error!(
                status,
                shard,
                events = items.len(),
                "PostHog refused a batch: its events are dead-lettered"
            );
            out.dead_lettered += items.len();
        } else {
            out.sent += items.len();
        }
        Ok(Some(true))
    }
}

/// Forwards the pending events, a batch from each shard in turn (so one busy account does
/// not hold the others back), oldest first, until none is pending or [`RUN_BUDGET`] is
/// spent; stops at the first batch PostHog does not take for now. A no-op when forwarding
/// is off (the index entries then expire with their events).
///
/// # Errors
/// When the store fails; PostHog's failures are not errors (the events wait for a retry or
/// go to the dead-letter index).
pub async fn forward(forwarder: &Forwarder<'_>) -> Result<Forwarded, StoreError> {
    let mut out = Forwarded::default();
    let Some(key) = forwarder.config.api_key.as_ref() else { return Ok(out) };
    let started = std::time::Instant::now();
    let mut done = BTreeSet::new();
    loop {
        let mut sent_any = false;
        for shard in 0..FORWARD_SHARDS {
            if started.elapsed() > RUN_BUDGET {
                return Ok(out);
            }
            match forwarder.batch(shard, key.expose(), &mut out, &mut done).await? {
                Some(true) => sent_any = true,
                // PostHog is down or throttling: everything waits for the next run.
                Some(false) => return Ok(out),
                None => {}
            }
        }
        if !sent_any {
            return Ok(out);
        }
    }
}

/// One event PostHog refused: its item's key and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadEvent {
    /// The event's item.
    pub key: crate::store::Key,
    /// Its name (`report.exported`).
    pub name: String,
}

/// Up to `limit` (1 to 1000) of the events PostHog refused, oldest first.
///
/// # Errors
/// When the store fails.
pub async fn dead_letters(store: &dyn Store, limit: u32) -> Result<Vec<DeadEvent>, StoreError> {
    let page = store.query(Query::index(Index::Gsi1, keys::PRODUCT_EVENTS_DEAD).limit(limit)).await?;
    let mut out = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let event: ProductEvent = item.record()?;
        out.push(DeadEvent { key: item.key.clone(), name: event.name });
    }
    Ok(out)
}

/// Puts up to `max` (1 to 1000) refused events back in the pending index, at their place
/// (their time), for the next forwarding run; returns how many. Run it once what PostHog
/// refused is fixed (a wrong project key, a property it rejects).
///
/// # Errors
/// When the store fails.
pub async fn redrive(store: &dyn Store, max: u32) -> Result<u32, StoreError> {
    let page = store.query(Query::index(Index::Gsi1, keys::PRODUCT_EVENTS_DEAD).limit(max)).await?;
    let mut moved = 0;
    for item in &page.items {
        let event: ProductEvent = item.record()?;
        let sk = item.gsi1.as_ref().map_or_else(String::new, |k| k.sk.clone());
        let pending =
            crate::store::Key::new(keys::product_events_pending_partition(super::shard(event.account_id)), sk);
        let update = Update::new(item.key.clone()).gsi1(Some(pending)).when(crate::store::Condition::Exists);
        match store.update(update).await {
            Ok(_) => moved += 1,
            // Purged meanwhile (the account's erasure).
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

/// How many events PostHog refused (the dead-letter index), at most `limit` counted.
///
/// # Errors
/// When the store fails.
pub async fn dead_lettered(store: &dyn Store, limit: u32) -> Result<usize, StoreError> {
    Ok(store.query(Query::index(Index::Gsi1, keys::PRODUCT_EVENTS_DEAD).limit(limit)).await?.items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_per_event_and_well_formed() {
        let item = Item::new(crate::store::Key::new("ACCOUNT#a", "EVENT#1#x"));
        let (a, b) = (uuid_of(&item), uuid_of(&item));
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert_ne!(a, uuid_of(&Item::new(crate::store::Key::new("ACCOUNT#a", "EVENT#1#y"))));
    }
}
