//! Time to recovery: how long each incident (an alarm from ALARM back to OK) lasted, the
//! third of the health signals beside the error rate and the p99 latency.
//!
//! CloudWatch sends every state change of the stack's alarms to EventBridge ("CloudWatch
//! Alarm State Change"); a rule in `template.yaml` hands them to the scheduled function,
//! which calls [`record_state_change`]:
//! - ALARM opens an incident (`INCIDENTS` / `OPEN#<alarm>`), unless it is already known
//!   to be over (events may arrive twice and out of order);
//! - OK closes it: the incident's record (`INCIDENTS` / `CLOSED#<alarm>#<started ms>`) is
//!   written once, and only then its duration is published as the `TimeToRecovery` and
//!   `IncidentAge` metrics (seconds). The OK event names the state it left and when, so an
//!   OK that arrives before its ALARM still closes the incident, and the late ALARM is then
//!   ignored.
//!
//! An incident still open is invisible to that, so the `incident-watch` schedule publishes
//! the age of every open incident as `IncidentAge` every five minutes ([`watch`]). The
//! time-to-recovery alarm fires when `IncidentAge` reaches 30 minutes, whether the incident
//! is still open or just closed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::keys;
use crate::store::{Condition, Delete, Item, Put, Query, Store, StoreError, StoreExt, TxOp};
use crate::telemetry::metrics::{Metrics, Unit};

/// How long a closed incident is kept (400 days: a year-on-year comparison stays possible).
const RETENTION_SECS: i64 = 400 * 24 * 3600;

/// Alarms (by the logical id in their CloudFormation name) whose incidents are not timed:
/// they watch hourly sums, so each lasts an hour at least and would always page twice, and
/// time to recovery itself.
const NOT_TIMED: &[&str] = &["-ScheduledFunctionErrorsAlarm-", "-MailSendSpikeAlarm-", "-TimeToRecoveryAlarm-"];

/// The `detail-type` of the events [`record_state_change`] takes.
pub const DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// The `detail` of a "CloudWatch Alarm State Change" event (the parts used). See
/// <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html>.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStateChange {
    /// The alarm's name.
    pub alarm_name: String,
    /// The state it entered.
    pub state: AlarmState,
    /// The state it left.
    pub previous_state: Option<AlarmState>,
}

/// An alarm's state at a time.
#[derive(Debug, Clone, Deserialize)]
pub struct AlarmState {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub value: String,
    /// When it was entered, as CloudWatch writes it (`2026-11-29T17:04:40.985+0000`).
    pub timestamp: String,
}

impl AlarmState {
    fn at_ms(&self) -> Option<i64> {
        let t = &self.timestamp;
        DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z")
            .ok()
            .or_else(|| DateTime::parse_from_rfc3339(t).ok())
            .map(|d| d.with_timezone(&Utc).timestamp_millis())
    }
}

/// A closed incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The alarm.
    pub alarm: String,
    /// When it entered ALARM (Unix ms).
    pub started_at_ms: i64,
    /// When it was back to OK (Unix ms).
    pub recovered_at_ms: i64,
    /// The difference, in seconds.
    pub seconds: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenIncident {
    alarm: String,
    started_at_ms: i64,
}

/// What a state change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// An incident opened.
    Opened,
    /// An incident closed, for the first time.
    Recovered(Incident),
    /// Nothing new (a duplicate, a late ALARM of a closed incident, a change that is not
    /// to or from ALARM).
    Nothing,
}

