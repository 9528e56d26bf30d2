//! What invokes functions besides the HTTP API, as the template wires it:
//!
//! - SQS event source mappings: each polls its queue (as its function's role does: the
//!   poller's calls are signed with the function's key), gathers up to `BatchSize` messages
//!   within `MaximumBatchingWindowInSeconds`, invokes the function with an SQS event, and
//!   deletes what succeeded: with `ReportBatchItemFailures`, all but the listed
//!   `batchItemFailures`; a response naming an id not in the batch, or an error, fails the
//!   whole batch. Failed messages come back after the queue's visibility timeout; the
//!   queue's redrive policy moves them to its dead-letter queue after `maxReceiveCount`.
//!   Source: AWS Lambda Developer Guide, "Using Lambda with Amazon SQS" and "Handling
//!   errors for an SQS event source".
//! - Schedules: an EventBridge `Scheduled Event` for the rule, on request (tests) or on its
//!   `rate(...)` (the interactive harness).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::functions::{Function, Invocation};
use super::resources::Aws;
use super::stack::{ACCOUNT, REGION};

/// One SQS event source mapping.
#[derive(Debug, Clone)]
pub struct SqsMapping {
    /// The consumer's logical id.
    pub function: String,
    /// The queue's ARN.
    pub queue_arn: String,
    /// The queue's URL.
    pub queue_url: String,
    /// `BatchSize` (default 10).
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub window: Duration,
    /// Whether `FunctionResponseTypes` has `ReportBatchItemFailures`.
    pub reports_failures: bool,
}

/// One schedule.
#[derive(Debug, Clone)]
pub struct ScheduleRule {
    /// The rule's name (`groundwork-local-purge-soft-deleted`).
    pub name: String,
    /// Its expression (`rate(1 hour)`).
    pub expression: String,
    /// The target's logical id.
    pub function: String,
    /// The target's `Input`, when the template gives one (sent instead of the event).
    pub input: Option<Value>,
}

impl ScheduleRule {
    /// The event EventBridge sends the target.
    pub fn event(&self) -> Value {
        if let Some(input) = &self.input {
            return input.clone();
        }
        json!({
            "version": "0",
            "id": ulid::Ulid::new().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": super::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": REGION,
            "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{}", self.name)],
            "detail": {},
        })
    }

    /// The period of a `rate(...)` expression (`cron(...)` has none here).
    pub fn period(&self) -> Option<Duration> {
        let inner = self.expression.strip_prefix("rate(")?.strip_suffix(')')?;
        let (n, unit) = inner.split_once(' ')?;
        let n: u64 = n.parse().ok()?;
        let seconds = match unit.trim_end_matches('s') {
            "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            _ => return None,
        };
        Some(Duration::from_secs(n * seconds))
    }
}

fn record(message: &Value, mapping: &SqsMapping) -> Value {
    let mut attributes = serde_json::Map::new();
    for (k, v) in message["MessageAttributes"].as_object().into_iter().flatten() {
        attributes.insert(
            k.clone(),
            json!({
                "stringValue": v.get("StringValue"),
                "binaryValue": v.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": v.get("DataType"),
            }),
        );
    }
    json!({
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": mapping.queue_arn,
        "awsRegion": REGION,
    })
}

async fn receive(sqs: &Aws, mapping: &SqsMapping, max: u32, wait: u64) -> Result<Vec<Value>> {
    let answer = sqs
        .json(
            "sqs",
            "AmazonSQS.ReceiveMessage",
            json!({
                "QueueUrl": mapping.queue_url,
                "MaxNumberOfMessages": max,
                "WaitTimeSeconds": wait,
                "AttributeNames": ["All"],
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }),
        )
        .await?;
    Ok(answer["Messages"].as_array().cloned().unwrap_or_default())
}

/// Which messages of a batch to delete after `outcome`, per the partial batch response
/// rules.
pub fn succeeded(batch: &[Value], outcome: &Invocation, reports_failures: bool) -> Vec<String> {
    let ids: Vec<String> = batch.iter().filter_map(|m| m["MessageId"].as_str().map(str::to_owned)).collect();
    let Invocation::Answered(answer) = outcome else { return Vec::new() };
    if !reports_failures {
        return ids;
    }
    let failures = match answer.get("batchItemFailures") {
        None | Some(Value::Null) => return ids,
        Some(Value::Array(failures)) => failures,
        // A malformed response fails the whole batch.
        Some(_) => return Vec::new(),
    };
    let mut failed = HashSet::new();
    for failure in failures {
        match failure.get("itemIdentifier").and_then(Value::as_str) {
            // An empty, missing or unknown identifier fails the whole batch.
            Some(id) if ids.iter().any(|i| i == id) => {
                failed.insert(id.to_owned());
            }
            _ => return Vec::new(),
        }
    }
    ids.into_iter().filter(|id| !failed.contains(id)).collect()
}

