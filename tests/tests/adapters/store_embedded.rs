//! The storage contract on the embedded (SQLite) adapter, in a file like the local stack's.

use shared::store::ExpirySweep as _;
use std::sync::Arc;

use shared::clock::ManualClock;
use shared::store::sqlite::SqliteStore;
use testkit::T0_MS;
use testkit::store_contract::StoreFixture;

async fn embedded() -> StoreFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at(T0_MS);
    let store = SqliteStore::open(&dir.path().join("db.sqlite3"), Arc::new(clock.clone())).expect("open store");
    StoreFixture { store: Arc::new(store), clock, guard: Box::new(dir) }
}

testkit::store_contract_suite!(embedded());

mod migrations {
    use super::*;
    testkit::migration_contract_suite!(embedded());
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    use shared::store::{Item, Key, Put, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let clock = Arc::new(ManualClock::at(T0_MS));
    {
        let store = SqliteStore::open(&path, clock.clone()).unwrap();
        store.put(Put::new(Item::new(Key::new("P", "S")).with("kept", true))).await.unwrap();
    }
    let store = SqliteStore::open(&path, clock).unwrap();
    assert_eq!(store.get(&Key::new("P", "S")).await.unwrap().unwrap().data["kept"], true);
}

#[tokio::test]
async fn the_sweeper_removes_only_expired_rows() {
    use shared::store::{Item, Key, Put, Store};
    let clock = ManualClock::at(T0_MS);
    let store = SqliteStore::in_memory(Arc::new(clock.clone())).unwrap();
    let now = T0_MS / 1000;
    store.put(Put::new(Item::new(Key::new("P", "old")).expiring_at(now + 1))).await.unwrap();
    store.put(Put::new(Item::new(Key::new("P", "new")).expiring_at(now + 100))).await.unwrap();
    store.put(Put::new(Item::new(Key::new("P", "forever")))).await.unwrap();
    clock.advance_ms(2_000);
    assert_eq!(store.sweep_expired().await.unwrap(), 1);
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
}
