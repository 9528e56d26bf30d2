//! Billing: the plan catalogue ([`Plans`]), an account's subscription state as last known
//! from Stripe ([`BillingState`], `ACCOUNT#<id>` / `BILLING`), and [`entitlements`], which
//! any function asks to gate a feature or enforce a limit. [`stripe`] talks to Stripe's API,
//! [`webhook`] checks `Stripe-Signature`, [`ledger`] records every delivered event,
//! [`events`] reads an event, [`apply`] dispatches it to what it changes ([`snapshot`]: the
//! subscription state, newest wins; [`dunning`]: one-time emails), and [`reconcile`] repairs
//! drift. Those that call Stripe or apply its events need the `stripe` feature; a function
//! that only receives events (`stripe-webhook`) or reads entitlements links none of it.

#[cfg(feature = "stripe")]
pub mod apply;
pub mod config;
#[cfg(feature = "stripe")]
pub mod dunning;
pub mod events;
pub mod ledger;
pub mod objects;
#[cfg(feature = "stripe")]
pub mod reconcile;
#[cfg(feature = "stripe")]
pub mod snapshot;
#[cfg(feature = "stripe")]
pub mod stripe;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::id::AccountId;
use crate::queue::Queues;
use crate::store::{Store, StoreError};

/// What billing's event application, dunning, seat sync and reconciliation use, borrowed
/// from the process's services (`Services::billing`), so billing depends on no edge module.
#[derive(Clone, Copy)]
pub struct Billing<'a> {
    /// The single table.
    pub store: &'a dyn Store,
    /// The time (Unix seconds and milliseconds stamp the state and the ledger).
    pub clock: &'a dyn Clock,
    /// The queues (emails and seat syncs are jobs; a ledger replay goes to `billing`).
    pub queues: &'a Queues,
    /// The plan catalogue.
    pub plans: &'a Plans,
    /// `GROUNDWORK_APP_URL`: the frontend's base URL, for the links in billing emails.
    pub app_url: &'a str,
    /// `GROUNDWORK_ENV`: the catalogue's price ids are per environment.
    pub environment: &'a str,
}

impl Billing<'_> {
    /// Enqueues jobs with this context's queues, store and clock.
    pub fn jobs(&self) -> crate::jobs::Jobs<'_> {
        crate::jobs::Jobs { queues: self.queues, store: self.store, clock: self.clock }
    }

    /// Appends `event` to the audit `stream`, now.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn audit(
        &self,
        stream: crate::audit::AuditStream,
        event: crate::audit::NewEvent,
    ) -> Result<crate::audit::AuditEvent, StoreError> {
        crate::audit::record(self.store, stream, event, self.clock.now_ms()).await
    }
}

/// The catalogue shipped with the code (`shared/config/plans.toml`).
pub const DEFAULT_PLANS: &str = include_str!("../../config/plans.toml");

/// How a plan is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    /// Every month.
    Monthly,
    /// Every year.
    Yearly,
}

/// Stripe price ids of a plan in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// The monthly price.
    pub monthly: String,
    /// The yearly price.
    pub yearly: String,
}

/// A paid plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Its id (`starter`).
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// Feature keys it grants.
    pub features: BTreeSet<String>,
    /// Numeric limits (`seats`...).
    pub limits: BTreeMap<String, u64>,
    /// Price ids per environment.
    pub prices: BTreeMap<String, Prices>,
}

/// What accounts without a subscription get.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeTier {
    /// Its name.
    pub name: String,
    /// Feature keys.
    pub features: BTreeSet<String>,
    /// Limits.
    pub limits: BTreeMap<String, u64>,
}

/// The plan limit: an API key's requests per second (`http::rate_limits`).
pub const API_RATE: &str = "api_requests_per_second";
/// The plan limit: an API key's burst (default: twice its rate).
pub const API_BURST: &str = "api_burst";
/// The plan limit: an account's API requests per calendar month (UTC), all keys together.
pub const API_MONTHLY_QUOTA: &str = "api_requests_per_month";
/// The highest request rate or burst a plan or a setting may give (the limiter counts time
/// in microseconds).
pub const MAX_API_RATE: u32 = 1_000_000;

