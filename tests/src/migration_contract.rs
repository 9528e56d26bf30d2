//! The data-migration contract: what [`shared::migrations::run`] guarantees on every
//! [`Store`] adapter, stated as tests (once only, in order, resumable after a failure or a
//! crash, never two runners at once). [`migration_contract_suite!`] instantiates them for
//! one adapter, over the same fixtures as the storage contract.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shared::clock::{Clock, ManualClock};
use shared::id::{AccountId, UserId};
use shared::migrations::{self, LEASE, Migration, MigrationError, Outcome};
use shared::store::{Cursor, Item, Key, Put, Query, Scan, Store, StoreError, StoreExt, Update};
use shared::tenancy::Account;

use crate::store_contract::StoreFixture;

/// Instantiates every migration contract case for one adapter. `$make` is an async
/// expression producing a [`StoreFixture`].
#[macro_export]
macro_rules! migration_contract_suite {
    ($make:expr) => {
        $crate::migration_contract_suite!(@cases $make;
            migrations_run_once_each_in_order,
            the_account_directory_migration_lists_every_account,
            a_failed_step_keeps_the_checkpoint_and_releases_the_lock,
            a_crashed_runner_is_taken_over_when_its_lease_ends,
            concurrent_runners_never_overlap,
            a_paused_run_resumes_where_it_stopped,
            a_runner_whose_lock_was_taken_over_stops,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fixture: $crate::store_contract::StoreFixture = $make.await;
                $crate::migration_contract::$case(&fixture).await;
            }
        )*
    };
}

/// Rows the test migrations visit: `ROW#<i>` / `ROW`.
const ROW_PREFIX: &str = "ROW#";

async fn put_rows(s: &dyn Store, n: usize) {
    for i in 0..n {
        s.put(Put::new(Item::new(Key::new(format!("{ROW_PREFIX}{i:03}"), "ROW")).with("visits", 0))).await.unwrap();
    }
}

/// How many times each row was visited, by row.
async fn visits(s: &dyn Store, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for i in 0..n {
        let item = s.get(&Key::new(format!("{ROW_PREFIX}{i:03}"), "ROW")).await.unwrap().unwrap();
        out.push(item.data["visits"].as_i64().unwrap());
    }
    out
}

type Hook = Box<dyn Fn(u32) -> Result<(), StoreError> + Send + Sync>;

/// A migration that visits every row, `page` table items per step, counting its visits,
/// with a hook called before each step (numbered from 1) to fail, stall or move the clock.
struct Visit {
    number: u32,
    page: u32,
    steps: AtomicU32,
    running: AtomicUsize,
    most_running: AtomicUsize,
    hook: Hook,
    stall_at: Option<u32>,
    /// Before this step, move the clock past the lease and take the lock as `runner-b`.
    takeover: Option<(u32, ManualClock)>,
    order: Arc<Mutex<Vec<u32>>>,
}

impl Visit {
    fn new(number: u32, page: u32) -> Self {
        Self {
            number,
            page,
            steps: AtomicU32::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
            hook: Box::new(|_| Ok(())),
            stall_at: None,
            takeover: None,
            order: Arc::default(),
        }
    }

    fn hook(mut self, hook: impl Fn(u32) -> Result<(), StoreError> + Send + Sync + 'static) -> Self {
        self.hook = Box::new(hook);
        self
    }
}

#[async_trait]
impl Migration for Visit {
    fn number(&self) -> u32 {
        self.number
    }

    fn name(&self) -> &'static str {
        "visit every row"
    }

    async fn step(&self, store: &dyn Store, from: Option<Cursor>) -> Result<Option<Cursor>, StoreError> {
        let step = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        self.order.lock().unwrap().push(self.number);
        (self.hook)(step)?;
        if self.stall_at == Some(step) {
            std::future::pending::<()>().await;
        }
        if let Some((_, clock)) = self.takeover.as_ref().filter(|(at, _)| *at == step) {
            clock.advance_ms(i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX) + 1_000);
            let lock =
                Item::new(shared::keys::migration_lock()).with("runner", "runner-b").expiring_at(clock.now_secs() + 60);
            store.put(Put::new(lock).if_not_exists()).await?;
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let page = store.scan(Scan::new(self.page).after(from)).await;
        // Long enough for a concurrent runner to overlap, were it let in.
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let page = page?;
        for item in page.items.iter().filter(|i| i.key.pk.starts_with(ROW_PREFIX)) {
            store.update(Update::new(item.key.clone()).add("visits", 1)).await?;
        }
        Ok(page.next)
    }
}

fn injected() -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("injected failure"))
}

async fn lock_holder(s: &dyn Store) -> Option<String> {
    s.get(&shared::keys::migration_lock()).await.unwrap().map(|i| i.data["runner"].as_str().unwrap().to_owned())
}

async fn record(s: &dyn Store, number: u32) -> Option<migrations::MigrationRecord> {
    migrations::records(s).await.unwrap().into_iter().find(|r| r.number == number)
}