/// Runs `mapping` until the task is aborted.
pub async fn poll(mapping: SqsMapping, function: Arc<Function>, sqs: Aws, faults: Arc<Mutex<Vec<String>>>) {
    loop {
        let batch = match gather(&sqs, &mapping).await {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => continue,
            Err(e) => {
                faults.lock().unwrap().push(format!("polling for {}: {e:#}", mapping.function));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let event = json!({"Records": batch.iter().map(|m| record(m, &mapping)).collect::<Vec<_>>()});
        let outcome = function.invoke(event).await;
        match &outcome {
            Invocation::Answered(_) => {}
            Invocation::Failed(e) => {
                faults.lock().unwrap().push(format!("{} failed on an SQS batch: {e}", mapping.function))
            }
            Invocation::Crashed(m) | Invocation::InitFailed(m) => faults.lock().unwrap().push(m.clone()),
            Invocation::TimedOut => {
                faults.lock().unwrap().push(format!("{} timed out on an SQS batch", mapping.function))
            }
        }
        let done = succeeded(&batch, &outcome, mapping.reports_failures);
        for message in batch.iter().filter(|m| m["MessageId"].as_str().is_some_and(|id| done.iter().any(|d| d == id))) {
            let deleted = sqs
                .json(
                    "sqs",
                    "AmazonSQS.DeleteMessage",
                    json!({"QueueUrl": mapping.queue_url, "ReceiptHandle": message["ReceiptHandle"]}),
                )
                .await;
            if let Err(e) = deleted {
                faults.lock().unwrap().push(format!("deleting a message {} processed: {e:#}", mapping.function));
            }
        }
    }
}

/// One batch: a long poll, then more messages until the batch is full or the window ends.
async fn gather(sqs: &Aws, mapping: &SqsMapping) -> Result<Vec<Value>> {
    let mut batch = receive(sqs, mapping, mapping.batch_size.min(10), 1).await.context("ReceiveMessage")?;
    if batch.is_empty() {
        return Ok(batch);
    }
    let deadline = tokio::time::Instant::now() + mapping.window;
    while (batch.len() as u32) < mapping.batch_size && tokio::time::Instant::now() < deadline {
        let room = (mapping.batch_size - batch.len() as u32).min(10);
        let more = receive(sqs, mapping, room, 0).await?;
        if more.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for message in more {
            // A message that came back within the window is in the batch once.
            batch.retain(|m| m["MessageId"] != message["MessageId"]);
            batch.push(message);
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_batch_responses_follow_lambdas_rules() {
        let batch = vec![json!({"MessageId": "a"}), json!({"MessageId": "b"}), json!({"MessageId": "c"})];
        let answered = |v: Value| Invocation::Answered(v);
        assert_eq!(succeeded(&batch, &answered(json!({"batchItemFailures": []})), true), ["a", "b", "c"]);
        assert_eq!(
            succeeded(&batch, &answered(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})), true),
            ["a", "c"]
        );
        assert!(
            succeeded(&batch, &answered(json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]})), true).is_empty()
        );
        assert!(succeeded(&batch, &answered(json!({"batchItemFailures": [{"itemIdentifier": ""}]})), true).is_empty());
        assert!(succeeded(&batch, &Invocation::Failed(json!({})), true).is_empty());
        assert!(succeeded(&batch, &Invocation::TimedOut, true).is_empty());
        assert!(succeeded(&batch, &answered(json!({"batchItemFailures": "b"})), true).is_empty());
        // Without ReportBatchItemFailures, an answer is success for the whole batch.
        assert_eq!(
            succeeded(&batch, &answered(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})), false).len(),
            3
        );
    }

    #[test]
    fn rates_have_periods() {
        let rule = |e: &str| ScheduleRule { name: "r".into(), expression: e.into(), function: "F".into(), input: None };
        assert_eq!(rule("rate(1 minute)").period(), Some(Duration::from_secs(60)));
        assert_eq!(rule("rate(5 minutes)").period(), Some(Duration::from_secs(300)));
        assert_eq!(rule("rate(1 day)").period(), Some(Duration::from_secs(86_400)));
        assert_eq!(rule("cron(0 12 * * ? *)").period(), None);
        let event = rule("rate(1 hour)").event();
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(event["resources"][0], "arn:aws:events:us-east-1:123456789012:rule/r");
    }
}
