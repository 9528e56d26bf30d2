//! The common library of every Groundwork function.
//!
//! Functions are thin: they read [`config::Config`] once, build [`services::Services`] once,
//! and hand a router or a handler to [`lambda`]. Everything they share lives here:
//!
//! - [`store`]: the item-level storage port over the single table, with a DynamoDB adapter
//!   (production) and an embedded SQLite adapter (local default);
//! - [`queue`]: the queue port, with SQS and embedded adapters, and the batch consumer;
//! - [`http`]: the HTTP conventions (problem+json errors, JSON extraction, body limits,
//!   request ids, fallbacks) applied to every router;
//! - [`telemetry`]: structured logs and CloudWatch EMF metrics;
//! - [`config`], [`secret`], [`id`], [`clock`]: typed configuration, secrets, ids and time;
//! - [`keys`]: the key chart of the single table (every pk, sk and index key);
//! - [`auth`]: signing keys, access tokens, passwords, attempt limits, sessions and the
//!   `AuthUser` extractor; [`audit`]: the tamper-evident audit log;
//! - [`jobs`]: typed background jobs, `enqueue`, and the idempotent job runner;
//! - [`mail`]: email templates, the mailer port (SES, SMTP, local outbox), suppressions;
//! - [`flags`]: feature flags (kill switches, plans, overrides, rollouts, variants);
//! - [`soft_delete`]: the `deleted_at` + retention marker and the purge it drives;
//! - [`schedule`]: schedule definitions shared by the template and the local scheduler;
//! - [`tenancy`]: accounts, memberships, roles and the `Tenant` extractor that scopes every
//!   tenant route (isolation);
//! - [`lambda`]: the only module that knows Lambda event types.

pub mod audit;
pub mod auth;
pub mod aws;
pub mod billing;
pub mod clock;
pub mod config;
pub mod error;
pub mod exports;
pub mod flags;
pub mod gdpr;
pub mod http;
pub mod id;
pub mod jobs;
pub mod keys;
pub mod lambda;
pub mod mail;
pub mod outbound;
pub mod queue;
pub mod schedule;
pub mod secret;
pub mod services;
pub mod settings;
pub mod soft_delete;
pub mod store;
pub mod telemetry;
pub mod tenancy;

/// The version of this build, as reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
