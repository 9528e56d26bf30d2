//! The DynamoDB/SQS API server on loopback (moto), started by the test command, which
//! exports its URL as `GROUNDWORK_MOTO_URL`. Tests that need it fail loudly without it:
//! the suites against the real API must never be skipped silently.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;

/// The variable that holds the server's URL.
pub const URL_VAR: &str = "GROUNDWORK_MOTO_URL";

/// The server's URL.
///
/// # Panics
/// If the test command did not start the server.
pub fn url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{URL_VAR} is not set: run the test suite with `./infra/test.sh`, which starts the \
             DynamoDB/SQS API server these tests need"
        )
    })
}

/// SDK configuration pointing at the server, with test credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(url())
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder().operation_timeout(Duration::from_secs(30)).build(),
        )
        .load()
        .await
}

/// A DynamoDB client for the server.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// An SQS client for the server.
pub async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config().await)
}

/// A name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Creates a fresh table with the production key schema; returns its name.
///
/// # Panics
/// If the server refuses.
pub async fn fresh_table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = unique_name("gw");
    shared::store::dynamodb::DynamoStore::create_table(client, &name)
        .await
        .unwrap_or_else(|e| panic!("creating table {name}: {e:?}"));
    name
}

/// The URLs of a fresh queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct QueuePair {
    /// The queue.
    pub url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
}

/// Creates a queue whose redrive policy dead-letters after `max_receives` receives.
///
/// # Panics
/// If the server refuses.
pub async fn fresh_queue(
    client: &aws_sdk_sqs::Client,
    fifo: bool,
    visibility_secs: u32,
    max_receives: u32,
) -> QueuePair {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let base = unique_name("q");
    let suffix = if fifo { ".fifo" } else { "" };
    let mut dlq = client.create_queue().queue_name(format!("{base}-dlq{suffix}"));
    if fifo {
        dlq = dlq.attributes(A::FifoQueue, "true");
    }
    let dlq_url = dlq.send().await.expect("create DLQ").queue_url.expect("DLQ url");
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes
        .and_then(|a| a.get(&A::QueueArn).cloned())
        .expect("DLQ arn");
    let mut q = client
        .create_queue()
        .queue_name(format!("{base}{suffix}"))
        .attributes(A::VisibilityTimeout, visibility_secs.to_string())
        .attributes(
            A::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}).to_string(),
        );
    if fifo {
        q = q.attributes(A::FifoQueue, "true");
    }
    let url = q.send().await.expect("create queue").queue_url.expect("queue url");
    QueuePair { url, dlq_url }
}
