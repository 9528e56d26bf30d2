//! Store faults on demand: [`FaultyStore`] wraps a real store and answers
//! [`StoreError::Unavailable`] for the items a test names, so a test can show what a route
//! does during an outage of just the data it needs (after authentication has succeeded).

use std::sync::Arc;

use async_trait::async_trait;
use shared::store::{Delete, Item, Key, Page, Put, Query, Store, StoreError, TxOp, Update};

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
