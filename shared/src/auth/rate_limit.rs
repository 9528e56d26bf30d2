//! Rate limiting state kept in the table, so every function instance (every Lambda
//! container, every local process) sees the same counts; nothing is counted per process.
//!
//! - Brute-force protection: fixed-window attempt counters with an expiry
//!   (`RATE#<limit>#<hash of the key>` / `<window start>`): [`check`], [`hit`], [`take`].
//! - Request rates with a burst ([`Rate`], [`admit`]): the generic cell rate algorithm
//!   (GCRA, ITU-T I.371's virtual scheduling form, the token bucket's equivalent that keeps
//!   one number, the theoretical arrival time), advanced by a conditional put on the item's
//!   version, so two instances never both spend the last token.
//! - Monthly quotas ([`count_in_month`]): an atomic counter per calendar month (UTC).

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::{Item, Key, Put, Store, StoreError, Update};

/// A limit: at most `max` attempts per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The limit's name (part of the key).
    pub name: &'static str,
    /// Attempts allowed per window.
    pub max: u32,
    /// The window.
    pub window: Duration,
}

const MINUTES_15: Duration = Duration::from_secs(15 * 60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Failed logins per email address.
pub const LOGIN_PER_EMAIL: Limit = Limit { name: "login-email", max: 5, window: MINUTES_15 };
/// Failed logins per client IP.
pub const LOGIN_PER_IP: Limit = Limit { name: "login-ip", max: 50, window: MINUTES_15 };
/// Refused SAML responses per client IP (across organizations).
pub const SAML_FAILURES_PER_IP: Limit = Limit { name: "saml-ip", max: 50, window: MINUTES_15 };
/// Password reset requests per email address.
pub const RESET_PER_EMAIL: Limit = Limit { name: "reset-email", max: 3, window: HOUR };
/// Password reset and verification requests per client IP.
pub const RESET_PER_IP: Limit = Limit { name: "reset-ip", max: 20, window: HOUR };
/// Verification emails per address (sign-ups for one address beyond it are answered as
/// usual, and mail nothing: an address cannot be mail-bombed through sign-up).
pub const VERIFY_PER_EMAIL: Limit = Limit { name: "verify-email", max: 3, window: HOUR };
/// Sign-ups per client IP.
pub const SIGNUP_PER_IP: Limit = Limit { name: "signup-ip", max: 20, window: HOUR };
/// "Your password appears in a breach" emails per user (one a day, however often they
/// sign in with it).
pub const BREACH_NOTICE_PER_USER: Limit = Limit { name: "breach-notice", max: 1, window: DAY };
/// Failed second-factor attempts per user.
pub const MFA_PER_USER: Limit = Limit { name: "mfa-user", max: 5, window: MINUTES_15 };

/// A request rate with a burst: on average `per_second` requests a second, and up to
/// `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second (at least 1).
    pub per_second: u32,
    /// Requests admitted at once (at least 1).
    pub burst: u32,
}

impl Rate {
    /// The time, in microseconds, one request's token takes to come back.
    fn interval_us(self) -> i64 {
        // At least a microsecond: a rate above a million a second is a million a second.
        (1_000_000 / i64::from(self.per_second.max(1))).max(1)
    }

    /// The seconds a full burst takes to come back: the window of the `RateLimit-Policy`
    /// field (at least 1).
    pub fn window_secs(self) -> u64 {
        let us = self.interval_us() * i64::from(self.burst.max(1));
        u64::try_from((us + 999_999) / 1_000_000).unwrap_or(1).max(1)
    }
}

/// What a rate or a quota said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may run.
    pub admitted: bool,
    /// Requests left now (after this one, if admitted).
    pub remaining: u64,
    /// Seconds until the whole quota is available again.
    pub reset_secs: u64,
    /// When refused, seconds until one more request would be admitted.
    pub retry_after_secs: u64,
}

