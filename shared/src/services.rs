//! The services a function is built from, constructed once per process (per Lambda
//! container) and shared by every request through `Clone` (everything inside is an `Arc`).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, MailBackend, QueueBackend, QueueName, StoreBackend};
use crate::exports::ExportStorage;
use crate::queue::sqs::SqsQueue;
use crate::queue::{Queue, Queues};
use crate::store::dynamodb::DynamoStore;
use crate::store::{ExpirySweep, Store};

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
    /// The queues.
    pub queues: Queues,
    /// The AWS SDK configuration, when any AWS service is configured (a function builds
    /// its own SDK clients from it; email-dispatch its SES mailer).
    pub aws: Option<aws_config::SdkConfig>,
    /// The store's expiry sweep, when the store does not expire items by itself (the
    /// embedded one; DynamoDB's TTL needs none): run by the local stack's schedules.
    pub expiry_sweep: Option<Arc<dyn ExpirySweep>>,
    /// Access token keys and settings.
    pub tokens: Arc<crate::auth::TokenSettings>,
    /// Where data exports are kept.
    pub exports: Arc<ExportStorage>,
    /// Stripe's API, when `STRIPE_SECRET_KEY` is set (with the `stripe` feature).
    #[cfg(feature = "stripe")]
    pub stripe: Option<crate::billing::stripe::StripeClient>,
    /// The client for calls to configured third parties (OpenID Connect providers): see
    /// [`crate::outbound`].
    pub http: reqwest::Client,
    /// The client for URLs tenants configure (webhook endpoints, an organization's identity
    /// provider): public addresses only, see [`crate::outbound::guarded`].
    pub guarded_http: crate::outbound::LazyGuarded,
    /// Documents fetched from configured third parties, cached per process.
    pub documents: Arc<crate::outbound::DocumentCache>,
    /// The plan catalogue, validated.
    pub plans: Arc<crate::billing::Plans>,
    /// The feature flag definitions this process read last.
    pub flag_cache: Arc<crate::flags::FlagCache>,
    /// The request rates this process wrote last (see [`crate::auth::rate_limit::RateStates`]).
    pub rate_states: Arc<crate::auth::rate_limit::RateStates>,
    /// Where passwords are hashed and verified (with the `passwords` feature).
    #[cfg(feature = "passwords")]
    pub passwords: crate::auth::password::HashingPool,
    /// The breached-password check, when `GROUNDWORK_PWNED_PASSWORDS_URL` is set (with the
    /// `passwords` feature).
    #[cfg(feature = "passwords")]
    pub pwned_passwords: Option<crate::auth::breached::PwnedPasswords>,
    /// The bot check of public forms, when `GROUNDWORK_CHALLENGE_PROVIDER` is set (with the
    /// `passwords` feature).
    #[cfg(feature = "passwords")]
    pub challenge: Option<crate::auth::challenge::ChallengeVerifier>,
}

/// How each embedded queue behaves (on AWS, the same settings live in `template.yaml`).
#[cfg(feature = "embedded")]
pub fn embedded_queue_settings(name: QueueName, config: &Config) -> crate::queue::embedded::QueueSettings {
    crate::queue::embedded::QueueSettings {
        visibility_timeout: std::time::Duration::from_secs(60),
        // The job runner dead-letters after `job_max_attempts`; the queue's own limit is a
        // safety net for crashes that never reach the runner.
        max_receives: config.jobs.max_attempts.saturating_mul(2).max(2),
        // Stripe events of one customer are applied in the order they arrived.
        fifo: name == QueueName::Billing,
    }
}

