//! The storage and queue contract suites, instantiated for each adapter: embedded (SQLite)
//! and AWS (DynamoDB, SQS) on the loopback API server the test command starts.

mod queue_embedded;
mod queue_sqs;
mod store_dynamodb;
mod store_embedded;
