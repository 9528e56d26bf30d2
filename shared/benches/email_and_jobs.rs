//! Emails rendered per second (every template), and jobs per second end to end through the
//! embedded queue: enqueue → receive → run (idempotency record, state) → ack.
//! Run: `cargo bench -p shared --bench email_and_jobs`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::config::{Config, QueueName};
use shared::jobs::{Envelope, Job, JobError, JobHandler, JobOutcome};
use shared::mail::EmailAddress;
use shared::mail::render::{Branding, render};
use shared::mail::templates::Email;
use shared::queue::consumer::{Message, MessageHandler};
use shared::services::Services;

fn emails() -> Vec<Email> {
    vec![
        Email::VerifyEmail { link: "https://app.acme.test/verify?token=abc".into(), expires_in_hours: 24 },
        Email::PasswordReset { link: "https://app.acme.test/reset?token=abc".into(), expires_in_minutes: 60 },
        Email::Invitation {
            inviter_name: "Ada".into(),
            account_name: "Engines".into(),
            role: "admin".into(),
            link: "https://app.acme.test/i".into(),
            expires_in_days: 7,
        },
        Email::Welcome { name: Some("Grace".into()) },
        Email::PasswordChanged { name: None },
        Email::TrialEnding {
            account_name: "Engines".into(),
            plan_name: "Team".into(),
            trial_ends_on: "18 January 2027".into(),
            link: "https://app.acme.test/billing".into(),
        },
        Email::PaymentFailed { account_name: "Engines".into(), amount: "$49.00".into(), link: "https://p".into() },
        Email::PlanChanged {
            account_name: "Engines".into(),
            old_plan: "Starter".into(),
            new_plan: "Team".into(),
            effective_on: "15 January 2027".into(),
            link: "https://app.acme.test/billing".into(),
        },
        Email::DataExportReady { subject: "your account".into(), link: "https://e".into(), expires_in_hours: 24 },
    ]
}

struct Noop;

#[async_trait]
impl JobHandler for Noop {
    async fn run(&self, _: &Envelope) -> Result<JobOutcome, JobError> {
        Ok(JobOutcome::Done)
    }
}

fn bench(c: &mut Criterion) {
    let branding = Branding { name: "Acme".into(), url: "https://app.acme.test".into() };
    let all = emails();
    let mut g = c.benchmark_group("email");
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("render_every_template", |b| {
        b.iter(|| {
            for e in &all {
                std::hint::black_box(render(e, &branding).unwrap());
            }
        });
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_vars([("GROUNDWORK_DATA_DIR".to_owned(), dir.path().display().to_string())]).unwrap();
    let services = rt.block_on(Services::from_config(config)).unwrap();
    let runner = services.job_runner(QueueName::Email, Arc::new(Noop));
    let queue = services.queues.get(QueueName::Email);
    let to = EmailAddress::parse("ada@example.com").unwrap();
    let mut g = c.benchmark_group("jobs");
    g.throughput(Throughput::Elements(1));
    g.bench_function("enqueue_consume_ack_embedded", |b| {
        b.to_async(&rt).iter(|| async {
            services
                .jobs()
                .enqueue(Job::SendEmail { to: to.clone(), email: Email::Welcome { name: None } })
                .await
                .unwrap();
            let got = queue.receive(1, Duration::from_secs(1)).await.unwrap();
            let m = Message::from(&got[0]);
            runner.handle(&m).await.unwrap();
            queue.ack(&got[0].receipt).await.unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