/// Pending migrations run in ascending number whatever the list's order, are recorded as
/// done, and never run again.
pub async fn migrations_run_once_each_in_order(f: &StoreFixture) {
    let s = f.store.as_ref();
    put_rows(s, 5).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut second = Visit::new(11, 100);
    second.order = Arc::clone(&order);
    let mut first = Visit::new(10, 2);
    first.order = Arc::clone(&order);
    let list: [&dyn Migration; 2] = [&second, &first];
    let outcome = migrations::run(s, &f.clock, &list, "runner-a", None).await.unwrap();
    assert_eq!(outcome, Outcome::Complete { applied: vec![10, 11] });
    let order = order.lock().unwrap().clone();
    let switch = order.iter().position(|&n| n == 11).unwrap();
    assert!(order[..switch].iter().all(|&n| n == 10) && order[switch..].iter().all(|&n| n == 11), "{order:?}");
    assert_eq!(visits(s, 5).await, [2; 5]);
    let done = record(s, 10).await.unwrap();
    assert!(done.done && done.cursor.is_none() && done.done_at_ms.is_some(), "{done:?}");
    assert_eq!(done.steps, u64::from(first.steps.load(Ordering::SeqCst)));
    assert_eq!(lock_holder(s).await, None, "the lock is released");

    let steps_before = first.steps.load(Ordering::SeqCst) + second.steps.load(Ordering::SeqCst);
    let again = migrations::run(s, &f.clock, &list, "runner-b", None).await.unwrap();
    assert_eq!(again, Outcome::Complete { applied: vec![] });
    assert_eq!(first.steps.load(Ordering::SeqCst) + second.steps.load(Ordering::SeqCst), steps_before);
    assert_eq!(visits(s, 5).await, [2; 5]);
}

fn account(id: AccountId, at_ms: i64) -> Account {
    Account {
        id,
        name: format!("Account {id}"),
        created_by: UserId::new(),
        created_at_ms: at_ms,
        org_id: None,
        require_mfa: false,
        deleted_at_ms: None,
        purge_after_ms: None,
    }
}

