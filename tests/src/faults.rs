//! Store and queue faults on demand.
//!
//! - [`FaultyStore`] answers [`StoreError::Unavailable`] for the items a test names, so a
//!   test can show what a route does during an outage of just the data it needs.
//! - [`Chaos`], with [`ChaosStore`] and [`ChaosQueue`], injects faults at random (seeded, so
//!   a run can be replayed) into every operation: throttling (refused before anything
//!   happens), timeouts (the write or send *was applied* and the caller still sees an error,
//!   as a lost response looks), outages of reads and receives, and failed acknowledgements
//!   after a message was handled (it comes back). With the DynamoDB adapter, a transaction
//!   cancelled for a conflict is also an outage (see `StoreError`), so these are every error
//!   the ports can give that the caller did not cause. Conditional-check failures come from
//!   real conditions only: injecting one where the condition held would be a lie the
//!   callers cannot be expected to survive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shared::queue::{Outgoing, Queue, QueueError, Received};
use shared::store::{Delete, Item, Key, Page, Put, Query, Scan, Store, StoreError, TxOp, Update};

/// Which operations fail: given the partition key and the sort key (empty for a query).
pub type FaultRule = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// A store that fails the operations its rule selects and passes the rest to `inner`.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    rule: FaultRule,
}

impl FaultyStore {
    /// `inner`, failing what `rule` selects.
    pub fn new(inner: Arc<dyn Store>, rule: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        Self { inner, rule: Arc::new(rule) }
    }

    fn check(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
        if (self.rule)(pk, sk) {
            Err(StoreError::Unavailable(anyhow::anyhow!("injected outage of {pk} / {sk}")))
        } else {
            Ok(())
        }
    }

    fn check_key(&self, key: &Key) -> Result<(), StoreError> {
        self.check(&key.pk, &key.sk)
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.check_key(key)?;
        self.inner.get(key).await
    }

    async fn put(&self, put: Put) -> Result<Item, StoreError> {
        self.check_key(&put.item.key)?;
        self.inner.put(put).await
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        self.check_key(&update.key)?;
        self.inner.update(update).await
    }

    async fn delete(&self, delete: Delete) -> Result<Option<Item>, StoreError> {
        self.check_key(&delete.key)?;
        self.inner.delete(delete).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.check(&query.partition, "")?;
        self.inner.query(query).await
    }

