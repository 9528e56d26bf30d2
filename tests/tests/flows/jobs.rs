//! The job framework end to end on the embedded adapters: every delivery may come twice,
//! failures back off and end in the dead-letter queue, redrives run jobs again, bad bodies
//! never stop a batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use shared::clock::ManualClock;
use shared::config::QueueName;
use shared::jobs::{Envelope, Job, JobError, JobHandler, JobOutcome, JobState, JobStatus};
use shared::mail::EmailAddress;
use shared::mail::templates::Email;
use shared::queue::consumer::{Message, MessageHandler, process_batch};
use shared::queue::{Outgoing, Received};
use shared::services::Services;
use testkit::T0_MS;

async fn services(dir: &std::path::Path) -> (Services, ManualClock) {
    let clock = ManualClock::at(T0_MS);
    let extra = [("GROUNDWORK_JOB_MAX_ATTEMPTS", "3")];
    (testkit::services::services_with_clock(dir, &extra, Arc::new(clock.clone())).await, clock)
}

fn welcome(to: &str) -> Job {
    Job::SendEmail { to: EmailAddress::parse(to).unwrap(), email: Email::Welcome { name: Some("Ada".into()) } }
}

#[derive(Default)]
struct Counting {
    runs: AtomicU32,
    fail: AtomicBool,
    permanent: bool,
    delay: Duration,
}

#[async_trait]
impl JobHandler for Counting {
    async fn run(&self, _: &Envelope) -> Result<JobOutcome, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if self.fail.load(Ordering::SeqCst) {
            let e = anyhow::anyhow!("the provider said no");
            return Err(if self.permanent { JobError::Permanent(e) } else { JobError::Retry(e) });
        }
        Ok(JobOutcome::Done)
    }
}