/// Records one alarm state change (idempotent: each event may come twice, in any order)
/// and publishes a recovery's duration.
///
/// # Errors
/// A timestamp that does not parse; when the store fails.
pub async fn record_state_change(store: &dyn Store, change: &AlarmStateChange) -> Result<Recorded, StoreError> {
    let alarm = change.alarm_name.as_str();
    if NOT_TIMED.iter().any(|logical_id| alarm.contains(logical_id)) {
        return Ok(Recorded::Nothing);
    }
    let at = change.state.at_ms().ok_or_else(|| bad_time(&change.state))?;
    match change.state.value.as_str() {
        "ALARM" => {
            let open = Item::from_record(
                keys::open_incident(alarm),
                &OpenIncident { alarm: alarm.into(), started_at_ms: at },
            )?;
            // An incident already open goes on (ALARM, INSUFFICIENT_DATA, ALARM again).
            match store.put(Put::new(open).if_not_exists()).await {
                Ok(_) => {}
                Err(e) if e.is_condition_failure() => return Ok(Recorded::Nothing),
                Err(e) => return Err(e),
            }
            // Its OK may have come first (delivered out of order, or handled concurrently):
            // then this incident is over, and the record just written goes.
            if store.get(&keys::closed_incident(alarm, at)).await?.is_some() {
                let delete =
                    Delete::new(keys::open_incident(alarm)).when(Condition::Equals("started_at_ms".into(), at.into()));
                return match store.delete(delete).await {
                    Err(e) if !e.is_condition_failure() => Err(e),
                    _ => Ok(Recorded::Nothing),
                };
            }
            Ok(Recorded::Opened)
        }
        "OK" => {
            let open = store.get_record::<OpenIncident>(&keys::open_incident(alarm)).await?;
            let left_alarm = match &change.previous_state {
                Some(p) if p.value == "ALARM" => Some(p.at_ms().ok_or_else(|| bad_time(p))?),
                _ => None,
            };
            // The earliest known start: ALARM, INSUFFICIENT_DATA, ALARM again, then OK is one
            // incident from the first ALARM, which the open record holds.
            let started = match (open.as_ref().map(|o| o.started_at_ms), left_alarm) {
                (Some(o), Some(l)) => Some(o.min(l)),
                (o, l) => o.or(l),
            };
            let Some(started) = started else { return Ok(Recorded::Nothing) };
            let incident = Incident {
                alarm: alarm.into(),
                started_at_ms: started,
                recovered_at_ms: at,
                seconds: (at - started).max(0) / 1000,
            };
            let closed = Item::from_record(keys::closed_incident(alarm, started), &incident)?
                .expiring_at(at / 1000 + RETENTION_SECS);
            let mut writes = vec![TxOp::Put(Put::new(closed).if_not_exists())];
            // Closed from an earlier ALARM: the last ALARM's time names it too, so this OK
            // delivered again (the open record gone by then) finds it done.
            if let Some(last) = left_alarm.filter(|l| *l != started) {
                let alias = Item::new(keys::closed_incident(alarm, last))
                    .with("same_as_started_at_ms", started)
                    .expiring_at(at / 1000 + RETENTION_SECS);
                writes.push(TxOp::Put(Put::new(alias).if_not_exists()));
            }
            let recorded = match store.transact(writes).await {
                Ok(()) => Recorded::Recovered(incident.clone()),
                Err(e) if e.is_condition_failure() => Recorded::Nothing,
                Err(e) => return Err(e),
            };
            // The open record goes if it is this incident (or an older one): only as read, so
            // a newer incident opened meanwhile stays.
            if let Some(o) = open.filter(|o| o.started_at_ms <= started) {
                let delete = Delete::new(keys::open_incident(alarm))
                    .when(Condition::Equals("started_at_ms".into(), o.started_at_ms.into()));
                match store.delete(delete).await {
                    Err(e) if !e.is_condition_failure() => return Err(e),
                    _ => {}
                }
            }
            if let Recorded::Recovered(i) = &recorded {
                let seconds = i.seconds as f64;
                Metrics::new()
                    .property("alarm", alarm)
                    .metric("TimeToRecovery", seconds, Unit::Seconds)
                    .metric("IncidentAge", seconds, Unit::Seconds)
                    .emit();
                tracing::info!(alarm, seconds = i.seconds, "incident recovered");
            }
            Ok(recorded)
        }
        _ => Ok(Recorded::Nothing),
    }
}

fn bad_time(state: &AlarmState) -> StoreError {
    StoreError::Invalid(format!("the alarm state's timestamp {:?} is not a time", state.timestamp))
}