fn ceil_secs_us(us: i64) -> u64 {
    u64::try_from((us.max(0) + 999_999) / 1_000_000).unwrap_or(0)
}

/// How often a contended rate is read and written again before the request is refused.
const RATE_ATTEMPTS: usize = 16;

/// The most rates a process remembers; past it, it forgets them all and reads again.
const MAX_REMEMBERED: usize = 10_000;

/// The rate items this process wrote last, with their versions: admitting a request is then
/// one write conditional on that version, with no read first. The condition keeps it
/// correct whatever another process (or Lambda container) wrote meanwhile: a stale entry
/// fails the write, and the item is read again.
#[derive(Debug, Default)]
pub struct RateStates(std::sync::Mutex<std::collections::HashMap<Key, Item>>);

impl RateStates {
    fn take(&self, key: &Key) -> Option<Item> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key)
    }

    fn keep(&self, item: Item) {
        let mut items = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if items.len() >= MAX_REMEMBERED {
            items.clear();
        }
        items.insert(item.key.clone(), item);
    }
}

/// Admits one request of `subject` under `rate` (policy `policy`), or refuses it, at
/// `now_ms`. A refused request spends nothing. `states` is the process's memory of the rates
/// it wrote ([`RateStates`]).
///
/// # Errors
/// When the store fails. Contention beyond [`RATE_ATTEMPTS`] rounds is a refusal (others
/// were admitted meanwhile), not an error.
pub async fn admit(
    store: &dyn Store,
    states: &RateStates,
    policy: &str,
    subject: &str,
    rate: Rate,
    now_ms: i64,
) -> Result<Decision, StoreError> {
    let key = crate::keys::rate_bucket(policy, &digest(subject));
    let now = now_ms.saturating_mul(1000);
    let interval = rate.interval_us();
    let tolerance = interval * i64::from(rate.burst.max(1));
    // One request of this process at a time per rate (see `keyed_lock`).
    let _serialized = crate::keyed_lock::process().lock(&key).await;
    let mut remembered = states.take(&key);
    for _ in 0..RATE_ATTEMPTS {
        let current = match remembered.take() {
            Some(item) => Some(item),
            None => store.get(&key).await?,
        };
        let tat = current.as_ref().and_then(|i| i.data.get("tat_us")).and_then(Value::as_i64).unwrap_or(now).max(now);
        let next = tat + interval;
        if next - now > tolerance {
            if let Some(item) = current {
                states.keep(item);
            }
            return Ok(Decision {
                admitted: false,
                remaining: 0,
                reset_secs: ceil_secs_us(tat - now),
                retry_after_secs: ceil_secs_us(next - now - tolerance).max(1),
            });
        }
        // Once `next` has passed, the bucket is full again and the item can go.
        let expires = next / 1_000_000 + 1;
        let put = match current {
            Some(mut item) => {
                item.data.insert("tat_us".into(), next.into());
                Put::new(item.expiring_at(expires)).if_unchanged()
            }
            None => Put::new(Item::new(key.clone()).with("tat_us", next).expiring_at(expires)).if_not_exists(),
        };
        match store.put(put).await {
            Ok(written) => {
                states.keep(written);
                let left = (tolerance - (next - now)) / interval;
                return Ok(Decision {
                    admitted: true,
                    remaining: u64::try_from(left).unwrap_or(0),
                    reset_secs: ceil_secs_us(next - now),
                    retry_after_secs: 0,
                });
            }
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Decision { admitted: false, remaining: 0, reset_secs: 1, retry_after_secs: 1 })
}

/// The calendar month (UTC) of `now_ms`: its `yyyy-mm` name and its start and end in
/// milliseconds.
pub fn month_of(now_ms: i64) -> (String, i64, i64) {
    use chrono::{Datelike as _, NaiveDate};
    let date = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default().date_naive();
    let start = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or_default();
    let end = start.checked_add_months(chrono::Months::new(1)).unwrap_or(start);
    let ms = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis();
    (format!("{:04}-{:02}", date.year(), date.month()), ms(start), ms(end))
}

/// Counts one request against a monthly `quota` in the counter under `key` (a key of the
/// month [`month_of`] names, which ends at `end_ms`), or refuses it when the month's quota
/// is used up; a refused request is not counted.
///
/// # Errors
/// When the store fails.
pub async fn count_in_month(
    store: &dyn Store,
    key: Key,
    quota: u64,
    end_ms: i64,
    now_ms: i64,
) -> Result<Decision, StoreError> {
    let reset_secs = u64::try_from((end_ms - now_ms + 999) / 1000).unwrap_or(0);
    // Kept a year and a bit after its month, as the account's usage history.
    let expires = end_ms / 1000 + 400 * 24 * 3600;
    let count = add_to(store, &key, 1, expires).await?;
    if count > quota {
        // Over: taken back, so the count stays the number of requests that ran.
        if let Err(e) = store.update(Update::new(key).add("n", -1)).await {
            tracing::warn!(error = %e, "an over-quota request could not be uncounted");
        }
        return Ok(Decision { admitted: false, remaining: 0, reset_secs, retry_after_secs: reset_secs.max(1) });
    }
    Ok(Decision { admitted: true, remaining: quota - count, reset_secs, retry_after_secs: 0 })
}

/// Adds `delta` to the counter `n` of the item under `key`, creating it (expiring at
/// `expires`) if it is missing; returns the new count.
async fn add_to(store: &dyn Store, key: &Key, delta: i64, expires: i64) -> Result<u64, StoreError> {
    for _ in 0..3 {
        match store.update(Update::new(key.clone()).add("n", delta)).await {
            Ok(i) => return Ok(i.data.get("n").and_then(Value::as_u64).unwrap_or(0)),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        let first = Item::new(key.clone()).with("n", delta).expiring_at(expires);
        match store.put(Put::new(first).if_not_exists()).await {
            Ok(_) => return Ok(u64::try_from(delta).unwrap_or(0)),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("counter contended")))
}

fn digest(subject: &str) -> String {
    Sha256::digest(subject.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn window(limit: Limit, now_ms: i64) -> (i64, i64) {
    let len = i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX);
    let start = now_ms - now_ms.rem_euclid(len);
    (start, start + len)
}

fn key(limit: Limit, subject: &str, start: i64) -> Key {
    crate::keys::rate_window(limit.name, &digest(subject), start)
}

/// Refuses with 429 if `subject` has used up `limit` in the current window.
///
/// # Errors
/// [`ApiError::TooManyRequests`] with the seconds until the window ends, or a store error.
pub async fn check(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<(), ApiError> {
    let (start, end) = window(limit, now_ms);
    let count = store
        .get(&key(limit, subject, start))
        .await?
        .and_then(|i| i.data.get("n").and_then(Value::as_u64))
        .unwrap_or(0);
    if count >= u64::from(limit.max) {
        return Err(ApiError::TooManyRequests { retry_after_secs: retry_after(end, now_ms) });
    }
    Ok(())
}

/// Counts one attempt of `subject` against `limit`; returns the count in this window.
///
/// # Errors
/// When the store fails.
pub async fn hit(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<u64, StoreError> {
    let (start, end) = window(limit, now_ms);
    add_to(store, &key(limit, subject, start), 1, end / 1000 + 1).await
}

/// Spends `n` of `limit` for `subject` in the current window, or refuses with nothing
/// spent: a batch is admitted whole or not at all (counted first, as [`claim`] does, so two
/// batches racing past the limit may both be refused, never both admitted).
///
/// # Errors
/// [`ApiError::LimitReached`] with `code` and the seconds until the window ends; store
/// failures.
pub async fn spend(
    store: &dyn Store,
    limit: Limit,
    subject: &str,
    n: u32,
    now_ms: i64,
    code: &'static str,
) -> Result<(), ApiError> {
    match claim_n(store, limit, subject, n, now_ms).await? {
        Ok(_spent) => Ok(()),
        Err(retry_after_secs) => Err(ApiError::LimitReached {
            code,
            detail: format!("at most {} per {} s ({})", limit.max, limit.window.as_secs(), limit.name),
            retry_after_secs,
        }),
    }
}

/// Seconds from `now_ms` to a window's `end_ms`, at least 1.
fn retry_after(end_ms: i64, now_ms: i64) -> u64 {
    u64::try_from((end_ms - now_ms + 999) / 1000).unwrap_or(1).max(1)
}

/// One attempt counted against a limit before it is made ([`claim`]). Dropping it keeps the
/// count (a failed attempt); [`Claim::release`] takes it back (a success, or a request
/// refused before the attempt was made).
#[derive(Debug)]
pub struct Claim {
    key: Key,
    expires: i64,
    n: i64,
}

impl Claim {
    /// Takes the attempt back out of its window's count.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn release(self, store: &dyn Store) -> Result<(), StoreError> {
        add_to(store, &self.key, -self.n, self.expires).await.map(|_| ())
    }
}

/// Counts one attempt of `subject` against `limit` before it is made, refusing with 429 if
/// that passes the limit (the refused attempt is taken back out). Counting first is what
/// makes the limit hold under parallel attempts: a check before and a count after would
/// let every attempt of a burst pass the check before any was counted.
///
/// # Errors
/// [`ApiError::TooManyRequests`] with the seconds until the window ends, or a store error.
pub async fn claim(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<Claim, ApiError> {
    claim_n(store, limit, subject, 1, now_ms)
        .await?
        .map_err(|retry_after_secs| ApiError::TooManyRequests { retry_after_secs })
}

/// Counts `n` attempts before they are made; past the limit they are taken back out and the
/// answer is the seconds until the window ends.
async fn claim_n(
    store: &dyn Store,
    limit: Limit,
    subject: &str,
    n: u32,
    now_ms: i64,
) -> Result<Result<Claim, u64>, StoreError> {
    let (start, end) = window(limit, now_ms);
    let claim = Claim { key: key(limit, subject, start), expires: end / 1000 + 1, n: i64::from(n) };
    let count = add_to(store, &claim.key, claim.n, claim.expires).await?;
    if count > u64::from(limit.max) {
        claim.release(store).await?;
        return Ok(Err(retry_after(end, now_ms)));
    }
    Ok(Ok(claim))
}

/// Counts an attempt that counts whatever its outcome, refusing past the limit (a
/// [`claim`] that is kept).
///
/// # Errors
/// As [`claim`].
pub async fn take(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<(), ApiError> {
    claim(store, limit, subject, now_ms).await.map(drop)
}

/// Forgets `subject`'s attempts in the current window (after a successful login).
///
/// # Errors
/// When the store fails.
pub async fn clear(store: &dyn Store, limit: Limit, subject: &str, now_ms: i64) -> Result<(), StoreError> {
    let (start, _) = window(limit, now_ms);
    store.delete(crate::store::Delete::new(key(limit, subject, start))).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock as _, ManualClock};
    use crate::store::sqlite::SqliteStore;

    // 2026-11-30T23:59:58Z.
    const NOW: i64 = 1_796_083_198_000;

    fn store() -> (SqliteStore, ManualClock) {
        let clock = ManualClock::at(NOW);
        (SqliteStore::in_memory(Arc::new(clock.clone())).unwrap(), clock)
    }

    #[tokio::test]
    async fn a_rate_admits_its_burst_then_one_request_per_interval() {
        let (store, clock) = store();
        let states = RateStates::default();
        let rate = Rate { per_second: 10, burst: 5 };
        for left in (0..5).rev() {
            let d = admit(&store, &states, "p", "s", rate, clock.now_ms()).await.unwrap();
            assert!(d.admitted);
            assert_eq!(d.remaining, left);
        }
        let refused = admit(&store, &states, "p", "s", rate, clock.now_ms()).await.unwrap();
        assert_eq!((refused.admitted, refused.remaining, refused.retry_after_secs), (false, 0, 1));
        assert_eq!(refused.reset_secs, 1, "five tokens at 100 ms each come back within a second");
        // A refusal spends nothing: one interval later, exactly one more.
        clock.advance_ms(100);
        assert!(admit(&store, &states, "p", "s", rate, clock.now_ms()).await.unwrap().admitted);
        assert!(!admit(&store, &states, "p", "s", rate, clock.now_ms()).await.unwrap().admitted);
        // Another subject and another policy have their own.
        assert!(admit(&store, &states, "p", "other", rate, clock.now_ms()).await.unwrap().admitted);
        assert!(admit(&store, &states, "q", "s", rate, clock.now_ms()).await.unwrap().admitted);
        // After a quiet spell the whole burst is back, no more.
        clock.advance_ms(60_000);
        let admitted = admitted_of(&store, &states, rate, clock.now_ms(), 8).await;
        assert_eq!(admitted, 5);
        assert_eq!(rate.window_secs(), 1);
        assert_eq!(Rate { per_second: 5, burst: 12 }.window_secs(), 3);
        // A rate too fast to time in microseconds is a million a second, not a division by 0.
        let fastest = Rate { per_second: u32::MAX, burst: 2 };
        assert!(admit(&store, &states, "fast", "s", fastest, clock.now_ms()).await.unwrap().admitted);
        assert_eq!(fastest.window_secs(), 1);
    }

    async fn admitted_of(store: &SqliteStore, states: &RateStates, rate: Rate, now_ms: i64, n: usize) -> usize {
        let mut admitted = 0;
        for _ in 0..n {
            admitted += usize::from(admit(store, states, "p", "s", rate, now_ms).await.unwrap().admitted);
        }
        admitted
    }

    #[tokio::test]
    async fn concurrent_requests_never_spend_more_than_the_burst() {
        let (store, clock) = store();
        let store = Arc::new(store);
        let rate = Rate { per_second: 1, burst: 7 };
        let now = clock.now_ms();
        // Two "processes" (each its own memory of the rates it wrote) over one store.
        let processes = [Arc::new(RateStates::default()), Arc::new(RateStates::default())];
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (store, states) = (Arc::clone(&store), Arc::clone(&processes[i % 2]));
                tokio::spawn(async move { admit(store.as_ref(), &states, "p", "s", rate, now).await.unwrap().admitted })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 7);
    }

    #[tokio::test]
    async fn a_monthly_quota_counts_what_ran_and_starts_again_next_month() {
        let (store, clock) = store();
        let (month, start, end) = month_of(clock.now_ms());
        assert_eq!(month, "2026-11");
        assert_eq!(end - start, 30 * 24 * 3600 * 1000);
        let key = || Key::new("ACCOUNT#a", format!("API_USAGE#{}", month_of(clock.now_ms()).0));
        for left in (0..3).rev() {
            let d = count_in_month(&store, key(), 3, month_of(clock.now_ms()).2, clock.now_ms()).await.unwrap();
            assert_eq!((d.admitted, d.remaining, d.reset_secs), (true, left, 2));
        }
        let over = count_in_month(&store, key(), 3, month_of(clock.now_ms()).2, clock.now_ms()).await.unwrap();
        assert_eq!((over.admitted, over.retry_after_secs), (false, 2));
        assert_eq!(store.get(&key()).await.unwrap().unwrap().data["n"], 3, "the refused request is not counted");
        clock.advance_ms(2_000);
        assert_eq!(month_of(clock.now_ms()).0, "2026-12");
        assert_eq!(month_of(clock.now_ms()).2 - month_of(clock.now_ms()).1, 31 * 24 * 3600 * 1000);
        assert!(count_in_month(&store, key(), 3, month_of(clock.now_ms()).2, clock.now_ms()).await.unwrap().admitted);
    }
}
