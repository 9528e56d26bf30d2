//! In-process serialization of read-modify-writes on one item.
//!
//! Items written under an optimistic condition (a rate's version, an audit stream's head)
//! stay correct across processes and Lambda containers: a write whose condition fails reads
//! again. But when many requests of one process hit the same item at once, they all read the
//! same version and all but one fail, round after round, until some give up: parallel
//! requests of one user were refused as rate limited with tokens left, and parallel failed
//! sign-ins answered 503 for a contended audit stream. Taking a lock per item first lets the
//! requests of one process go one at a time, each condition holding at its first try; only
//! writes from other processes can still make one fail.
//!
//! The locks are striped (an item maps to one of a fixed number of mutexes by a hash of its
//! key), so memory stays bounded whatever the number of items. Holders must not take a
//! second one while holding the first (two keys may share a stripe).

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use tokio::sync::{Mutex, MutexGuard};

/// How many mutexes the process-wide lock has.
const STRIPES: usize = 256;

/// A set of striped async mutexes, first come first served.
#[derive(Debug)]
pub struct KeyedLock {
    stripes: Box<[Mutex<()>]>,
}

impl KeyedLock {
    /// A lock with `stripes` mutexes (at least 1).
    pub fn new(stripes: usize) -> Self {
        Self { stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect() }
    }

    /// Waits for the stripe of `key`; the guard releases it when dropped.
    pub async fn lock(&self, key: &(impl Hash + ?Sized)) -> MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let i = usize::try_from(h.finish() % self.stripes.len() as u64).unwrap_or(0);
        self.stripes[i].lock().await
    }
}

/// The process's lock, shared by every module that serializes writes to one item.
pub fn process() -> &'static KeyedLock {
    static LOCK: OnceLock<KeyedLock> = OnceLock::new();
    LOCK.get_or_init(|| KeyedLock::new(STRIPES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_waits_for_its_holder() {
        let lock = KeyedLock::new(4);
        let held = lock.lock("a").await;
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), lock.lock("a")).await.is_err());
        drop(held);
        let _again = lock.lock("a").await;
    }
}
