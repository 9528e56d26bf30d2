//! Feature flags, evaluated in-process: kill switches, per-plan gating, per-account
//! overrides, percentage rollouts with stable bucketing, and A/B variants.
//!
//! Flags live in the table (`FLAGS` / `FLAG#<key>`, changed by operators through
//! `/ops/flags`, so a kill switch needs no deploy), and per-account overrides under the account
//! (`ACCOUNT#<id>` / `FLAG#<key>`). A process reads the definitions at most every
//! [`CACHE_SECS`] seconds. Evaluation, in order:
//! 1. a flag that does not exist, or is switched off (`enabled: false`), is off for everyone;
//! 2. an account override decides (on, or on with a given variant; or off);
//! 3. plan gating: if the flag lists plans, only accounts whose entitlements are on one of
//!    them qualify;
//! 4. the rollout: the account's bucket (SHA-256 of flag key and account id, 0..10000) must be
//!    under `rollout_percent` × 100; the same account always lands in the same bucket, and
//!    raising the percentage only adds accounts;
//! 5. the variant: a second, independent bucket picks among the weighted variants.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::id::AccountId;
use crate::store::{Key, Query, Store, StoreError, StoreExt as _};

/// How long a process keeps the flag definitions before reading them again.
pub const CACHE_SECS: u64 = 30;

/// A variant and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Variant {
    /// Its name (`control`, `treatment`...).
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Its share, relative to the others (0 to 1,000,000).
    #[schema(maximum = 1_000_000)]
    pub weight: u32,
}

/// What an operator sets on a flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagSettings {
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The kill switch: false turns it off for everyone, overrides included.
    pub enabled: bool,
    /// Plans it is limited to (plan ids of the catalogue, or `free`); empty: every plan.
    #[serde(default)]
    pub plans: Vec<String>,
    /// The share of qualifying accounts it is on for, 0 to 100.
    #[schema(maximum = 100)]
    pub rollout_percent: u8,
    /// A/B variants; empty: a plain on/off flag.
    #[serde(default)]
    pub variants: Vec<Variant>,
}

/// A flag's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Flag {
    /// Its key (`new_editor`).
    pub key: String,
    /// Its settings.
    #[serde(flatten)]
    pub settings: FlagSettings,
    /// When it last changed (Unix ms).
    #[serde(default)]
    pub updated_at_ms: i64,
}

impl Flag {
    /// Checks the definition.
    ///
    /// # Errors
    /// What is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let key_ok = !self.key.is_empty()
            && self.key.len() <= 64
            && self.key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !key_ok {
            return Err("a flag key is 1 to 64 lower-case letters, digits, _ and -".into());
        }
        if self.settings.rollout_percent > 100 {
            return Err("rollout_percent is 0 to 100".into());
        }
        if !self.settings.variants.is_empty()
            && self.settings.variants.iter().map(|v| u64::from(v.weight)).sum::<u64>() == 0
        {
            return Err("variants need a positive total weight".into());
        }
        if self.settings.variants.iter().any(|v| v.weight > 1_000_000) {
            return Err("a variant's weight is 0 to 1000000".into());
        }
        if self.settings.variants.iter().any(|v| v.name.is_empty() || v.name.chars().count() > 64) {
            return Err("a variant name is 1 to 64 characters".into());
        }
        let mut names = std::collections::BTreeSet::new();
        if !self.settings.variants.iter().all(|v| names.insert(v.name.as_str())) {
            return Err("variant names are unique".into());
        }
        Ok(())
    }

    /// Checks an override against this flag: a forced variant must be one of its variants.
    ///
    /// # Errors
    /// What is wrong, for the operator.
    pub fn accepts(&self, overriding: &Override) -> Result<(), String> {
        match &overriding.variant {
            Some(v) if !self.settings.variants.iter().any(|x| &x.name == v) => {
                Err(format!("the flag has no such variant (it has {})", self.settings.variants.len()))
            }
            _ => Ok(()),
        }
    }
}

/// An account's override of a flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Override {
    /// On or off for this account.
    pub enabled: bool,
    /// The variant it gets, if the flag has variants.
    #[serde(default)]
    pub variant: Option<String>,
}

/// A flag's value for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evaluation {
    /// Whether it is on.
    pub enabled: bool,
    /// The variant, for an A/B flag that is on.
    pub variant: Option<String>,
    /// Why (`off`, `override`, `plan`, `rollout`, `on`).
    pub reason: &'static str,
}

/// The key of a flag definition.
pub fn flag_key(key: &str) -> Key {
    crate::keys::flag(key)
}

/// The key of an account's override.
pub fn override_key(account: AccountId, key: &str) -> Key {
    crate::keys::flag_override(account, key)
}