async fn receive_one(services: &Services) -> Received {
    let got = services.queues.get(QueueName::Email).receive(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1, "expected one message");
    got.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_job_delivered_twice_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let (services, _) = services(dir.path()).await;
    let handler = Arc::new(Counting::default());
    let runner = services.job_runner(QueueName::Email, handler.clone());
    let id = services.jobs().enqueue(welcome("ada@example.com")).await.unwrap();
    assert_eq!(
        JobState::load(services.store.as_ref(), &id.to_string()).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    let m = Message::from(&receive_one(&services).await);
    runner.handle(&m).await.unwrap();
    // The ack was lost (a crash, a timeout): the same message comes back.
    runner.handle(&m).await.unwrap();
    runner.handle(&Message { receive_count: 2, ..m }).await.unwrap();
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    let state = JobState::load(services.store.as_ref(), &id.to_string()).await.unwrap().unwrap();
    assert_eq!(state.status, JobStatus::Succeeded);
    assert_eq!(state.attempts, 1);
}

#[tokio::test]
async fn two_jobs_with_one_idempotency_key_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let (services, _) = services(dir.path()).await;
    let handler = Arc::new(Counting::default());
    let runner = services.job_runner(QueueName::Email, handler.clone());
    for _ in 0..2 {
        let id = shared::jobs::JobId::new();
        services.jobs().enqueue_with_key(welcome("ada@example.com"), id, "signup:ada".into()).await.unwrap();
    }
    for _ in 0..2 {
        let m = Message::from(&receive_one(&services).await);
        runner.handle(&m).await.unwrap();
    }
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_job_running_in_another_delivery_is_not_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (services, _) = services(dir.path()).await;
    let handler = Arc::new(Counting { delay: Duration::from_millis(300), ..Counting::default() });
    let runner = Arc::new(services.job_runner(QueueName::Email, handler.clone()));
    services.jobs().enqueue(welcome("ada@example.com")).await.unwrap();
    let m = Message::from(&receive_one(&services).await);
    // The same message delivered again (its visibility ran out) comes with a new receipt.
    let again = Message { receipt: format!("{}-redelivered", m.receipt), ..m.clone() };
    let (a, b) = tokio::join!(runner.handle(&m), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        runner.handle(&again).await
    });
    assert!(a.is_ok());
    assert!(b.unwrap_err().to_string().contains("running in another delivery"));
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failures_back_off_then_dead_letter_and_a_redrive_runs_the_job_again() {
    let dir = tempfile::tempdir().unwrap();
    let (services, clock) = services(dir.path()).await;
    let handler = Arc::new(Counting { fail: AtomicBool::new(true), ..Counting::default() });
    let runner = services.job_runner(QueueName::Email, handler.clone());
    let id = services.jobs().enqueue(welcome("ada@example.com")).await.unwrap().to_string();
    let queue = services.queues.get(QueueName::Email);
    for attempt in 1..=3 {
        let m = Message::from(&receive_one(&services).await);
        assert_eq!(m.receive_count, attempt);
        let result = runner.handle(&m).await;
        let state = JobState::load(services.store.as_ref(), &id).await.unwrap().unwrap();
        assert_eq!(state.attempts, attempt);
        assert!(state.last_error.as_deref().unwrap().contains("the provider said no"));
        if attempt < 3 {
            assert!(result.is_err(), "a retryable failure is reported so the message stays");
            assert_eq!(state.status, JobStatus::Failed);
            // Backoff: hidden for 2^attempt seconds, not just the queue's timeout.
            let backoff = 1000 * (1 << attempt);
            clock.advance_ms(backoff - 500);
            assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty(), "still backing off");
            clock.advance_ms(600);
        } else {
            assert!(result.is_ok(), "dead-lettered and acknowledged");
            queue.ack(&m.receipt).await.unwrap();
            assert_eq!(state.status, JobStatus::Dead);
        }
    }
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let listed = JobState::list_dead(services.store.as_ref(), 10).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);

    handler.fail.store(false, Ordering::SeqCst);
    assert_eq!(queue.redrive(10).await.unwrap(), 1);
    let m = Message::from(&receive_one(&services).await);
    runner.handle(&m).await.unwrap();
    assert_eq!(handler.runs.load(Ordering::SeqCst), 4);
    assert_eq!(JobState::load(services.store.as_ref(), &id).await.unwrap().unwrap().status, JobStatus::Succeeded);
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (services, _) = services(dir.path()).await;
    let handler = Arc::new(Counting { fail: AtomicBool::new(true), permanent: true, ..Counting::default() });
    let runner = services.job_runner(QueueName::Email, handler.clone());
    let id = services.jobs().enqueue(welcome("ada@example.com")).await.unwrap().to_string();
    let m = Message::from(&receive_one(&services).await);
    runner.handle(&m).await.unwrap();
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    assert_eq!(services.queues.get(QueueName::Email).dead_letters(10).await.unwrap().len(), 1);
    assert_eq!(JobState::load(services.store.as_ref(), &id).await.unwrap().unwrap().status, JobStatus::Dead);
}

#[tokio::test]
async fn an_undecodable_job_is_dead_lettered_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (services, _) = services(dir.path()).await;
    let handler = Arc::new(Counting::default());
    let runner = services.job_runner(QueueName::Email, handler.clone());
    let queue = services.queues.get(QueueName::Email);
    queue.send(Outgoing::new("{\"kind\":\"launch_rockets\"}")).await.unwrap();
    services.jobs().enqueue(welcome("ada@example.com")).await.unwrap();
    let batch: Vec<Message> =
        queue.receive(10, Duration::from_secs(1)).await.unwrap().iter().map(Message::from).collect();
    assert_eq!(batch.len(), 2);
    let failed = process_batch(&runner, &batch, false).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].body.contains("launch_rockets"));
    let state = JobState::load(services.store.as_ref(), &batch[0].id).await.unwrap().unwrap();
    assert_eq!(state.status, JobStatus::Dead);
    assert!(state.last_error.unwrap().contains("does not decode"));
}
