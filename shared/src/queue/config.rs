//! Which queue adapter a process uses, and every SQS queue's URLs.

use std::collections::BTreeMap;

use super::QueueName;
use crate::settings::ConfigError;
use crate::settings::Env;

/// Where queue messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackend {
    /// Durable queues in the embedded database (the local default).
    Embedded,
    /// Amazon SQS (production).
    Sqs,
}

crate::choices!(QueueBackend { "embedded" => Embedded, "sqs" => Sqs });

/// The URLs of one SQS queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsQueueUrls {
    /// The queue messages are sent to.
    pub url: String,
    /// Where SQS moves messages after too many receives.
    pub dead_letter_url: String,
}

/// The queue settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuesConfig {
    /// `GROUNDWORK_QUEUES`: `embedded` or `sqs` (default `embedded`).
    pub backend: QueueBackend,
    /// Every queue's URLs, from `GROUNDWORK_<NAME>_QUEUE_URL` and `..._DLQ_URL` (all
    /// required with `sqs`).
    pub urls: BTreeMap<QueueName, SqsQueueUrls>,
}

impl QueuesConfig {
    /// From `GROUNDWORK_QUEUES` and the queue URLs.
    ///
    /// # Errors
    /// An unknown backend; with `sqs`, a missing queue or dead-letter queue URL.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let backend = env.choice("GROUNDWORK_QUEUES", QueueBackend::Embedded)?;
        let mut urls = BTreeMap::new();
        for queue in QueueName::ALL {
            let (url_var, dlq_var) = queue.env_vars();
            match (env.get(url_var), env.get(dlq_var)) {
                (Some(url), Some(dead_letter_url)) => {
                    urls.insert(queue, SqsQueueUrls { url, dead_letter_url });
                }
                (None, _) if backend == QueueBackend::Sqs => {
                    return Err(ConfigError::Missing {
                        var: url_var.into(),
                        why: "GROUNDWORK_QUEUES=sqs needs every queue URL",
                    });
                }
                (Some(_), None) if backend == QueueBackend::Sqs => {
                    return Err(ConfigError::Missing {
                        var: dlq_var.into(),
                        why: "GROUNDWORK_QUEUES=sqs needs every dead-letter queue URL",
                    });
                }
                _ => {}
            }
        }
        Ok(Self { backend, urls })
    }
}
