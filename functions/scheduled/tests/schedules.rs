//! Scheduled jobs: the purge honours the retention window and restores, fired by a
//! controlled clock; the Lambda binary picks the job from the EventBridge rule; the local
//! ticker fires on time; `template.yaml` deploys exactly the schedules defined here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use shared::clock::{Clock, ManualClock};
use shared::schedule::{Schedule, ScheduledJob, run_schedule};
use shared::services::Services;
use shared::soft_delete::{self, RestoreError};
use shared::store::{Item, Key, Put};
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