/// Migration 1 puts every account written before the directory into it, touches nothing
/// else, and a second run changes nothing.
pub async fn the_account_directory_migration_lists_every_account(f: &StoreFixture) {
    let s = f.store.as_ref();
    let mut ids = Vec::new();
    for i in 0..7 {
        let a = account(AccountId::new(), i);
        // As the releases before the directory wrote them: no index key.
        s.put(Put::new(Item::from_record(shared::keys::account(a.id), &a).unwrap())).await.unwrap();
        ids.push(a.id);
    }
    let already = account(AccountId::new(), 8);
    s.put(Put::new(shared::tenancy::account_item(&already).unwrap())).await.unwrap();
    ids.push(already.id);
    let member = Key::new(shared::keys::account_partition(ids[0]), "MEMBER#someone");
    s.put(Put::new(Item::new(member.clone()).with("role", "owner"))).await.unwrap();
    put_rows(s, 3).await;
    assert_eq!(shared::tenancy::directory_page(s, 100, None).await.unwrap().0.len(), 1);

    let outcome = migrations::run(s, &f.clock, migrations::ALL, "runner-a", None).await.unwrap();
    assert_eq!(outcome, Outcome::Complete { applied: vec![1] });
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let (accounts, next) = shared::tenancy::directory_page(s, 3, cursor).await.unwrap();
        listed.extend(accounts.into_iter().map(|a| a.id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.sort();
    assert_eq!(listed, ids, "every account once, in creation (id) order");
    assert!(s.get(&member).await.unwrap().unwrap().gsi1.is_none(), "only account records are listed");
    let migrated = s.get(&shared::keys::account(ids[0])).await.unwrap().unwrap();
    assert_eq!(migrated.record::<Account>().unwrap().id, ids[0], "the record itself is untouched");
    let again = migrations::run(s, &f.clock, migrations::ALL, "runner-b", None).await.unwrap();
    assert_eq!(again, Outcome::Complete { applied: vec![] });
}

/// A step that fails leaves the migration undone at its last checkpoint, with the lock
/// released; the next run resumes there and does not redo the checkpointed steps.
pub async fn a_failed_step_keeps_the_checkpoint_and_releases_the_lock(f: &StoreFixture) {
    let s = f.store.as_ref();
    put_rows(s, 10).await;
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let failing = Arc::clone(&fail);
    let m = Visit::new(20, 2)
        .hook(move |step| if step == 3 && failing.load(Ordering::SeqCst) { Err(injected()) } else { Ok(()) });
    let err = migrations::run(s, &f.clock, &[&m], "runner-a", None).await.unwrap_err();
    assert!(matches!(err, MigrationError::Failed { number: 20, .. }), "{err:?}");
    let kept = record(s, 20).await.unwrap();
    assert!(!kept.done && kept.cursor.is_some(), "{kept:?}");
    assert_eq!(kept.steps, 2);
    assert_eq!(lock_holder(s).await, None, "the lock is released after a failure");
    // Two pages of two table items, some of them the migration's own bookkeeping.
    let before: i64 = visits(s, 10).await.iter().sum();
    assert!((1..=4).contains(&before), "{before} rows visited in two steps");

    fail.store(false, Ordering::SeqCst);
    let outcome = migrations::run(s, &f.clock, &[&m], "runner-b", None).await.unwrap();
    assert_eq!(outcome, Outcome::Complete { applied: vec![20] });
    assert_eq!(visits(s, 10).await, [1; 10], "resumed at the checkpoint: no row twice");
}

/// A runner that dies mid-step (its future dropped, as a killed process) keeps the lock
/// until its lease ends: meanwhile others are told it is busy; then the next runner takes
/// over from the last checkpoint.
pub async fn a_crashed_runner_is_taken_over_when_its_lease_ends(f: &StoreFixture) {
    let s = f.store.as_ref();
    put_rows(s, 10).await;
    let mut crashing = Visit::new(30, 2);
    crashing.stall_at = Some(3);
    let crashed =
        tokio::time::timeout(Duration::from_millis(300), migrations::run(s, &f.clock, &[&crashing], "runner-a", None))
            .await;
    assert!(crashed.is_err(), "the run stalls at its third step");
    assert_eq!(lock_holder(s).await.as_deref(), Some("runner-a"));

    let healthy = Visit::new(30, 2);
    let busy = migrations::run(s, &f.clock, &[&healthy], "runner-b", None).await.unwrap();
    assert_eq!(busy, Outcome::Busy { holder: "runner-a".into() });
    assert_eq!(healthy.steps.load(Ordering::SeqCst), 0);

    f.clock.advance_ms(i64::try_from(LEASE.as_millis()).unwrap() + 1_000);
    let outcome = migrations::run(s, &f.clock, &[&healthy], "runner-b", None).await.unwrap();
    assert_eq!(outcome, Outcome::Complete { applied: vec![30] });
    assert_eq!(visits(s, 10).await, [1; 10], "the crash was after a checkpoint: no row twice");
    assert_eq!(record(s, 30).await.unwrap().steps, 2 + u64::from(healthy.steps.load(Ordering::SeqCst)));
}

/// Two runners started together: one does the work, the other is told the lock is held
/// (or finds it done); no step runs twice or in parallel.
pub async fn concurrent_runners_never_overlap(f: &StoreFixture) {
    let s = f.store.as_ref();
    put_rows(s, 12).await;
    let m = Visit::new(40, 3);
    let list: [&dyn Migration; 1] = [&m];
    let (a, b) = tokio::join!(
        migrations::run(s, &f.clock, &list, "runner-a", None),
        migrations::run(s, &f.clock, &list, "runner-b", None),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let applied = outcomes.iter().filter(|o| **o == Outcome::Complete { applied: vec![40] }).count();
    assert_eq!(applied, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| matches!(o, Outcome::Busy { .. }) || *o == Outcome::Complete { applied: vec![] }),
        "{outcomes:?}"
    );
    assert_eq!(m.most_running.load(Ordering::SeqCst), 1, "never two steps at once");
    assert_eq!(visits(s, 12).await, [1; 12]);
}

/// A run stops at its deadline with the work checkpointed and the lock released; the next
/// run goes on from there.
pub async fn a_paused_run_resumes_where_it_stopped(f: &StoreFixture) {
    let s = f.store.as_ref();
    put_rows(s, 10).await;
    let clock = f.clock.clone();
    let m = Visit::new(50, 2).hook(move |_| {
        clock.advance_ms(1_000);
        Ok(())
    });
    let deadline = f.clock.now_ms() + 2_500;
    let paused = migrations::run(s, &f.clock, &[&m], "runner-a", Some(deadline)).await.unwrap();
    assert_eq!(paused, Outcome::Paused { number: 50, applied: vec![] });
    assert_eq!(record(s, 50).await.unwrap().steps, 3);
    assert_eq!(lock_holder(s).await, None);
    let outcome = migrations::run(s, &f.clock, &[&m], "runner-b", None).await.unwrap();
    assert_eq!(outcome, Outcome::Complete { applied: vec![50] });
    assert_eq!(visits(s, 10).await, [1; 10]);
}

/// A runner whose lease was taken over (it stalled past its lease; another runner took the
/// lock) stops at its next checkpoint without writing the record or touching the new lock.
pub async fn a_runner_whose_lock_was_taken_over_stops(f: &StoreFixture) {
    let s = f.store.as_ref();
    put_rows(s, 6).await;
    let mut m = Visit::new(60, 2);
    m.takeover = Some((2, f.clock.clone()));
    let err = migrations::run(s, &f.clock, &[&m], "runner-a", None).await.unwrap_err();
    assert!(matches!(err, MigrationError::LockLost { number: 60 }), "{err:?}");
    assert_eq!(lock_holder(s).await.as_deref(), Some("runner-b"), "the new holder's lock stays");
    assert_eq!(record(s, 60).await.unwrap().steps, 1, "nothing recorded after the takeover");
    assert!(s.query_all(Query::partition(shared::keys::MIGRATIONS)).await.unwrap().len() >= 2);
}