/// The catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plans {
    /// Trial days of a first subscription.
    pub trial_days: u32,
    /// Whether quantity follows the member count.
    pub per_seat: bool,
    /// The free state.
    pub free: FreeTier,
    /// The paid plans, cheapest first (their order ranks upgrades and downgrades).
    pub plans: Vec<Plan>,
}

impl Plans {
    /// Parses and validates a catalogue for `environment`: one to three plans, unique ids,
    /// each priced monthly and yearly in that environment.
    ///
    /// # Errors
    /// What is wrong, naming the plan.
    pub fn parse(text: &str, environment: &str) -> anyhow::Result<Self> {
        let plans: Self = toml::from_str(text).context("the plan catalogue is not valid TOML of the expected shape")?;
        anyhow::ensure!((1..=3).contains(&plans.plans.len()), "define one to three plans");
        let mut ids = BTreeSet::new();
        for p in &plans.plans {
            anyhow::ensure!(
                !p.id.is_empty() && p.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "plan id {:?}: lower-case letters, digits and _",
                p.id
            );
            anyhow::ensure!(p.id != "free" && ids.insert(p.id.clone()), "plan id {:?} is used twice or reserved", p.id);
            let prices = p.prices.get(environment).with_context(|| {
                format!(
                    "plan {} has no Stripe prices for GROUNDWORK_ENV={environment}: add \
                         [plans.prices.{environment}] with your Stripe price ids to the catalogue \
                         (GROUNDWORK_PLANS_FILE, or shared/config/plans.toml)",
                    p.id
                )
            })?;
            anyhow::ensure!(
                !prices.monthly.is_empty() && !prices.yearly.is_empty(),
                "plan {} has an empty price id in {environment}",
                p.id
            );
        }
        let tiers =
            std::iter::once(("free", &plans.free.limits)).chain(plans.plans.iter().map(|p| (p.id.as_str(), &p.limits)));
        for (plan, limits) in tiers {
            for name in [API_RATE, API_BURST] {
                if let Some(&value) = limits.get(name) {
                    anyhow::ensure!(
                        (1..=u64::from(MAX_API_RATE)).contains(&value),
                        "plan {plan}: {name} is {value}; it must be 1 to {MAX_API_RATE}"
                    );
                }
            }
            if let Some(&value) = limits.get(API_MONTHLY_QUOTA) {
                anyhow::ensure!(
                    value >= 1,
                    "plan {plan}: {API_MONTHLY_QUOTA} must be at least 1 (leave it out for none)"
                );
            }
        }
        Ok(plans)
    }

    /// The catalogue from `GROUNDWORK_PLANS_FILE`, else the shipped one (read once per
    /// process, into the process's services: `Services::plans`).
    ///
    /// # Errors
    /// When it does not load or validate.
    pub fn from_config(config: &config::BillingConfig, environment: &str) -> anyhow::Result<Self> {
        let text = match &config.plans_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading GROUNDWORK_PLANS_FILE={}", path.display()))?,
            None => DEFAULT_PLANS.to_owned(),
        };
        Self::parse(&text, environment)
    }

    /// The plan `id`.
    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The rank of plan `id` (0 = cheapest).
    pub fn rank(&self, id: &str) -> Option<usize> {
        self.plans.iter().position(|p| p.id == id)
    }

    /// The plan and interval a Stripe price id stands for, in `environment`.
    pub fn by_price(&self, environment: &str, price: &str) -> Option<(&Plan, Interval)> {
        self.plans.iter().find_map(|p| {
            let prices = p.prices.get(environment)?;
            if prices.monthly == price {
                Some((p, Interval::Monthly))
            } else if prices.yearly == price {
                Some((p, Interval::Yearly))
            } else {
                None
            }
        })
    }

    /// The price id of `plan` billed every `interval`, in `environment`.
    pub fn price(&self, plan: &Plan, interval: Interval, environment: &str) -> Option<String> {
        let prices = plan.prices.get(environment)?;
        Some(match interval {
            Interval::Monthly => prices.monthly.clone(),
            Interval::Yearly => prices.yearly.clone(),
        })
    }
}

