//! The scheduled function: every schedule's job, behind one Lambda (which also records the
//! alarms' state changes for time to recovery, and runs the data migrations on request). EventBridge names each
//! rule `groundwork-<environment>-<schedule name>`; the handler runs the job whose name ends
//! the rule's ARN. The local stack runs the same jobs on an in-process ticker.
//!
//! Schedules are defined once, here; `template.yaml` mirrors [`DEPLOYED`] and a test keeps
//! the two in step.

use std::sync::Arc;

use async_trait::async_trait;
use shared::schedule::{Schedule, ScheduledJob};
use shared::services::Services;

/// Purge soft-deleted records past their retention window.
pub const PURGE_SOFT_DELETED: Schedule = Schedule { name: "purge-soft-deleted", expression: "rate(1 hour)" };

/// Physically remove expired items (tokens, idempotency records, job states) from the
/// embedded store. On DynamoDB the table's TTL does this, so it is not deployed.
pub const SWEEP_EXPIRED: Schedule = Schedule { name: "sweep-expired", expression: "rate(1 hour)" };

/// Repair subscription drift from Stripe (a missed or failed webhook).
pub const RECONCILE_BILLING: Schedule = Schedule { name: "reconcile-billing", expression: "rate(1 day)" };

/// Send the jobs staged with committed changes that were not dispatched at once (see
/// `shared::jobs::outbox`).
pub const RELAY_JOB_OUTBOX: Schedule = Schedule { name: "relay-job-outbox", expression: "rate(1 minute)" };

/// Publish the age of every open incident (an alarm in ALARM), for the time-to-recovery
/// alarm (see `shared::incidents`).
pub const INCIDENT_WATCH: Schedule = Schedule { name: "incident-watch", expression: "rate(5 minutes)" };

/// Forward the product events recorded since the last run to PostHog (a no-op without
/// `POSTHOG_API_KEY`; see `shared::product_events::posthog`).
pub const FORWARD_PRODUCT_EVENTS: Schedule = Schedule { name: "forward-product-events", expression: "rate(1 minute)" };

/// Record every account's health for the day (see `shared::account_health`).
pub const ACCOUNT_HEALTH_ROLLUP: Schedule = Schedule { name: "account-health-rollup", expression: "rate(1 day)" };

/// Email the owners of accounts that turned dormant, once per dormancy.
pub const DORMANT_ACCOUNTS: Schedule = Schedule { name: "dormant-accounts", expression: "rate(1 day)" };

/// The schedules `template.yaml` deploys.
pub const DEPLOYED: &[Schedule] = &[
    PURGE_SOFT_DELETED,
    RECONCILE_BILLING,
    RELAY_JOB_OUTBOX,
    INCIDENT_WATCH,
    FORWARD_PRODUCT_EVENTS,
    ACCOUNT_HEALTH_ROLLUP,
    DORMANT_ACCOUNTS,
];

/// How many soft-deleted items one purge query takes at a time.
const PURGE_BATCH: u32 = 100;

/// The purge job.
pub struct PurgeSoftDeleted {
    services: Services,
}

#[async_trait]
impl ScheduledJob for PurgeSoftDeleted {
    fn name(&self) -> &str {
        PURGE_SOFT_DELETED.name
    }

    async fn run(&self, fired_at_ms: i64) -> anyhow::Result<()> {
        let purged = shared::soft_delete::purge_due(self.services.store.as_ref(), fired_at_ms, PURGE_BATCH).await?;
        tracing::info!(purged, "purge of soft-deleted records done");
        Ok(())
    }
}

/// The billing reconciliation.
pub struct ReconcileBilling {
    services: Services,
}

#[async_trait]
impl ScheduledJob for ReconcileBilling {
    fn name(&self) -> &str {
        RECONCILE_BILLING.name
    }

    async fn run(&self, _fired_at_ms: i64) -> anyhow::Result<()> {
        let Some(stripe) = self.services.stripe.clone() else {
            tracing::info!("STRIPE_SECRET_KEY is not set: nothing to reconcile");
            return Ok(());
        };
        let repairs = shared::billing::reconcile::reconcile(&self.services.billing(), &stripe).await?;
        tracing::info!(repaired = repairs.len(), "billing reconciliation done");
        Ok(())
    }
}

/// The job outbox relay.
pub struct RelayJobOutbox {
    services: Services,
}

#[async_trait]
impl ScheduledJob for RelayJobOutbox {
    fn name(&self) -> &str {
        RELAY_JOB_OUTBOX.name
    }

    async fn run(&self, _fired_at_ms: i64) -> anyhow::Result<()> {
        let s = &self.services;
        shared::jobs::outbox::relay(s.store.as_ref(), &s.queues, s.clock.as_ref()).await?;
        Ok(())
    }
}

/// The incident watch.
pub struct IncidentWatch {
    services: Services,
}