/// A bucket in 0..10000 of `account` for `salt`, stable forever.
pub fn bucket(salt: &str, account: AccountId) -> u32 {
    let digest = Sha256::digest(format!("{salt}:{account}").as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 10_000
}

/// Evaluates `flag` for `account` on `plan`, with its override if any.
pub fn evaluate(flag: &Flag, account: AccountId, plan: &str, overriding: Option<&Override>) -> Evaluation {
    let variant = |flag: &Flag| pick_variant(flag, account);
    if !flag.settings.enabled {
        return Evaluation { enabled: false, variant: None, reason: "off" };
    }
    if let Some(o) = overriding {
        let chosen = if o.enabled { o.variant.clone().or_else(|| variant(flag)) } else { None };
        return Evaluation { enabled: o.enabled, variant: chosen, reason: "override" };
    }
    if !flag.settings.plans.is_empty() && !flag.settings.plans.iter().any(|p| p == plan) {
        return Evaluation { enabled: false, variant: None, reason: "plan" };
    }
    if bucket(&flag.key, account) >= u32::from(flag.settings.rollout_percent) * 100 {
        return Evaluation { enabled: false, variant: None, reason: "rollout" };
    }
    Evaluation { enabled: true, variant: variant(flag), reason: "on" }
}

fn pick_variant(flag: &Flag, account: AccountId) -> Option<String> {
    let total: u64 = flag.settings.variants.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return None;
    }
    let point = u64::from(bucket(&format!("{}#variant", flag.key), account)) * total / 10_000;
    let mut acc = 0;
    for v in &flag.settings.variants {
        acc += u64::from(v.weight);
        if point < acc {
            return Some(v.name.clone());
        }
    }
    flag.settings.variants.last().map(|v| v.name.clone())
}

/// The flag definitions a process read last, and when (by its [`Clock`]): one per process,
/// in the process's services (`Services::flag_cache`).
#[derive(Debug, Default)]
pub struct FlagCache(Mutex<Option<(i64, Vec<Flag>)>>, Mutex<std::collections::HashSet<(AccountId, String, i64)>>);

/// The most (account, flag, day) uses a process remembers before it forgets them all.
const MAX_REMEMBERED_USES: usize = 10_000;

/// A day of Unix time (UTC), in milliseconds.
const DAY_MS: i64 = 86_400_000;

impl FlagCache {
    /// Every flag definition, read at most every [`CACHE_SECS`] seconds of `clock`'s time.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn definitions(&self, store: &dyn Store, clock: &dyn Clock) -> Result<Vec<Flag>, StoreError> {
        let now = clock.now_ms();
        let fresh_ms = i64::try_from(CACHE_SECS * 1000).unwrap_or(i64::MAX);
        if let Some((at, flags)) = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            && (0..fresh_ms).contains(&(now - at))
        {
            return Ok(flags.clone());
        }
        let flags = read_definitions(store).await?;
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, flags.clone()));
        Ok(flags)
    }
}

impl FlagCache {
    /// Whether this process has not yet seen `account` use `flag` on `day` (and remembers
    /// that it has now).
    fn first_use(&self, account: AccountId, flag: &str, day: i64) -> bool {
        let mut seen = self.1.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED_USES {
            seen.clear();
        }
        seen.insert((account, flag.to_owned(), day))
    }

    /// Forgets the definitions, so this process reads them at its next evaluation: the
    /// process that changed a flag sees the change at once (others within [`CACHE_SECS`]).
    pub fn invalidate(&self) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// Every flag definition, read now (operators' routes; tests).
///
/// # Errors
/// When the store fails.
pub async fn read_definitions(store: &dyn Store) -> Result<Vec<Flag>, StoreError> {
    let items =
        store.query_all(Query::partition(crate::keys::FLAGS_PARTITION).begins_with(crate::keys::FLAG_PREFIX)).await?;
    items.iter().map(crate::store::Item::record).collect()
}

/// What evaluating flags reads: the store, the clock, this process's definitions and the
/// plan catalogue. `Services::flags` hands one out.
#[derive(Clone, Copy)]
pub struct Flags<'a> {
    /// The table.
    pub store: &'a dyn Store,
    /// The time (for the definitions' cache).
    pub clock: &'a dyn Clock,
    /// The definitions this process read last.
    pub cache: &'a FlagCache,
    /// The plan catalogue (plan gating).
    pub plans: &'a crate::billing::Plans,
}

