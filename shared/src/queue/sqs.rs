//! The production queue: Amazon SQS (standard or FIFO, decided by the `.fifo` URL suffix),
//! with its dead-letter queue configured by a redrive policy in `template.yaml`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

use super::{Outgoing, Queue, QueueError, Received, validate_max};
use crate::id::MessageId;

/// The SQS adapter of [`Queue`].
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    name: Arc<str>,
    url: Arc<str>,
    dlq_url: Arc<str>,
    fifo: bool,
}

impl SqsQueue {
    /// The queue at `url` whose redrive policy sends dead letters to `dlq_url`.
    pub fn new(client: Client, name: impl Into<String>, url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        let url: String = url.into();
        let fifo = url.ends_with(".fifo");
        Self { client, name: name.into().into(), url: url.into(), dlq_url: dlq_url.into().into(), fifo }
    }

    async fn receive_from(
        &self,
        url: &str,
        max: u32,
        wait: Duration,
        visibility: Option<i32>,
    ) -> Result<Vec<Received>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs().min(20)).unwrap_or(20))
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.messages.unwrap_or_default().into_iter().filter_map(to_received).collect())
    }
}

fn to_received(m: Message) -> Option<Received> {
    let attr = |name: MessageSystemAttributeName| m.attributes.as_ref().and_then(|a| a.get(&name)).cloned();
    Some(Received {
        receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        group_id: attr(MessageSystemAttributeName::MessageGroupId),
        id: m.message_id?,
        receipt: m.receipt_handle?,
        body: m.body.unwrap_or_default(),
    })
}

fn sdk_error<E, R>(e: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match e.code() {
        Some("ReceiptHandleIsInvalid" | "MessageNotInflight" | "AWS.SimpleQueueService.MessageNotInflight") => {
            QueueError::StaleReceipt
        }
        Some("InvalidParameterValue" | "InvalidMessageContents" | "MissingParameter") => {
            QueueError::Invalid(e.message().unwrap_or("SQS rejected the request").to_owned())
        }
        _ => QueueError::Unavailable(anyhow::Error::new(e).context("SQS call failed")),
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_fifo(&self) -> bool {
        self.fifo
    }

    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        message.validate(self.fifo)?;
        let delay = (!message.delay.is_zero()).then(|| i32::try_from(message.delay.as_secs()).unwrap_or(900));
        let out = self
            .client
            .send_message()
            .queue_url(self.url.as_ref())
            .message_body(message.body)
            .set_delay_seconds(delay)
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.dedup_id)
            .send()
            .await
            .map_err(sdk_error)?;
        out.message_id.ok_or_else(|| QueueError::Unavailable(anyhow::anyhow!("SQS returned no message id")))
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Received>, QueueError> {
        validate_max(max)?;
        self.receive_from(&self.url, max, wait, None).await
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(self.url.as_ref())
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error)
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        if timeout > Duration::from_secs(12 * 3600) {
            return Err(QueueError::Invalid("visibility timeout is at most 12 hours".into()));
        }
        self.client
            .change_message_visibility()
            .queue_url(self.url.as_ref())
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(timeout.as_secs()).unwrap_or(43_200))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error)
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<Received>, QueueError> {
        validate_max(max)?;
        // A zero visibility timeout leaves the messages where they are, visible.
        let mut letters = self.receive_from(&self.dlq_url, max, Duration::ZERO, Some(0)).await?;
        for l in &mut letters {
            l.receipt.clear();
            l.receive_count = 0;
        }
        Ok(letters)
    }

    async fn redrive(&self, max: u32) -> Result<u32, QueueError> {
        let mut moved = 0;
        while moved < max {
            let batch = self.receive_from(&self.dlq_url, (max - moved).min(10), Duration::ZERO, Some(30)).await?;
            if batch.is_empty() {
                break;
            }
            for letter in batch {
                let mut out = Outgoing::new(letter.body);
                if self.fifo {
                    // A fresh deduplication id: the original one may still be remembered.
                    out.group_id = Some(letter.group_id.unwrap_or_else(|| "redrive".into()));
                    out.dedup_id = Some(format!("redrive-{}", MessageId::new()));
                }
                self.send(out).await?;
                self.client
                    .delete_message()
                    .queue_url(self.dlq_url.as_ref())
                    .receipt_handle(letter.receipt)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn send_to_dead_letters(&self, body: &str, group_id: Option<&str>) -> Result<(), QueueError> {
        let fifo = self.dlq_url.ends_with(".fifo");
        self.client
            .send_message()
            .queue_url(self.dlq_url.as_ref())
            .message_body(body)
            .set_message_group_id(fifo.then(|| group_id.unwrap_or("dead-letters").to_owned()))
            .set_message_deduplication_id(fifo.then(|| format!("dead-{}", MessageId::new())))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error)
    }

    async fn backlog(&self) -> Result<super::Backlog, QueueError> {
        let (messages, dead_letters) = tokio::try_join!(self.count(&self.url), self.count(&self.dlq_url))?;
        Ok(super::Backlog { messages, dead_letters })
    }
}

impl SqsQueue {
    /// The approximate number of messages at `url`, visible or in flight.
    async fn count(&self, url: &str) -> Result<u64, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(sdk_error)?;
        let attributes = out.attributes.unwrap_or_default();
        let read = |name: &A| attributes.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(read(&A::ApproximateNumberOfMessages) + read(&A::ApproximateNumberOfMessagesNotVisible))
    }
}