impl Services {
    /// Enqueues jobs on this process's queues (see [`crate::jobs::Jobs`]).
    pub fn jobs(&self) -> crate::jobs::Jobs<'_> {
        crate::jobs::Jobs { queues: &self.queues, store: self.store.as_ref(), clock: self.clock.as_ref() }
    }

    /// A job runner of `handler` over `queue`, with this process's store, clock and
    /// `GROUNDWORK_JOB_MAX_ATTEMPTS`.
    pub fn job_runner(&self, queue: QueueName, handler: Arc<dyn crate::jobs::JobHandler>) -> crate::jobs::JobRunner {
        let parts = crate::jobs::RunnerParts {
            store: Arc::clone(&self.store),
            clock: Arc::clone(&self.clock),
            queue_name: queue,
            queue: self.queues.get(queue),
            max_attempts: self.config.jobs.max_attempts,
        };
        crate::jobs::JobRunner::new(parts, handler)
    }

    /// Billing's domain context: store, clock, queues, plans and the addresses it needs.
    pub fn billing(&self) -> crate::billing::Billing<'_> {
        crate::billing::Billing {
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            queues: &self.queues,
            plans: &self.plans,
            app_url: &self.config.server.app_url,
            environment: &self.config.environment,
        }
    }

    /// Outbound webhooks' context: store, clock, queues, the guarded client, settings.
    pub fn webhooks(&self) -> crate::webhooks::Webhooks<'_> {
        crate::webhooks::Webhooks {
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            queues: &self.queues,
            http: &self.guarded_http,
            config: self.config.webhooks,
            outbound: self.config.outbound,
            app_url: &self.config.server.app_url,
        }
    }

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
        let needs_aws = config.store.backend == StoreBackend::DynamoDb
            || config.queues.backend == QueueBackend::Sqs
            || matches!(config.mail.backend, MailBackend::Ses { .. })
            || config.exports.bucket.is_some()
            || matches!(config.auth.jwt_keys, crate::config::KeySource::SecretsManager(_));
        let sdk = if needs_aws { Some(crate::aws::sdk_config(&config.aws).await) } else { None };
        let sdk_ref = || sdk.as_ref().context("no AWS configuration");

        let (store, expiry_sweep): (Arc<dyn Store>, Option<Arc<dyn ExpirySweep>>) = match config.store.backend {
            #[cfg(feature = "embedded")]
            StoreBackend::Embedded => {
                let path = config.data_dir.join(EMBEDDED_DB_FILE);
                let s = crate::store::sqlite::SqliteStore::open(&path, Arc::clone(&clock))?;
                (Arc::new(s.clone()), Some(Arc::new(s)))
            }
            #[cfg(not(feature = "embedded"))]
            StoreBackend::Embedded => return Err(crate::settings::not_built("GROUNDWORK_STORE=embedded", "embedded")),
            StoreBackend::DynamoDb => {
                let table = config.store.table.clone().context("GROUNDWORK_TABLE is not set")?;
                let client = aws_sdk_dynamodb::Client::new(sdk_ref()?);
                (Arc::new(DynamoStore::new(client, table, Arc::clone(&clock))), None)
            }
        };
        let mut queues: BTreeMap<QueueName, Arc<dyn Queue>> = BTreeMap::new();
        match config.queues.backend {
            #[cfg(feature = "embedded")]
            QueueBackend::Embedded => {
                let path = config.data_dir.join(EMBEDDED_DB_FILE);
                let db = crate::queue::embedded::QueueDb::open(&path, Arc::clone(&clock))?;
                for name in QueueName::ALL {
                    queues.insert(name, Arc::new(db.queue(name.as_str(), embedded_queue_settings(name, &config))));
                }
            }
            #[cfg(not(feature = "embedded"))]
            QueueBackend::Embedded => return Err(crate::settings::not_built("GROUNDWORK_QUEUES=embedded", "embedded")),
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
        let exports =
            Arc::new(ExportStorage::from_config(&config.exports, &config.data_dir, &config.aws, sdk.as_ref())?);
        let tokens = crate::auth::TokenSettings::from_config(
            &config.auth,
            &config.server.api_url,
            &config.data_dir,
            sdk.as_ref(),
        )?;
        #[cfg(feature = "stripe")]
        let stripe = crate::billing::stripe::StripeClient::from_config(&config.billing)?;
        let http = crate::outbound::client(std::time::Duration::from_secs(5))?;
        if config.outbound.allow_loopback {
            tracing::warn!(
                "GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK is on: tenant-configured URLs may reach this machine's loopback services"
            );
        }
        let guarded_http = crate::outbound::LazyGuarded::new(
            std::time::Duration::from_secs(config.webhooks.timeout_secs),
            config.outbound,
        );
        let plans = Arc::new(crate::billing::Plans::from_config(&config.billing, &config.environment)?);
        #[cfg(feature = "passwords")]
        let pwned_passwords =
            config.auth.pwned_passwords_url.as_deref().map(crate::auth::breached::PwnedPasswords::new).transpose()?;
        #[cfg(feature = "passwords")]
        let passwords = crate::auth::password::HashingPool::new(config.auth.password_hash_queue);
        #[cfg(feature = "passwords")]
        let challenge =
            config.auth.challenge.clone().map(crate::auth::challenge::ChallengeVerifier::new).transpose()?;
        Ok(Self {
            config: Arc::new(config),
            clock,
            store,
            queues: Queues::new(queues),
            aws: sdk,
            expiry_sweep,
            tokens,
            exports,
            #[cfg(feature = "stripe")]
            stripe,
            http,
            guarded_http,
            documents: Arc::new(crate::outbound::DocumentCache::default()),
            plans,
            flag_cache: Arc::new(crate::flags::FlagCache::default()),
            rate_states: Arc::new(crate::auth::rate_limit::RateStates::default()),
            #[cfg(feature = "passwords")]
            passwords,
            #[cfg(feature = "passwords")]
            pwned_passwords,
            #[cfg(feature = "passwords")]
            challenge,
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