impl Flags<'_> {
    /// Every flag's value for `account`: what any function gates on, and what the frontend
    /// gets.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn for_account(&self, account: AccountId) -> Result<BTreeMap<String, Evaluation>, StoreError> {
        let flags = self.cache.definitions(self.store, self.clock).await?;
        let plan = crate::billing::entitlements(self.store, self.plans, account).await?.plan;
        let overrides = self
            .store
            .query_all(Query::partition(crate::keys::account_partition(account)).begins_with(crate::keys::FLAG_PREFIX))
            .await?;
        let overrides: BTreeMap<String, Override> = overrides
            .iter()
            .filter_map(|i| Some((i.key.sk.strip_prefix(crate::keys::FLAG_PREFIX)?.to_owned(), i.record().ok()?)))
            .collect();
        Ok(flags.iter().map(|f| (f.key.clone(), evaluate(f, account, &plan, overrides.get(&f.key)))).collect())
    }

    /// Whether `key` is on for `account` (a missing flag is off).
    ///
    /// # Errors
    /// As [`Flags::for_account`].
    pub async fn enabled(&self, account: AccountId, key: &str) -> Result<bool, StoreError> {
        Ok(self.for_account(account).await?.get(key).is_some_and(|e| e.enabled))
    }

    /// As [`Flags::enabled`], for a route about to use the feature the flag gates: when it is
    /// on, the use is recorded as the `feature.used` product event (`flag`), once per account,
    /// flag and UTC day (timed at the day's first use; the first writer wins). A process writes at most once per account, flag and day, so a busy
    /// feature costs no write per request; a failed write is logged, never the request's.
    ///
    /// # Errors
    /// As [`Flags::for_account`].
    pub async fn use_feature(
        &self,
        account: AccountId,
        key: &str,
        user: Option<crate::id::UserId>,
    ) -> Result<bool, StoreError> {
        if !self.enabled(account, key).await? {
            return Ok(false);
        }
        let now = self.clock.now_ms();
        let day = now.div_euclid(DAY_MS);
        if self.cache.first_use(account, key, day) {
            let event = crate::product_events::ProductEvent::new("feature.used", account, user, now)
                .and_then(|e| e.with("flag", key));
            let written = match event {
                Ok(event) => match event.put_first(&format!("{key}:{day}"), day * DAY_MS) {
                    Ok(put) => self.store.put(put).await.map(|_| ()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(StoreError::Invalid(e.to_string())),
            };
            match written {
                Ok(()) | Err(StoreError::ConditionFailed) => {}
                Err(e) => tracing::warn!(error = %e, flag = key, %account, "could not record a feature's use"),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(percent: u8) -> Flag {
        Flag {
            key: "new_editor".into(),
            settings: FlagSettings {
                description: String::new(),
                enabled: true,
                plans: Vec::new(),
                rollout_percent: percent,
                variants: Vec::new(),
            },
            updated_at_ms: 0,
        }
    }

    fn accounts(n: usize) -> Vec<AccountId> {
        (0..n).map(|_| AccountId::new()).collect()
    }

    #[test]
    fn rollouts_are_stable_proportional_and_only_grow() {
        let all = accounts(10_000);
        let on = |p: u8| all.iter().filter(|a| evaluate(&flag(p), **a, "free", None).enabled).count();
        assert_eq!(on(0), 0);
        assert_eq!(on(100), 10_000);
        let half = on(50);
        assert!((4_700..=5_300).contains(&half), "{half}");
        // Raising the percentage keeps everyone who had it.
        for a in &all {
            if evaluate(&flag(20), *a, "free", None).enabled {
                assert!(evaluate(&flag(21), *a, "free", None).enabled);
            }
            assert_eq!(bucket("new_editor", *a), bucket("new_editor", *a));
        }
    }

    #[test]
    fn kill_switch_beats_overrides_which_beat_plans_and_rollouts() {
        let a = AccountId::new();
        let mut f = flag(0);
        f.settings.plans = vec!["team".into()];
        let on = Override { enabled: true, variant: None };
        assert_eq!(evaluate(&f, a, "free", Some(&on)).reason, "override");
        assert!(evaluate(&f, a, "free", Some(&on)).enabled);
        assert_eq!(evaluate(&f, a, "free", None).reason, "plan");
        assert_eq!(evaluate(&f, a, "team", None).reason, "rollout");
        f.settings.rollout_percent = 100;
        assert!(evaluate(&f, a, "team", None).enabled);
        f.settings.enabled = false;
        assert_eq!(evaluate(&f, a, "team", Some(&on)), Evaluation { enabled: false, variant: None, reason: "off" });
    }

    #[test]
    fn variants_split_by_weight_and_stick() {
        let mut f = flag(100);
        f.settings.variants =
            vec![Variant { name: "control".into(), weight: 1 }, Variant { name: "treatment".into(), weight: 3 }];
        let all = accounts(8_000);
        let treated =
            all.iter().filter(|a| evaluate(&f, **a, "free", None).variant.as_deref() == Some("treatment")).count();
        assert!((5_700..=6_300).contains(&treated), "{treated}");
        let a = all[0];
        assert_eq!(evaluate(&f, a, "free", None).variant, evaluate(&f, a, "free", None).variant);
        let forced = Override { enabled: true, variant: Some("control".into()) };
        assert_eq!(evaluate(&f, a, "free", Some(&forced)).variant.as_deref(), Some("control"));
    }
}
