//! Scheduled jobs: one [`Schedule`] definition per job (name and EventBridge expression),
//! used by `template.yaml` and by the local stack's in-process scheduler ([`run_schedule`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::clock::Clock;

/// A job run on a schedule. It must be idempotent: EventBridge may fire twice.
#[async_trait]
pub trait ScheduledJob: Send + Sync + 'static {
    /// The schedule's name (for logs).
    fn name(&self) -> &str;

    /// Runs once; `fired_at_ms` is when the schedule fired.
    async fn run(&self, fired_at_ms: i64) -> anyhow::Result<()>;
}

/// When a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// A unique name, also the EventBridge schedule's name suffix.
    pub name: &'static str,
    /// An EventBridge `rate(...)` expression, such as `rate(1 hour)`.
    pub expression: &'static str,
}

/// A malformed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule expression {0:?} is not `rate(N minute[s]|hour[s]|day[s])`")]
pub struct BadExpression(pub String);

impl Schedule {
    /// The interval of a `rate(...)` expression.
    ///
    /// # Errors
    /// [`BadExpression`] for anything else.
    pub fn interval(&self) -> Result<Duration, BadExpression> {
        let bad = || BadExpression(self.expression.to_owned());
        let inner = self.expression.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')).ok_or_else(bad)?;
        let (n, unit) = inner.split_once(' ').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        // EventBridge's grammar: singular for 1, plural otherwise.
        let secs = match (n, unit) {
            (0, _) => return Err(bad()),
            (1, "minute") | (2.., "minutes") => 60,
            (1, "hour") | (2.., "hours") => 3600,
            (1, "day") | (2.., "days") => 86_400,
            _ => return Err(bad()),
        };
        Ok(Duration::from_secs(n * secs))
    }
}

/// Runs `job` every interval of `schedule` until `shutdown` turns true (the local stack's
/// stand-in for EventBridge). The first run is one interval after start.
///
/// # Errors
/// [`BadExpression`] if the schedule's expression does not parse.
pub async fn run_schedule(
    schedule: Schedule,
    job: Arc<dyn ScheduledJob>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BadExpression> {
    let every = schedule.interval()?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tracing::info!(schedule = schedule.name, every = schedule.expression, "schedule started");
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = job.run(clock.now_ms()).await {
                    tracing::error!(schedule = schedule.name, error = format!("{e:#}"), "scheduled job failed");
                }
            }
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(expression: &'static str) -> Schedule {
        Schedule { name: "t", expression }
    }

    #[test]
    fn rate_expressions_parse_like_eventbridge() {
        assert_eq!(s("rate(1 minute)").interval().unwrap(), Duration::from_secs(60));
        assert_eq!(s("rate(5 minutes)").interval().unwrap(), Duration::from_secs(300));
        assert_eq!(s("rate(1 day)").interval().unwrap(), Duration::from_secs(86_400));
        assert!(s("rate(1 minutes)").interval().is_err());
        assert!(s("rate(0 hours)").interval().is_err());
        assert!(s("cron(0 * * * ? *)").interval().is_err());
    }
}