/// A Stripe subscription status. Exhaustive: a status Stripe adds later fails to decode
/// loudly rather than being guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// In its trial.
    Trialing,
    /// Paid up.
    Active,
    /// A payment failed; Stripe is retrying.
    PastDue,
    /// Stripe gave up retrying; the subscription stays but is not paid.
    Unpaid,
    /// Ended.
    Canceled,
    /// The first payment has not succeeded yet.
    Incomplete,
    /// The first payment never succeeded.
    IncompleteExpired,
    /// Paused (a trial ended without a payment method).
    Paused,
}

impl SubscriptionStatus {
    /// Whether the plan's entitlements apply.
    pub fn grants_plan(self) -> bool {
        matches!(self, Self::Trialing | Self::Active | Self::PastDue)
    }
}

/// An account's billing, as last known from Stripe (`ACCOUNT#<id>` / `BILLING`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BillingState {
    /// The Stripe customer, created once per account.
    pub customer_id: Option<String>,
    /// The current subscription.
    pub subscription_id: Option<String>,
    /// Its status.
    pub status: Option<SubscriptionStatus>,
    /// Its plan.
    pub plan_id: Option<String>,
    /// Its interval.
    pub interval: Option<Interval>,
    /// Its item (for plan changes and seat quantities).
    pub item_id: Option<String>,
    /// Its quantity.
    pub quantity: Option<u64>,
    /// Its price's amount per unit and interval, in the currency's minor unit (cents).
    #[serde(default)]
    pub unit_amount: Option<i64>,
    /// Its price's currency (ISO 4217, lower case).
    #[serde(default)]
    pub currency: Option<String>,
    /// Whether it ends at the period end.
    pub cancel_at_period_end: bool,
    /// When it is set to end (Unix seconds).
    pub cancel_at: Option<i64>,
    /// The current period's end (Unix seconds).
    pub current_period_end: Option<i64>,
    /// The trial's end (Unix seconds).
    pub trial_end: Option<i64>,
    /// The Stripe time (Unix seconds) of the snapshot this state came from, and the event
    /// id that brought it: only a newer snapshot replaces it.
    pub as_of: i64,
    /// The event (or `reconcile`) that brought the snapshot.
    pub as_of_event: String,
    /// The entitlements last derived from it.
    #[serde(default)]
    pub entitlements: Option<Entitlements>,
    /// A downgrade scheduled for the period end: the plan...
    #[serde(default)]
    pub pending_plan_id: Option<String>,
    /// ...and its interval.
    #[serde(default)]
    pub pending_interval: Option<Interval>,
    /// Features Stripe's own entitlements grant (lookup keys), added to the plan's.
    #[serde(default)]
    pub stripe_features: Option<BTreeSet<String>>,
    /// The Stripe time of those.
    #[serde(default)]
    pub stripe_features_as_of: i64,
    /// The event that brought them.
    #[serde(default)]
    pub stripe_features_event: String,
}

/// The number of decimals in `currency`'s minor unit as Stripe counts amounts: 0 for its
/// zero-decimal currencies (JPY, KRW...), 3 for the three-decimal ones (BHD, KWD...), else 2
/// (<https://docs.stripe.com/currencies#zero-decimal>). `currency` is ISO 4217, any case.
#[must_use]
pub fn currency_decimals(currency: &str) -> u32 {
    const ZERO: &[&str] = &[
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    ];
    const THREE: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
    let c = currency.to_ascii_lowercase();
    if ZERO.contains(&c.as_str()) {
        0
    } else if THREE.contains(&c.as_str()) {
        3
    } else {
        2
    }
}

impl BillingState {
    /// Monthly recurring revenue, in the currency's minor unit, and the currency: the
    /// price's unit amount times the quantity, a yearly price divided by 12 (rounded). Counted
    /// while the subscription bills (`active`, `past_due`), as MRR reports such as
    /// ChartMogul's and Baremetrics' count it; zero in a trial or once it stopped billing.
    /// `None` with no subscription or a price without a unit amount.
    #[must_use]
    pub fn mrr(&self) -> Option<(i64, &str)> {
        let (amount, currency) = (self.unit_amount?, self.currency.as_deref()?);
        let billing = matches!(self.status?, SubscriptionStatus::Active | SubscriptionStatus::PastDue);
        if !billing {
            return Some((0, currency));
        }
        let per_interval = amount.saturating_mul(i64::try_from(self.quantity.unwrap_or(1)).unwrap_or(i64::MAX));
        let monthly = match self.interval {
            Some(Interval::Yearly) => (per_interval + 6) / 12,
            _ => per_interval,
        };
        Some((monthly, currency))
    }
}