    async fn scan(&self, scan: Scan) -> Result<Page, StoreError> {
        let page = self.inner.scan(scan).await?;
        for item in &page.items {
            self.check_key(&item.key)?;
        }
        Ok(page)
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        for op in &ops {
            self.check_key(op.key())?;
        }
        self.inner.transact(ops).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// The dice of a fault-injection run: a seeded generator, a rate, a switch, and a tally of
/// what was injected (a test asserts faults did fire, so it cannot pass vacuously).
pub struct Chaos {
    state: Mutex<u64>,
    per_million: u64,
    applied_errors: bool,
    on: AtomicBool,
    tally: Mutex<BTreeMap<&'static str, u64>>,
    /// Counts of operations by kind (`store write`, `queue ack`...), faulted or not.
    seen: Mutex<BTreeMap<&'static str, u64>>,
    /// Instead of dice: fault exactly the `n`th operation of a kind, as `When`.
    script: Option<(&'static str, u64, When)>,
}

impl Chaos {
    /// Faults at `rate` (0 to 1) of operations, from `seed`.
    pub fn new(seed: u64, rate: f64) -> Arc<Self> {
        Arc::new(Self::build(seed, rate, true, None))
    }

    fn build(seed: u64, rate: f64, applied_errors: bool, script: Option<(&'static str, u64, When)>) -> Self {
        // The rate is a probability: the cast keeps its first six decimals.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let per_million = (rate.clamp(0.0, 1.0) * 1_000_000.0) as u64;
        Self {
            state: Mutex::new(seed),
            per_million,
            applied_errors,
            on: AtomicBool::new(true),
            tally: Mutex::default(),
            seen: Mutex::default(),
            script,
        }
    }

    /// Exactly one fault: the `n`th store write (1-based, counted over the whole run, every
    /// function's) is refused before it is applied.
    pub fn nth_write_refused(n: u64) -> Arc<Self> {
        Arc::new(Self::build(0, 0.0, true, Some(("store write", n, When::Before))))
    }

    /// Exactly one fault: the `n`th store write is applied, then reported failed.
    pub fn nth_write_lost(n: u64) -> Arc<Self> {
        Arc::new(Self::build(0, 0.0, true, Some(("store write", n, When::After))))
    }

    /// Exactly one fault: the `n`th acknowledgement of a handled message fails.
    pub fn nth_ack_failed(n: u64) -> Arc<Self> {
        Arc::new(Self::build(0, 0.0, true, Some(("queue ack", n, When::Before))))
    }

    /// How many operations of each kind passed through (`store write`, `store read`,
    /// `queue send`, `queue receive`, `queue ack`).
    pub fn seen(&self) -> BTreeMap<&'static str, u64> {
        self.seen.lock().unwrap().clone()
    }

    /// Counts an operation of `kind`; `Some(when)` if the script faults this one.
    fn scripted(&self, kind: &'static str) -> Option<Option<When>> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(kind).or_default();
            *n += 1;
            *n
        };
        let (k, at, when) = self.script?;
        Some((k == kind && at == n && self.on.load(Ordering::SeqCst)).then(|| {
            *self
                .tally
                .lock()
                .unwrap()
                .entry(if when == When::Before { "scripted refusal" } else { "scripted lost answer" })
                .or_default() += 1;
            when
        }))
    }

    /// As [`Chaos::new`], but a write or send is only ever refused before it happens, never
    /// applied and then reported failed. For the routes: a client cannot tell a timed-out
    /// POST that was applied from one that was not, and only an idempotency key lets it
    /// retry safely (the API has none yet).
    pub fn refusals_only(seed: u64, rate: f64) -> Arc<Self> {
        Arc::new(Self::build(seed, rate, false, None))
    }

    /// Stops injecting (to read the final state undisturbed).
    pub fn stop(&self) {
        self.on.store(false, Ordering::SeqCst);
    }

    /// How many faults of each kind were injected.
    pub fn tally(&self) -> BTreeMap<&'static str, u64> {
        self.tally.lock().unwrap().clone()
    }

    /// The next number of the generator (splitmix64).
    fn next(&self) -> u64 {
        let mut state = self.state.lock().unwrap();
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Whether to inject a fault into an operation of `op` now (`kind` names the fault).
    fn roll_op(&self, op: &'static str, kind: &'static str) -> bool {
        match self.scripted(op) {
            Some(scripted) => scripted.is_some(),
            None => self.roll(kind),
        }
    }

    /// Whether to inject `kind` now.
    fn roll(&self, kind: &'static str) -> bool {
        if !self.on.load(Ordering::SeqCst) || self.next() % 1_000_000 >= self.per_million {
            return false;
        }
        *self.tally.lock().unwrap().entry(kind).or_default() += 1;
        true
    }

    /// For a write: `Before` (refused, nothing applied), `After` (applied, then an error),
    /// or none.
    fn roll_write(&self, op: &'static str, what: &'static str, applied: &'static str) -> Option<When> {
        if let Some(scripted) = self.scripted(op) {
            return scripted;
        }
        if !self.on.load(Ordering::SeqCst) || self.next() % 1_000_000 >= self.per_million {
            return None;
        }
        let when = if !self.applied_errors || self.next().is_multiple_of(2) { When::Before } else { When::After };
        let kind = if when == When::Before { what } else { applied };
        *self.tally.lock().unwrap().entry(kind).or_default() += 1;
        Some(when)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
}

fn store_down(kind: &str) -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("injected fault: {kind}"))
}

fn queue_down(kind: &str) -> QueueError {
    QueueError::Unavailable(anyhow::anyhow!("injected fault: {kind}"))
}

/// A store with [`Chaos`] in front of it.
pub struct ChaosStore {
    inner: Arc<dyn Store>,
    chaos: Arc<Chaos>,
}

impl ChaosStore {
    /// `inner`, disturbed by `chaos`.
    pub fn new(inner: Arc<dyn Store>, chaos: Arc<Chaos>) -> Self {
        Self { inner, chaos }
    }

    async fn write<T>(&self, write: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match self.chaos.roll_write("store write", "store write throttled", "store write timed out after it applied") {
            Some(When::Before) => Err(store_down("throttled")),
            Some(When::After) => {
                write.await?;
                Err(store_down("timed out after the write applied"))
            }
            None => write.await,
        }
    }

