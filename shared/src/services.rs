//! The services a function is built from, constructed once per process (per Lambda
//! container) and shared by every request through `Clone` (everything inside is an `Arc`).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, MailBackend, QueueBackend, QueueName, StoreBackend};
use crate::exports::ExportStorage;
use crate::mail::Mailer;
use crate::mail::outbox::OutboxMailer;
use crate::mail::ses::SesMailer;
use crate::mail::smtp::SmtpMailer;
use crate::queue::Queue;
use crate::queue::embedded::{QueueDb, QueueSettings};
use crate::queue::sqs::SqsQueue;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;
use crate::store::sqlite::SqliteStore;

/// The file of the embedded database, inside the data directory.
pub const EMBEDDED_DB_FILE: &str = "groundwork.sqlite3";

/// Every queue of the system, by name.
#[derive(Clone)]
pub struct Queues(BTreeMap<QueueName, Arc<dyn Queue>>);

impl Queues {
    /// Queues from a full map.
    ///
    /// # Panics
    /// If a queue of [`QueueName::ALL`] is missing (a wiring bug caught at init).
    pub fn new(map: BTreeMap<QueueName, Arc<dyn Queue>>) -> Self {
        for q in QueueName::ALL {
            assert!(map.contains_key(&q), "queue {} is not wired", q.as_str());
        }
        Self(map)
    }

    /// The queue `name`.
    pub fn get(&self, name: QueueName) -> Arc<dyn Queue> {
        Arc::clone(&self.0[&name])
    }

    /// Every queue with its name.
    pub fn all(&self) -> impl Iterator<Item = (QueueName, &Arc<dyn Queue>)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }
}

/// Everything a handler may need.
#[derive(Clone)]
pub struct Services {
    /// The configuration read at init.
    pub config: Arc<Config>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The single table.
    pub store: Arc<dyn Store>,
    /// The queues.
    pub queues: Queues,
    /// Where transactional email goes.
    pub mailer: Arc<dyn Mailer>,
    /// The embedded store, when that is the store (for the local-only expiry sweeper).
    pub embedded_store: Option<SqliteStore>,
    /// Access token keys and settings.
    pub tokens: Arc<crate::auth::TokenSettings>,
    /// Where data exports are kept.
    pub exports: Arc<ExportStorage>,
    /// Stripe's API, when `STRIPE_SECRET_KEY` is set.
    pub stripe: Option<crate::billing::stripe::StripeClient>,
    /// The client for calls to configured third parties (OpenID Connect providers): see
    /// [`crate::outbound`].
    pub http: reqwest::Client,
    /// Documents fetched from configured third parties, cached per process.
    pub documents: Arc<crate::outbound::DocumentCache>,
    /// The plan catalogue, validated.
    pub plans: Arc<crate::billing::Plans>,
    /// The feature flag definitions this process read last.
    pub flag_cache: Arc<crate::flags::FlagCache>,
}

/// How each embedded queue behaves (on AWS, the same settings live in `template.yaml`).
pub fn embedded_queue_settings(name: QueueName, config: &Config) -> QueueSettings {
    QueueSettings {
        visibility_timeout: std::time::Duration::from_secs(60),
        // The job runner dead-letters after `job_max_attempts`; the queue's own limit is a
        // safety net for crashes that never reach the runner.
        max_receives: config.jobs.max_attempts.saturating_mul(2).max(2),
        // Stripe events of one customer are applied in the order they arrived.
        fifo: name == QueueName::Billing,
    }
}