/// An account's billing state (default: never billed).
///
/// # Errors
/// When the store fails.
pub async fn state(store: &dyn Store, account: AccountId) -> Result<(BillingState, u64), StoreError> {
    match store.get(&crate::keys::billing_state(account)).await? {
        Some(item) => Ok((item.record()?, item.version)),
        None => Ok((BillingState::default(), 0)),
    }
}

/// What an account may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entitlements {
    /// The plan in force (`free` without a live subscription).
    pub plan: String,
    /// Feature keys.
    pub features: BTreeSet<String>,
    /// Numeric limits.
    pub limits: BTreeMap<String, u64>,
}

impl Entitlements {
    /// Whether `feature` is granted.
    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// The limit `name`, if the plan sets one.
    pub fn limit(&self, name: &str) -> Option<u64> {
        self.limits.get(name).copied()
    }
}

/// The entitlements a billing state grants under `plans`.
pub fn derive(plans: &Plans, state: &BillingState) -> Entitlements {
    let paid = state.status.filter(|s| s.grants_plan()).and(state.plan_id.as_deref()).and_then(|id| plans.plan(id));
    match paid {
        Some(p) => Entitlements { plan: p.id.clone(), features: p.features.clone(), limits: p.limits.clone() },
        None => Entitlements {
            plan: "free".into(),
            features: plans.free.features.clone(),
            limits: plans.free.limits.clone(),
        },
    }
}

/// What `account` may use now: any function's gate for features and limits (the plan's,
/// plus any feature Stripe's entitlements grant).
///
/// # Errors
/// When the store fails.
pub async fn entitlements(store: &dyn Store, plans: &Plans, account: AccountId) -> Result<Entitlements, StoreError> {
    let (state, _) = state(store, account).await?;
    let mut e = derive(plans, &state);
    e.features.extend(state.stripe_features.iter().flatten().cloned());
    Ok(e)
}

/// For a membership change: with per-seat pricing, the job that brings the subscription's
/// quantity in line with the member count, staged to commit with the change (add its op to
/// the change's transaction, dispatch it after; see `jobs::outbox`). `None` otherwise.
///
/// # Errors
/// Never in practice (a job always has a valid key).
pub fn stage_seat_sync(
    billing: &Billing<'_>,
    account: AccountId,
) -> Result<Option<crate::jobs::outbox::StagedJob>, crate::queue::QueueError> {
    if !billing.plans.per_seat {
        return Ok(None);
    }
    billing.jobs().stage(crate::jobs::Job::SyncSeats { account_id: account }, None).map(Some)
}

/// After a membership change: with per-seat pricing, queues the job that brings the
/// subscription's quantity in line with the member count. A no-op otherwise.
///
/// # Errors
/// When the catalogue does not load or the queue fails.
pub async fn seats_changed(billing: &Billing<'_>, account: AccountId) -> Result<(), crate::error::ApiError> {
    if billing.plans.per_seat {
        billing.jobs().enqueue(crate::jobs::Job::SyncSeats { account_id: account }).await?;
    }
    Ok(())
}