    fn read(&self) -> Result<(), StoreError> {
        if self.chaos.roll_op("store read", "store read unavailable") {
            Err(store_down("read unavailable"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for ChaosStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.read()?;
        self.inner.get(key).await
    }

    async fn put(&self, put: Put) -> Result<Item, StoreError> {
        self.write(self.inner.put(put)).await
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        self.write(self.inner.update(update)).await
    }

    async fn delete(&self, delete: Delete) -> Result<Option<Item>, StoreError> {
        self.write(self.inner.delete(delete)).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.read()?;
        self.inner.query(query).await
    }

    async fn scan(&self, scan: Scan) -> Result<Page, StoreError> {
        self.read()?;
        self.inner.scan(scan).await
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        self.write(self.inner.transact(ops)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// A queue with [`Chaos`] in front of it.
pub struct ChaosQueue {
    inner: Arc<dyn Queue>,
    chaos: Arc<Chaos>,
}

impl ChaosQueue {
    /// `inner`, disturbed by `chaos`.
    pub fn new(inner: Arc<dyn Queue>, chaos: Arc<Chaos>) -> Self {
        Self { inner, chaos }
    }
}

#[async_trait]
impl Queue for ChaosQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn is_fifo(&self) -> bool {
        self.inner.is_fifo()
    }

    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        match self.chaos.roll_write("queue send", "queue send throttled", "queue send timed out after it was sent") {
            Some(When::Before) => Err(queue_down("send throttled")),
            Some(When::After) => {
                self.inner.send(message).await?;
                Err(queue_down("send timed out after it was sent"))
            }
            None => self.inner.send(message).await,
        }
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Received>, QueueError> {
        if self.chaos.roll_op("queue receive", "queue receive unavailable") {
            return Err(queue_down("receive unavailable"));
        }
        self.inner.receive(max, wait).await
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        // Called after the message was handled: failing it brings the message back.
        if self.chaos.roll_op("queue ack", "queue ack failed after the message was handled") {
            return Err(queue_down("ack failed"));
        }
        self.inner.ack(receipt).await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        if self.chaos.roll_op("queue visibility change", "queue visibility change unavailable") {
            return Err(queue_down("visibility change unavailable"));
        }
        self.inner.change_visibility(receipt, timeout).await
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<Received>, QueueError> {
        self.inner.dead_letters(max).await
    }

    async fn redrive(&self, max: u32) -> Result<u32, QueueError> {
        self.inner.redrive(max).await
    }

    async fn send_to_dead_letters(&self, body: &str, group_id: Option<&str>) -> Result<(), QueueError> {
        self.inner.send_to_dead_letters(body, group_id).await
    }

    async fn backlog(&self) -> Result<shared::queue::Backlog, QueueError> {
        self.inner.backlog().await
    }
}

/// `services` with every store and queue operation passing through `chaos`.
pub fn chaotic(services: shared::services::Services, chaos: &Arc<Chaos>) -> shared::services::Services {
    let store: Arc<dyn Store> = Arc::new(ChaosStore::new(Arc::clone(&services.store), Arc::clone(chaos)));
    let queues = shared::queue::Queues::new(
        services
            .queues
            .all()
            .map(|(name, q)| (name, Arc::new(ChaosQueue::new(Arc::clone(q), Arc::clone(chaos))) as Arc<dyn Queue>))
            .collect(),
    );
    shared::services::Services { store, queues, ..services }
}

/// What a store holds, as shapes: each item's partition and sort key with ids, hashes and
/// numbers replaced by placeholders, counted. Two runs of one journey hold the same shapes,
/// whatever ids they drew; a partial write (an account without its owner, a member without
/// its account) shows as a shape too many or too few.
///
/// # Panics
/// If the embedded database cannot be read.
pub fn item_shapes(database: &std::path::Path) -> BTreeMap<String, usize> {
    let db = rusqlite::Connection::open(database).unwrap();
    let mut statement = db.prepare("SELECT pk, sk FROM items").unwrap();
    let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap();
    let mut shapes = BTreeMap::new();
    for row in rows {
        let (pk, sk) = row.unwrap();
        *shapes.entry(format!("{} / {}", shape(&pk), shape(&sk))).or_default() += 1;
    }
    shapes
}

fn shape(key: &str) -> String {
    let masked = |part: &str| {
        let ulid = part.len() == 26 && part.chars().all(|c| c.is_ascii_alphanumeric());
        let hash = part.len() >= 16 && part.chars().all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_');
        let number = !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
        ulid || hash || number
    };
    // Ids built from words and ids (`member-joined-<ULID>`, a webhook message) keep their words.
    let segment = |part: &str| {
        if masked(part) {
            "*".to_owned()
        } else {
            part.split('-').map(|p| if masked(p) { "*" } else { p }).collect::<Vec<_>>().join("-")
        }
    };
    key.split('#').map(|part| part.split(':').map(segment).collect::<Vec<_>>().join(":")).collect::<Vec<_>>().join("#")
}
