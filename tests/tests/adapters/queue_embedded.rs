//! The queue contract on the embedded adapter.

use std::sync::Arc;

use shared::clock::SystemClock;
use shared::queue::embedded::{QueueDb, QueueSettings};
use testkit::queue_contract::{MAX_RECEIVES, QueueFixture, VISIBILITY};

async fn embedded(fifo: bool) -> QueueFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = QueueDb::open(&dir.path().join("db.sqlite3"), Arc::new(SystemClock)).expect("open queue db");
    let settings = QueueSettings { visibility_timeout: VISIBILITY, max_receives: MAX_RECEIVES, fifo };
    QueueFixture { queue: Arc::new(db.queue("test", settings)), guard: Box::new(dir) }
}

testkit::queue_contract_suite!(embedded);

#[tokio::test]
async fn messages_survive_reopening_the_file() {
    use shared::queue::{Outgoing, Queue};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    {
        let db = QueueDb::open(&path, Arc::new(SystemClock)).unwrap();
        db.queue("jobs", QueueSettings::default()).send(Outgoing::new("durable")).await.unwrap();
    }
    let db = QueueDb::open(&path, Arc::new(SystemClock)).unwrap();
    let got = db.queue("jobs", QueueSettings::default()).receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "durable");
}
