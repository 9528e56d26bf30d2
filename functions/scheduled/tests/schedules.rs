//! Scheduled jobs: the purge honours the retention window and restores, fired by a
//! controlled clock; the Lambda binary picks the job from the EventBridge rule, records
//! alarm incidents, runs the data migrations when invoked for them (through the deploy
//! step's script too) and reports failures to Sentry before it answers; the local ticker
//! fires on time; `template.yaml` deploys exactly the schedules defined here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use shared::clock::{Clock, ManualClock};
use shared::schedule::{Schedule, ScheduledJob, run_schedule};
use shared::services::Services;
use shared::soft_delete::{self, RestoreError};
use shared::store::{Item, Key, Put, StoreExt as _};
use testkit::T0_MS;
use testkit::runtime_api::{Outcome, RuntimeApi};

const DAY_MS: i64 = 86_400_000;

async fn services(dir: &std::path::Path, clock: &ManualClock) -> Services {
    testkit::services::services_with_clock(dir, &[], Arc::new(clock.clone())).await
}

#[tokio::test]
async fn the_purge_waits_for_the_retention_window_and_spares_restored_items() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0_MS);
    let s = services(dir.path(), &clock).await;
    let store = s.store.as_ref();
    let retention = Duration::from_secs(30 * 86_400);
    for id in ["a", "b", "c"] {
        store.put(Put::new(Item::new(Key::new(format!("ACCOUNT#{id}"), "PROFILE")).with("name", id))).await.unwrap();
        store
            .update(soft_delete::mark_deleted(Key::new(format!("ACCOUNT#{id}"), "PROFILE"), clock.now_ms(), retention))
            .await
            .unwrap();
    }
    // Deleting twice is refused.
    assert!(
        store
            .update(soft_delete::mark_deleted(Key::new("ACCOUNT#a", "PROFILE"), clock.now_ms(), retention))
            .await
            .is_err()
    );
    let job = scheduled::deployed_jobs(&s).into_iter().find(|(sch, _)| sch.name == "purge-soft-deleted").unwrap().1;

    clock.advance_ms(29 * DAY_MS);
    job.run(clock.now_ms()).await.unwrap();
    assert!(store.get(&Key::new("ACCOUNT#a", "PROFILE")).await.unwrap().is_some(), "inside the window nothing goes");
    let restored = soft_delete::restore(store, &Key::new("ACCOUNT#b", "PROFILE"), clock.now_ms()).await.unwrap();
    assert!(!soft_delete::is_deleted(&restored));

    clock.advance_ms(2 * DAY_MS);
    assert!(matches!(
        soft_delete::restore(store, &Key::new("ACCOUNT#c", "PROFILE"), clock.now_ms()).await,
        Err(RestoreError::Expired)
    ));
    job.run(clock.now_ms()).await.unwrap();
    assert!(store.get(&Key::new("ACCOUNT#a", "PROFILE")).await.unwrap().is_none());
    assert!(store.get(&Key::new("ACCOUNT#c", "PROFILE")).await.unwrap().is_none());
    assert!(store.get(&Key::new("ACCOUNT#b", "PROFILE")).await.unwrap().is_some(), "restored items stay");
    // Running again (EventBridge may fire twice) changes nothing.
    job.run(clock.now_ms()).await.unwrap();
    assert!(store.get(&Key::new("ACCOUNT#b", "PROFILE")).await.unwrap().is_some());
}

struct Counter(AtomicU32, std::sync::Mutex<Vec<i64>>);