#[async_trait]
impl ScheduledJob for IncidentWatch {
    fn name(&self) -> &str {
        INCIDENT_WATCH.name
    }

    async fn run(&self, _fired_at_ms: i64) -> anyhow::Result<()> {
        let open = shared::incidents::watch(self.services.store.as_ref(), self.services.clock.as_ref()).await?;
        if let Some((alarm, age)) = open.first() {
            tracing::warn!(open = open.len(), oldest = %alarm, age_s = age, "incidents open");
        }
        Ok(())
    }
}

/// The product events' forwarder.
pub struct ForwardProductEvents {
    services: Services,
}

#[async_trait]
impl ScheduledJob for ForwardProductEvents {
    fn name(&self) -> &str {
        FORWARD_PRODUCT_EVENTS.name
    }

    async fn run(&self, _fired_at_ms: i64) -> anyhow::Result<()> {
        use shared::product_events::posthog;
        let s = &self.services;
        if !s.config.posthog.enabled() {
            return Ok(());
        }
        let http = shared::outbound::client(posthog::TIMEOUT)?;
        let forwarder =
            posthog::Forwarder { store: s.store.as_ref(), plans: &s.plans, config: &s.config.posthog, http: &http };
        let done = posthog::forward(&forwarder).await?;
        if done != posthog::Forwarded::default() {
            tracing::info!(
                sent = done.sent,
                dead_lettered = done.dead_lettered,
                deferred = done.deferred,
                "product events forwarded"
            );
        }
        shared::telemetry::metrics::Metrics::new()
            .metric("ProductEventsForwarded", done.sent as f64, shared::telemetry::metrics::Unit::Count)
            .metric("ProductEventsDeadLettered", done.dead_lettered as f64, shared::telemetry::metrics::Unit::Count)
            .emit();
        Ok(())
    }
}

/// The daily account health rollup.
pub struct AccountHealthRollup {
    services: Services,
}

#[async_trait]
impl ScheduledJob for AccountHealthRollup {
    fn name(&self) -> &str {
        ACCOUNT_HEALTH_ROLLUP.name
    }

    async fn run(&self, fired_at_ms: i64) -> anyhow::Result<()> {
        let done = shared::account_health::rollup(&self.services, fired_at_ms).await?;
        tracing::info!(
            accounts = done.accounts,
            dormant = done.dormant,
            upgrade_triggers = done.upgrade_triggers,
            "account health recorded"
        );
        Ok(())
    }
}

/// The dormant accounts' emails.
pub struct DormantAccounts {
    services: Services,
}

#[async_trait]
impl ScheduledJob for DormantAccounts {
    fn name(&self) -> &str {
        DORMANT_ACCOUNTS.name
    }

    async fn run(&self, _fired_at_ms: i64) -> anyhow::Result<()> {
        let told = shared::account_health::notify_dormant(&self.services).await?;
        tracing::info!(told, "owners of dormant accounts emailed");
        Ok(())
    }
}

/// The store's expiry sweep, where the store needs one (the embedded store).
pub struct SweepExpired {
    sweep: Arc<dyn shared::store::ExpirySweep>,
}

#[async_trait]
impl ScheduledJob for SweepExpired {
    fn name(&self) -> &str {
        SWEEP_EXPIRED.name
    }

    async fn run(&self, _fired_at_ms: i64) -> anyhow::Result<()> {
        let swept = self.sweep.sweep_expired().await?;
        tracing::info!(swept, "expired items swept");
        Ok(())
    }
}

/// The jobs Lambda runs, by schedule.
pub fn deployed_jobs(services: &Services) -> Vec<(Schedule, Arc<dyn ScheduledJob>)> {
    vec![
        (PURGE_SOFT_DELETED, Arc::new(PurgeSoftDeleted { services: services.clone() })),
        (RECONCILE_BILLING, Arc::new(ReconcileBilling { services: services.clone() })),
        (RELAY_JOB_OUTBOX, Arc::new(RelayJobOutbox { services: services.clone() })),
        (INCIDENT_WATCH, Arc::new(IncidentWatch { services: services.clone() })),
        (FORWARD_PRODUCT_EVENTS, Arc::new(ForwardProductEvents { services: services.clone() })),
        (ACCOUNT_HEALTH_ROLLUP, Arc::new(AccountHealthRollup { services: services.clone() })),
        (DORMANT_ACCOUNTS, Arc::new(DormantAccounts { services: services.clone() })),
    ]
}

/// The jobs the local stack runs: the deployed ones, plus the expiry sweep when the store
/// needs one (the embedded store).
pub fn local_jobs(services: &Services) -> Vec<(Schedule, Arc<dyn ScheduledJob>)> {
    let mut jobs = deployed_jobs(services);
    if let Some(sweep) = services.expiry_sweep.clone() {
        jobs.push((SWEEP_EXPIRED, Arc::new(SweepExpired { sweep })));
    }
    jobs
}