/// Publishes the age (seconds) of each open incident as `IncidentAge`, and returns the
/// open incidents' alarms with their ages, oldest first.
///
/// # Errors
/// When the store fails.
pub async fn watch(store: &dyn Store, clock: &dyn Clock) -> Result<Vec<(String, i64)>, StoreError> {
    let now = clock.now_ms();
    let open: Vec<OpenIncident> = store
        .query_all(Query::partition(keys::INCIDENTS).begins_with(keys::OPEN_INCIDENT_PREFIX))
        .await?
        .iter()
        .map(Item::record)
        .collect::<Result<_, _>>()?;
    let mut ages: Vec<(String, i64)> =
        open.into_iter().map(|o| (o.alarm, (now - o.started_at_ms).max(0) / 1000)).collect();
    ages.sort_by_key(|(_, age)| std::cmp::Reverse(*age));
    for (alarm, age) in &ages {
        Metrics::new().property("alarm", alarm.as_str()).metric("IncidentAge", *age as f64, Unit::Seconds).emit();
    }
    // Zero when nothing is open, so the alarm has a datapoint every period.
    if ages.is_empty() {
        Metrics::new().metric("IncidentAge", 0.0, Unit::Seconds).emit();
    }
    Ok(ages)
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::sqlite::SqliteStore;

    const ALARM: &str = "groundwork-staging-ApiErrorRateAlarm-1ABC";

    fn change(from: (&str, &str), to: (&str, &str)) -> AlarmStateChange {
        AlarmStateChange {
            alarm_name: ALARM.into(),
            previous_state: Some(AlarmState { value: from.0.into(), timestamp: from.1.into() }),
            state: AlarmState { value: to.0.into(), timestamp: to.1.into() },
        }
    }

    const T0: &str = "2027-01-15T08:00:00.000+0000";
    const T1: &str = "2027-01-15T08:10:00.000+0000";
    const T2: &str = "2027-01-15T08:52:30.500+0000";

    fn store() -> (SqliteStore, ManualClock) {
        let clock = ManualClock::at(1_800_000_000_000);
        (SqliteStore::in_memory(Arc::new(clock.clone())).unwrap(), clock)
    }

    async fn open(s: &SqliteStore) -> Option<Item> {
        s.get(&keys::open_incident(ALARM)).await.unwrap()
    }

    #[tokio::test]
    async fn an_incident_is_timed_from_alarm_to_ok_once() {
        let (s, _) = store();
        assert_eq!(record_state_change(&s, &change(("OK", T0), ("ALARM", T1))).await.unwrap(), Recorded::Opened);
        assert_eq!(record_state_change(&s, &change(("OK", T0), ("ALARM", T1))).await.unwrap(), Recorded::Nothing);
        assert!(open(&s).await.is_some());
        let Recorded::Recovered(incident) = record_state_change(&s, &change(("ALARM", T1), ("OK", T2))).await.unwrap()
        else {
            panic!("the OK closes the incident")
        };
        assert_eq!(incident.seconds, 42 * 60 + 30, "{incident:?}");
        assert!(open(&s).await.is_none());
        // Delivered again, in any order: nothing more is counted or reopened.
        assert_eq!(record_state_change(&s, &change(("ALARM", T1), ("OK", T2))).await.unwrap(), Recorded::Nothing);
        assert_eq!(record_state_change(&s, &change(("OK", T0), ("ALARM", T1))).await.unwrap(), Recorded::Nothing);
        assert!(open(&s).await.is_none());
    }

    #[tokio::test]
    async fn an_ok_before_its_alarm_still_closes_the_incident() {
        let (s, _) = store();
        let recorded = record_state_change(&s, &change(("ALARM", T1), ("OK", T2))).await.unwrap();
        assert!(matches!(recorded, Recorded::Recovered(ref i) if i.started_at_ms < i.recovered_at_ms), "{recorded:?}");
        assert_eq!(record_state_change(&s, &change(("OK", T0), ("ALARM", T1))).await.unwrap(), Recorded::Nothing);
        assert!(open(&s).await.is_none(), "the late ALARM does not open a finished incident");
    }

    #[tokio::test]
    async fn insufficient_data_between_alarm_and_ok_keeps_the_start() {
        let (s, _) = store();
        record_state_change(&s, &change(("OK", T0), ("ALARM", T1))).await.unwrap();
        record_state_change(&s, &change(("ALARM", T1), ("INSUFFICIENT_DATA", T2))).await.unwrap();
        let later = "2027-01-15T09:10:00.000+0000";
        let Recorded::Recovered(i) =
            record_state_change(&s, &change(("INSUFFICIENT_DATA", T2), ("OK", later))).await.unwrap()
        else {
            panic!("closed from the open record's start")
        };
        assert_eq!(i.seconds, 60 * 60);
    }

    #[tokio::test]
    async fn an_incident_that_alarms_again_before_ok_is_timed_from_its_first_alarm() {
        let (s, _) = store();
        let (t3, t4, t5) =
            ("2027-01-15T08:20:00.000+0000", "2027-01-15T08:30:00.000+0000", "2027-01-15T08:40:00.000+0000");
        record_state_change(&s, &change(("OK", T0), ("ALARM", T1))).await.unwrap();
        record_state_change(&s, &change(("ALARM", T1), ("INSUFFICIENT_DATA", t3))).await.unwrap();
        record_state_change(&s, &change(("INSUFFICIENT_DATA", t3), ("ALARM", t4))).await.unwrap();
        let Recorded::Recovered(i) = record_state_change(&s, &change(("ALARM", t4), ("OK", t5))).await.unwrap() else {
            panic!("closed")
        };
        assert_eq!(i.seconds, 30 * 60, "from the first ALARM (08:10), not the second (08:30)");
        let again = record_state_change(&s, &change(("ALARM", t4), ("OK", t5))).await.unwrap();
        assert_eq!(again, Recorded::Nothing, "the same OK again counts nothing");
        assert_eq!(
            record_state_change(&s, &change(("INSUFFICIENT_DATA", t3), ("ALARM", t4))).await.unwrap(),
            Recorded::Nothing
        );
        assert!(open(&s).await.is_none());
        let hourly = AlarmStateChange {
            alarm_name: "groundwork-staging-MailSendSpikeAlarm-X".into(),
            ..change(("OK", T0), ("ALARM", T1))
        };
        assert_eq!(record_state_change(&s, &hourly).await.unwrap(), Recorded::Nothing, "hourly alarms are not timed");
    }

    #[tokio::test]
    async fn the_watch_ages_open_incidents() {
        let (s, clock) = store();
        let started = DateTime::parse_from_rfc3339("2027-01-15T08:10:00Z").unwrap().timestamp_millis();
        clock.set_ms(started + 31 * 60 * 1000);
        assert!(watch(&s, &clock).await.unwrap().is_empty());
        record_state_change(&s, &change(("OK", T0), ("ALARM", T1))).await.unwrap();
        assert_eq!(watch(&s, &clock).await.unwrap(), [(ALARM.to_owned(), 31 * 60)]);
        let bad = change(("OK", T0), ("ALARM", "yesterday"));
        assert!(matches!(record_state_change(&s, &bad).await, Err(StoreError::Invalid(_))));
    }
}