impl Services {
    /// Feature flags, evaluated with this process's store, clock, cache and plans.
    pub fn flags(&self) -> crate::flags::Flags<'_> {
        crate::flags::Flags {
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            cache: &self.flag_cache,
            plans: &self.plans,
        }
    }

    /// What `account` may use now (see [`crate::billing::entitlements`]).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn entitlements(
        &self,
        account: crate::id::AccountId,
    ) -> Result<crate::billing::Entitlements, crate::store::StoreError> {
        crate::billing::entitlements(self.store.as_ref(), &self.plans, account).await
    }

    /// Appends `event` to the audit `stream`, now (see [`crate::audit::record`]).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn audit(
        &self,
        stream: crate::audit::AuditStream,
        event: crate::audit::NewEvent,
    ) -> Result<crate::audit::AuditEvent, crate::store::StoreError> {
        crate::audit::record(self.store.as_ref(), stream, event, self.clock.now_ms()).await
    }

    /// Builds the adapters `config` asks for. AWS clients are built once here.
    ///
    /// # Errors
    /// If the embedded database cannot be opened or a setting is inconsistent.
    pub async fn from_config(config: Config) -> anyhow::Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Services::from_config`], with the given clock (tests move time).
    ///
    /// # Errors
    /// As [`Services::from_config`].
    pub async fn with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let db_path = config.data_dir.join(EMBEDDED_DB_FILE);
        let needs_aws = config.store.backend == StoreBackend::DynamoDb
            || config.queues.backend == QueueBackend::Sqs
            || matches!(config.mail.backend, MailBackend::Ses { .. })
            || config.exports.bucket.is_some()
            || matches!(config.auth.jwt_keys, crate::config::KeySource::SecretsManager(_));
        let sdk = if needs_aws { Some(crate::aws::sdk_config(&config.aws).await) } else { None };
        let sdk_ref = || sdk.as_ref().context("no AWS configuration");

        let mut embedded_store = None;
        let store: Arc<dyn Store> = match config.store.backend {
            StoreBackend::Embedded => {
                let s = SqliteStore::open(&db_path, Arc::clone(&clock))?;
                embedded_store = Some(s.clone());
                Arc::new(s)
            }
            StoreBackend::DynamoDb => {
                let table = config.store.table.clone().context("GROUNDWORK_TABLE is not set")?;
                Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk_ref()?), table, Arc::clone(&clock)))
            }
        };
        let mut queues: BTreeMap<QueueName, Arc<dyn Queue>> = BTreeMap::new();
        match config.queues.backend {
            QueueBackend::Embedded => {
                let db = QueueDb::open(&db_path, Arc::clone(&clock))?;
                for name in QueueName::ALL {
                    queues.insert(name, Arc::new(db.queue(name.as_str(), embedded_queue_settings(name, &config))));
                }
            }
            QueueBackend::Sqs => {
                let client = aws_sdk_sqs::Client::new(sdk_ref()?);
                for name in QueueName::ALL {
                    let urls =
                        config.queues.urls.get(&name).with_context(|| format!("no URL for queue {}", name.as_str()))?;
                    queues.insert(
                        name,
                        Arc::new(SqsQueue::new(client.clone(), name.as_str(), &urls.url, &urls.dead_letter_url)),
                    );
                }
            }
        }
        let mailer: Arc<dyn Mailer> = match &config.mail.backend {
            MailBackend::Outbox => Arc::new(OutboxMailer::new(config.data_dir.join("outbox"))),
            MailBackend::Ses { configuration_set } => {
                Arc::new(SesMailer::new(aws_sdk_sesv2::Client::new(sdk_ref()?), configuration_set.clone()))
            }
            MailBackend::Smtp { url } => Arc::new(SmtpMailer::from_url(url)?),
        };
        let exports = Arc::new(match &config.exports.bucket {
            None => ExportStorage::Local(config.data_dir.join("exports")),
            Some(bucket) => {
                // Path-style addressing when an endpoint is given (local S3 API servers).
                let s3 = aws_sdk_s3::config::Builder::from(sdk_ref()?)
                    .force_path_style(config.aws.endpoint_url.is_some())
                    .build();
                ExportStorage::S3 { client: aws_sdk_s3::Client::from_conf(s3), bucket: bucket.clone() }
            }
        });
        let tokens = crate::auth::TokenSettings::from_config(
            &config.auth,
            &config.server.api_url,
            &config.data_dir,
            sdk.as_ref(),
        )?;
        let stripe = crate::billing::stripe::StripeClient::from_config(&config.billing)?;
        let http = crate::outbound::client(std::time::Duration::from_secs(5))?;
        let plans = Arc::new(crate::billing::Plans::from_config(&config.billing, &config.environment)?);
        Ok(Self {
            config: Arc::new(config),
            clock,
            store,
            queues: Queues::new(queues),
            mailer,
            embedded_store,
            tokens,
            exports,
            stripe,
            http,
            documents: Arc::new(crate::outbound::DocumentCache::default()),
            plans,
            flag_cache: Arc::new(crate::flags::FlagCache::default()),
        })
    }
}

impl crate::tenancy::TenantScope {
    /// Appends an event to the account's audit stream, as the caller.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn audit(
        &self,
        services: &Services,
        action: crate::audit::AuditAction,
        target: Option<String>,
        origin: crate::audit::Origin,
        detail: serde_json::Value,
    ) -> Result<(), crate::error::ApiError> {
        let event = crate::audit::NewEvent { actor: self.caller().actor(), action, target, origin, detail };
        services.audit(crate::audit::AuditStream::Account(self.account_id()), event).await?;
        Ok(())
    }
}