#[async_trait::async_trait]
impl ScheduledJob for Counter {
    fn name(&self) -> &str {
        "count"
    }
    async fn run(&self, fired_at_ms: i64) -> anyhow::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.lock().unwrap().push(fired_at_ms);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_local_ticker_fires_every_interval() {
    let clock = ManualClock::at(T0_MS);
    let job = Arc::new(Counter(AtomicU32::new(0), std::sync::Mutex::default()));
    let (stop, watch) = tokio::sync::watch::channel(false);
    let schedule = Schedule { name: "count", expression: "rate(5 minutes)" };
    let task = tokio::spawn(run_schedule(schedule, job.clone(), Arc::new(clock.clone()), watch));
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(job.0.load(Ordering::SeqCst), 0, "not before the first interval");
    for n in 1..=3 {
        clock.advance_ms(300_000);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(job.0.load(Ordering::SeqCst), n);
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(job.1.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_lambda_binary_runs_the_job_named_by_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let api = RuntimeApi::start().await;
    let env = [("GROUNDWORK_DATA_DIR".to_owned(), dir.path().display().to_string())];
    let mut child = api.spawn(env!("CARGO_BIN_EXE_scheduled"), "scheduled", &env).await;
    let event = testkit::events::eventbridge_scheduled();
    assert!(matches!(api.invoke(event.clone()).await, Outcome::Response(_)));
    let mut unknown = event;
    unknown["resources"] = json!(["arn:aws:events:us-east-1:123456789012:rule/groundwork-staging-launch-rockets"]);
    match api.invoke(unknown).await {
        Outcome::Error(e) => assert!(e.to_string().contains("no scheduled job for rule"), "{e}"),
        Outcome::Response(r) => panic!("an unknown rule must fail the invocation, got {r}"),
    }
    child.kill().await.ok();
}

#[tokio::test]
async fn the_lambda_binary_times_an_alarm_incident_from_its_state_changes() {
    let dir = tempfile::tempdir().unwrap();
    let api = RuntimeApi::start().await;
    let env = [("GROUNDWORK_DATA_DIR".to_owned(), dir.path().display().to_string())];
    let mut child = api.spawn(env!("CARGO_BIN_EXE_scheduled"), "scheduled", &env).await;
    let alarm = "groundwork-staging-ApiErrorRateAlarm-1ABC2DEF3GHI";
    let (t0, t1, t2) = ("2027-01-15T08:04:40.985+0000", "2027-01-15T08:12:40.985+0000", "2027-01-15T08:40:10.985+0000");
    let opened = testkit::events::alarm_state_change(alarm, ("OK", t0), ("ALARM", t1));
    let recovered = testkit::events::alarm_state_change(alarm, ("ALARM", t1), ("OK", t2));
    // The OK first, then the ALARM late, then the OK again: one incident, closed.
    for event in [recovered.clone(), opened, recovered] {
        assert_eq!(api.invoke(event).await, Outcome::Response(serde_json::Value::Null));
    }
    child.kill().await.ok();
    let clock = Arc::new(ManualClock::at(testkit::T0_MS));
    let store = shared::store::sqlite::SqliteStore::open(&dir.path().join("groundwork.sqlite3"), clock).unwrap();
    let items = store.query_all(shared::store::Query::partition(shared::keys::INCIDENTS)).await.unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    let incident: shared::incidents::Incident = items[0].record().unwrap();
    assert_eq!((incident.alarm.as_str(), incident.seconds), (alarm, 27 * 60 + 30));
}

#[tokio::test]
async fn the_lambda_binary_runs_the_data_migrations_when_invoked_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let api = RuntimeApi::start().await;
    let env = [("GROUNDWORK_DATA_DIR".to_owned(), dir.path().display().to_string())];
    let mut child = api.spawn(env!("CARGO_BIN_EXE_scheduled"), "scheduled", &env).await;
    let first = api.invoke(json!({"action": "migrate"})).await;
    let Outcome::Response(first) = first else { panic!("the migration invocation failed: {first:?}") };
    let applied: Vec<u32> = shared::migrations::ALL.iter().map(|m| m.number()).collect();
    assert_eq!(first, json!({"status": "complete", "applied": applied}));
    // The deploy step invokes again until complete; a second call finds nothing to do.
    let Outcome::Response(again) = api.invoke(json!({"action": "migrate"})).await else { panic!() };
    assert_eq!(again, json!({"status": "complete", "applied": []}));
    match api.invoke(json!({"action": "drop-table"})).await {
        Outcome::Error(e) => assert!(e.to_string().contains("unknown variant `drop-table`"), "{e}"),
        Outcome::Response(r) => panic!("an unknown action must fail, got {r}"),
    }
    child.kill().await.ok();
}

#[tokio::test]
async fn a_failed_invocation_reaches_sentry_before_the_function_answers() {
    let sentry = testkit::sentry::SentryStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = RuntimeApi::start().await;
    let env = [
        ("GROUNDWORK_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("SENTRY_DSN".to_owned(), sentry.dsn.clone()),
    ];
    let mut child = api.spawn(env!("CARGO_BIN_EXE_scheduled"), "scheduled", &env).await;
    let mut event = testkit::events::eventbridge_scheduled();
    event["resources"] = json!(["arn:aws:events:us-east-1:123456789012:rule/groundwork-staging-launch-rockets"]);
    assert!(matches!(api.invoke(event).await, Outcome::Error(_)));
    // No waiting: the event was sent before the answer, as Lambda freezes the function after.
    let events = sentry.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    let reported = &events[0];
    assert_eq!(reported["tags"]["function"], "scheduled");
    assert_eq!(
        (reported["environment"].as_str(), reported["release"].as_str()),
        (Some("local"), Some(shared::RELEASE))
    );
    assert!(reported.to_string().contains("no scheduled job for rule"), "{reported:#}");

    // Sentry stops answering: invocations still answer, after at most a bounded flush.
    sentry.hang();
    let ok = testkit::events::eventbridge_scheduled();
    assert!(matches!(api.invoke(ok).await, Outcome::Response(_)));
    let mut bad = testkit::events::eventbridge_scheduled();
    bad["resources"] = json!([]);
    assert!(matches!(api.invoke(bad).await, Outcome::Error(_)));
    child.kill().await.ok();
}

#[tokio::test]
async fn a_malformed_sentry_dsn_stops_the_function_at_init_naming_it() {
    let api = RuntimeApi::start().await;
    let env = [("SENTRY_DSN".to_owned(), "not-a-dsn".to_owned())];
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_scheduled"))
        .env_clear()
        .envs(testkit::runtime_api::lambda_env(&api, "scheduled"))
        .envs(env)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), run).await.unwrap().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SENTRY_DSN") && !stderr.contains("not-a-dsn"), "{stderr}");
}

/// Runs `infra/migrate.py --function scheduled` against `invoke`; its exit status and output.
async fn migrate_py(invoke: &testkit::runtime_api::InvokeApi) -> (bool, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = tokio::process::Command::new(format!("{root}/.tools/venv/bin/python"))
        .args(["infra/migrate.py", "--function", "scheduled", "--busy-wait", "0"])
        .current_dir(root)
        .env("AWS_ENDPOINT_URL_LAMBDA", &invoke.url)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .await
        .expect("python runs (the test command installs it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_deploy_step_invokes_the_live_alias_until_the_migrations_are_complete() {
    use testkit::runtime_api::InvokeApi;
    let dir = tempfile::tempdir().unwrap();
    let api = std::sync::Arc::new(RuntimeApi::start().await);
    let env = [("GROUNDWORK_DATA_DIR".to_owned(), dir.path().display().to_string())];
    let mut child = api.spawn(env!("CARGO_BIN_EXE_scheduled"), "scheduled", &env).await;
    // Another runner's lock, then a run that paused at its deadline, then the function's own.
    let scripted = vec![
        Outcome::Response(json!({"status": "busy", "holder": "0.1.0+abc/01J"})),
        Outcome::Response(json!({"status": "paused", "number": 1, "applied": []})),
    ];
    let invoke = InvokeApi::start(api.clone(), scripted).await;
    let (ok, out) = migrate_py(&invoke).await;
    assert!(ok, "{out}");
    assert!(out.contains("holds the lock; waiting") && out.contains("paused at a checkpoint"), "{out}");
    let applied: Vec<String> = shared::migrations::ALL.iter().map(|m| m.number().to_string()).collect();
    assert!(out.contains(&format!("applied {}", applied.join(", "))), "{out}");
    let calls = invoke.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    for (function, qualifier, payload) in calls {
        assert_eq!((function.as_str(), qualifier.as_deref()), ("scheduled", Some("live")));
        assert_eq!(payload, json!({"action": "migrate"}));
    }
    let (ok, out) = migrate_py(&InvokeApi::start(api.clone(), vec![]).await).await;
    assert!(ok && out.contains("up to date"), "{out}");
    child.kill().await.ok();

    // A failing migration fails the deploy step with the function's message.
    let failing = vec![Outcome::Error(json!({
        "errorType": "anyhow::Error",
        "errorMessage": "migration 1 (account directory) failed: the store is unavailable"
    }))];
    let (ok, out) = migrate_py(&InvokeApi::start(api, failing).await).await;
    assert!(!ok && out.contains("migration 1 (account directory) failed"), "{out}");
}

#[test]
fn template_deploys_exactly_the_schedules_defined_in_code() {
    let deployed: Vec<(String, String)> =
        testkit::template::schedules().into_iter().map(|r| (r.name, r.expression)).collect();
    let mut defined: Vec<(String, String)> =
        scheduled::DEPLOYED.iter().map(|s| (s.name.to_owned(), s.expression.to_owned())).collect();
    defined.sort();
    assert_eq!(deployed, defined, "template.yaml must deploy exactly the schedules the code defines");
}

#[tokio::test]
async fn purging_a_deleted_account_purges_everything_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0_MS);
    let s = services(dir.path(), &clock).await;
    let store = s.store.as_ref();
    let (doomed, kept): (shared::id::AccountId, shared::id::AccountId) = (Default::default(), Default::default());
    for id in [doomed, kept] {
        let pk = shared::keys::account_partition(id);
        store.put(Put::new(Item::new(shared::keys::account(id)).with("name", "x"))).await.unwrap();
        for sk in ["MEMBER#1", "INVITE#2", "DATA#3"] {
            store.put(Put::new(Item::new(Key::new(pk.clone(), sk)))).await.unwrap();
        }
    }
    store
        .transact(shared::tenancy::delete_account_ops(doomed, clock.now_ms(), Duration::from_secs(30 * 86_400)))
        .await
        .unwrap();
    let job = scheduled::deployed_jobs(&s).into_iter().find(|(sch, _)| sch.name == "purge-soft-deleted").unwrap().1;
    clock.advance_ms(31 * DAY_MS);
    job.run(clock.now_ms()).await.unwrap();
    let left = |id| async move {
        use shared::store::StoreExt as _;
        store.query_all(shared::store::Query::partition(shared::keys::account_partition(id))).await.unwrap().len()
    };
    assert_eq!(left(doomed).await, 0, "the account and everything under it are gone");
    assert_eq!(left(kept).await, 4, "another account is untouched");
}

#[test]
fn the_outbox_relay_may_send_to_every_queue_a_job_can_be_staged_for() {
    let template = testkit::template::template();
    let statements = template["Resources"]["ScheduledFunction"]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .collect::<Vec<_>>();
    let sendable: Vec<String> = statements
        .iter()
        .filter(|s| s["Action"].as_sequence().is_some_and(|a| a.iter().any(|x| x.as_str() == Some("sqs:SendMessage"))))
        .flat_map(|s| s["Resource"].as_sequence().cloned().unwrap_or_else(|| vec![s["Resource"].clone()]))
        .map(|r| format!("{r:?}"))
        .collect();
    // Jobs go to the email queue or the jobs queue (`Job::queue`).
    for queue in ["EmailQueue", "JobsQueue"] {
        assert!(sendable.iter().any(|r| r.contains(queue)), "the relay cannot send to {queue}: {sendable:?}");
    }
}