/// Sets a live per-seat subscription's quantity to the member count (prorated), with an
/// idempotency key of the subscription and count; returns the new quantity if it changed.
///
/// # Errors
/// When the store or Stripe fails.
#[cfg(feature = "stripe")]
pub async fn sync_seats(
    billing: &Billing<'_>,
    client: &stripe::StripeClient,
    account: AccountId,
) -> Result<Option<u64>, apply::ApplyError> {
    let plans = billing.plans;
    let (st, _) = state(billing.store, account).await?;
    let (Some(sub), Some(item), Some(status)) = (&st.subscription_id, &st.item_id, st.status) else { return Ok(None) };
    if !plans.per_seat || !status.grants_plan() {
        return Ok(None);
    }
    let members = crate::tenancy::members(billing.store, account).await?.len().max(1) as u64;
    if st.quantity == Some(members) {
        return Ok(None);
    }
    use stripe_billing::subscription::{
        UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionProrationBehavior,
    };
    let request = UpdateSubscription::new(sub.as_str())
        .items(vec![UpdateSubscriptionItems { id: Some(item.clone()), quantity: Some(members), ..Default::default() }])
        .proration_behavior(UpdateSubscriptionProrationBehavior::CreateProrations);
    let key = format!("seats-{sub}-{members}-{}", st.as_of);
    let snapshot = client.send(&request, Some(&key)).await?;
    let now = billing.clock.now_secs();
    snapshot::apply_snapshot(billing, account, &snapshot, now, &format!("seats:{}", billing.clock.now_ms())).await?;
    Ok(Some(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_is_valid_and_ranked() {
        let plans = Plans::parse(DEFAULT_PLANS, "local").unwrap();
        assert_eq!(plans.plans.len(), 3);
        assert!(plans.rank("starter") < plans.rank("business"));
        let (plan, interval) = plans.by_price("local", "price_team_yearly_local").unwrap();
        assert_eq!((plan.id.as_str(), interval), ("team", Interval::Yearly));
        let e = Plans::parse(DEFAULT_PLANS, "production").unwrap_err();
        assert!(e.to_string().contains("production"), "{e}");
    }

    #[test]
    fn api_rate_limits_outside_their_range_are_refused() {
        let free = "api_requests_per_second = 5, api_burst = 10, api_requests_per_month = 10000 }";
        for (bad, why) in [
            (
                "api_requests_per_second = 0, api_burst = 10, api_requests_per_month = 10000 }",
                "api_requests_per_second is 0",
            ),
            ("api_requests_per_second = 2000000, api_burst = 10 }", "api_requests_per_second is 2000000"),
            ("api_requests_per_second = 5, api_burst = 0 }", "api_burst is 0"),
            ("api_requests_per_second = 5, api_requests_per_month = 0 }", "api_requests_per_month must be at least 1"),
        ] {
            let text = DEFAULT_PLANS.replace(free, bad);
            assert_ne!(text, DEFAULT_PLANS, "the free plan's line moved");
            let e = Plans::parse(&text, "local").unwrap_err().to_string();
            assert!(e.contains("plan free") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn mrr_counts_billing_subscriptions_per_month() {
        let mut s = BillingState {
            status: Some(SubscriptionStatus::Active),
            interval: Some(Interval::Monthly),
            unit_amount: Some(2000),
            currency: Some("usd".into()),
            quantity: Some(3),
            ..BillingState::default()
        };
        assert_eq!(s.mrr(), Some((6000, "usd")));
        s.interval = Some(Interval::Yearly);
        assert_eq!(s.mrr(), Some((500, "usd")), "a yearly price over twelve months");
        s.status = Some(SubscriptionStatus::PastDue);
        assert_eq!(s.mrr(), Some((500, "usd")), "past due still bills");
        for stopped in [SubscriptionStatus::Trialing, SubscriptionStatus::Canceled, SubscriptionStatus::Unpaid] {
            s.status = Some(stopped);
            assert_eq!(s.mrr(), Some((0, "usd")), "{stopped:?}");
        }
        assert_eq!(BillingState::default().mrr(), None);
        assert_eq!((currency_decimals("JPY"), currency_decimals("kwd"), currency_decimals("usd")), (0, 3, 2));
    }

    #[test]
    fn only_live_subscriptions_grant_their_plan() {
        let plans = Plans::parse(DEFAULT_PLANS, "local").unwrap();
        let mut s = BillingState { plan_id: Some("team".into()), ..BillingState::default() };
        for (status, plan) in [
            (SubscriptionStatus::Trialing, "team"),
            (SubscriptionStatus::Active, "team"),
            (SubscriptionStatus::PastDue, "team"),
            (SubscriptionStatus::Unpaid, "free"),
            (SubscriptionStatus::Canceled, "free"),
            (SubscriptionStatus::Incomplete, "free"),
            (SubscriptionStatus::IncompleteExpired, "free"),
            (SubscriptionStatus::Paused, "free"),
        ] {
            s.status = Some(status);
            assert_eq!(derive(&plans, &s).plan, plan, "{status:?}");
        }
        assert_eq!(derive(&plans, &BillingState::default()).limit("seats"), Some(3));
    }
}
