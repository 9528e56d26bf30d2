//! The common library of every Groundwork function.
//!
//! Functions are thin: they read [`config::Config`] once, build [`services::Services`] once,
//! and hand a router or a handler to [`lambda`]. Everything they share lives here, bottom-up:
//!
//! - primitives: [`id`], [`clock`], [`secret`], [`settings`] (reading the environment;
//!   each area's settings type lives in its module), [`keys`] (the key chart of the single
//!   table: every pk, sk and index key), [`outbound`] (the one builder of outbound HTTP
//!   clients), [`keyed_lock`] (one writer at a time per item within a process), [`error`] (problem+json and `ApiError`);
//! - ports and adapters: [`store`] (DynamoDB, embedded SQLite), [`queue`] (SQS, embedded,
//!   and the batch consumer), `embedded_database` (the SQLite file the embedded store and
//!   queues share: one writer thread, inline readers), [`mail`] (SES, SMTP, local outbox; templates, suppressions),
//!   [`aws`] (one SDK configuration per process), [`telemetry`] (logs, EMF metrics);
//! - domain: [`audit`] (the tamper-evident audit log and its vocabulary), [`auth`] (keys,
//!   tokens, passwords, attempt limits, users, sessions, the `AuthUser` extractor),
//!   [`tenancy`] (accounts, roles, API keys, the `Tenant` extractor that scopes every tenant
//!   route), [`billing`] (plans, Stripe, webhook events, dunning, reconciliation),
//!   [`flags`], [`exports`], [`jobs`] (typed jobs, `enqueue`, the idempotent runner, the
//!   product's own job types), [`product_events`] (what customers did, per account),
//!   [`soft_delete`], [`schedule`], [`migrations`] (numbered data migrations of the table), [`incidents`] (time to recovery), [`gdpr`] (export and erasure across domains), [`webhooks`]
//!   (the account's endpoints, publishing, signed delivery with retries, the delivery log);
//! - edge: [`http`] (the conventions applied to every router), [`config`] (the areas'
//!   settings, composed), [`services`] (everything a handler needs, built once), [`lambda`]
//!   (the only module that knows Lambda event types).

pub mod account_health;
pub mod audit;
pub mod auth;
pub mod aws;
pub mod billing;
pub mod clock;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded_database;
pub mod error;
pub mod exports;
pub mod flags;
pub mod gdpr;
pub mod http;
pub mod id;
pub mod incidents;
pub mod jobs;
pub mod keyed_lock;
pub mod keys;
pub mod lambda;
pub mod mail;
pub mod migrations;
pub mod outbound;
pub mod product_events;
pub mod queue;
pub mod schedule;
#[cfg(feature = "scim")]
pub mod scim;
pub mod secret;
pub mod services;
pub mod settings;
pub mod soft_delete;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod webhooks;

/// The version of this build, as reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The release of this build, `<version>+<commit>`: `GROUNDWORK_RELEASE` as it was when the
/// binary was compiled (`infra/deploy.sh` and `infra/package.sh` set it from the workspace
/// version and the git commit, `-dirty` when the tree had uncommitted changes), else
/// `<version>+dev`. `/health` reports it, every JSON log line and every EMF record carries
/// it, and the deploy writes it as the Lambda version description.
pub const RELEASE: &str = match option_env!("GROUNDWORK_RELEASE") {
    Some(release) => release,
    None => concat!(env!("CARGO_PKG_VERSION"), "+dev"),
};
