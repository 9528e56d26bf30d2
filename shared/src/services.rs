//! The services a function is built from, constructed once per process (per Lambda
//! container) and shared by every request through `Clone` (everything inside is an `Arc`).

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, QueueBackend, StoreBackend};
use crate::queue::Queue;
use crate::queue::embedded::{QueueDb, QueueSettings};
use crate::queue::sqs::SqsQueue;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;
use crate::store::sqlite::SqliteStore;

/// The logical name of the background jobs queue.
pub const JOBS_QUEUE: &str = "jobs";

/// The file of the embedded database, inside the data directory.
pub const EMBEDDED_DB_FILE: &str = "groundwork.sqlite3";

/// Everything a handler may need.
#[derive(Clone)]
pub struct Services {
    /// The configuration read at init.
    pub config: Arc<Config>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The single table.
    pub store: Arc<dyn Store>,
    /// The background jobs queue.
    pub jobs: Arc<dyn Queue>,
}

impl Services {
    /// Builds the adapters `config` asks for. AWS clients are built once here.
    ///
    /// # Errors
    /// If the embedded database cannot be opened or a setting is inconsistent.
    pub async fn from_config(config: Config) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db_path = config.data_dir.join(EMBEDDED_DB_FILE);
        let sdk = match (config.store, config.queues) {
            (StoreBackend::Embedded, QueueBackend::Embedded) => None,
            _ => Some(crate::aws::sdk_config(&config).await),
        };
        let store: Arc<dyn Store> = match config.store {
            StoreBackend::Embedded => Arc::new(SqliteStore::open(&db_path, Arc::clone(&clock))?),
            StoreBackend::DynamoDb => {
                let table = config.table.clone().ok_or_else(|| anyhow::anyhow!("GROUNDWORK_TABLE is not set"))?;
                let client =
                    aws_sdk_dynamodb::Client::new(sdk.as_ref().ok_or_else(|| anyhow::anyhow!("no AWS config"))?);
                Arc::new(DynamoStore::new(client, table, Arc::clone(&clock)))
            }
        };
        let jobs: Arc<dyn Queue> = match config.queues {
            QueueBackend::Embedded => {
                let db = QueueDb::open(&db_path, Arc::clone(&clock))?;
                Arc::new(db.queue(JOBS_QUEUE, QueueSettings::default()))
            }
            QueueBackend::Sqs => {
                let urls =
                    config.jobs_queue.clone().ok_or_else(|| anyhow::anyhow!("GROUNDWORK_JOBS_QUEUE_URL is not set"))?;
                let client = aws_sdk_sqs::Client::new(sdk.as_ref().ok_or_else(|| anyhow::anyhow!("no AWS config"))?);
                Arc::new(SqsQueue::new(client, JOBS_QUEUE, urls.url, urls.dead_letter_url))
            }
        };
        Ok(Self { config: Arc::new(config), clock, store, jobs })
    }
}
