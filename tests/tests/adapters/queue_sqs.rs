//! The queue contract on the SQS adapter, against a real SQS API server on loopback, one
//! fresh queue (and dead-letter queue) per test.

use std::sync::Arc;

use shared::queue::sqs::SqsQueue;
use testkit::queue_contract::{MAX_RECEIVES, QueueFixture, VISIBILITY};

async fn sqs(fifo: bool) -> QueueFixture {
    let client = testkit::moto::sqs().await;
    let pair =
        testkit::moto::fresh_queue(&client, fifo, u32::try_from(VISIBILITY.as_secs()).unwrap(), MAX_RECEIVES).await;
    QueueFixture { queue: Arc::new(SqsQueue::new(client, "test", pair.url, pair.dlq_url)), guard: Box::new(()) }
}

testkit::queue_contract_suite!(sqs);
