//! The storage contract on the DynamoDB adapter, against a real DynamoDB API server on
//! loopback, one fresh table per test.

use std::sync::Arc;

use shared::clock::ManualClock;
use shared::store::dynamodb::DynamoStore;
use testkit::T0_MS;
use testkit::store_contract::StoreFixture;

async fn dynamodb() -> StoreFixture {
    let client = testkit::moto::dynamodb().await;
    let table = testkit::moto::fresh_table(&client).await;
    let clock = ManualClock::at(T0_MS);
    StoreFixture {
        store: Arc::new(DynamoStore::new(client, table, Arc::new(clock.clone()))),
        clock,
        guard: Box::new(()),
    }
}

testkit::store_contract_suite!(dynamodb());

mod migrations {
    use super::*;
    testkit::migration_contract_suite!(dynamodb());
}

#[tokio::test]
async fn an_unreachable_table_is_unavailable_not_a_panic() {
    use shared::store::{Key, Store, StoreError};
    let client = testkit::moto::dynamodb().await;
    let store = DynamoStore::new(client, "no-such-table", Arc::new(ManualClock::at(T0_MS)));
    let err = store.get(&Key::new("a", "b")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(store.ping().await.is_err());
}
