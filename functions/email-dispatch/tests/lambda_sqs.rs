//! The email-dispatch bootstrap binary as Lambda runs it: real SQS events through a Lambda
//! Runtime API stub, answered with partial batch failures.

use serde_json::{Value, json};
use shared::jobs::{Envelope, Job, JobId};
use shared::mail::EmailAddress;
use shared::mail::templates::Email;
use testkit::runtime_api::{Outcome, RuntimeApi, lambda_env};

fn envelope_json(to: &str) -> String {
    serde_json::to_string(&Envelope {
        id: JobId::new(),
        idempotency_key: ulid::Ulid::new().to_string(),
        enqueued_at_ms: 0,
        job: Job::SendEmail {
            to: EmailAddress::parse(to).unwrap(),
            email: Email::VerifyEmail { link: "https://app.acme.test/verify?token=xyz".into(), expires_in_hours: 24 },
        },
    })
    .unwrap()
}

async fn start(extra: &[(&str, &str)], dir: &std::path::Path) -> (RuntimeApi, tokio::process::Child) {
    let api = RuntimeApi::start().await;
    let mut env = vec![
        ("GROUNDWORK_DATA_DIR".to_owned(), dir.display().to_string()),
        ("GROUNDWORK_MAIL".to_owned(), "outbox".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let child = api.spawn(env!("CARGO_BIN_EXE_email-dispatch"), "email-dispatch", &env).await;
    (api, child)
}

fn response(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("invocation error: {e}"),
    }
}

#[tokio::test]
async fn a_batch_is_sent_and_answered_without_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (api, mut child) = start(&[], dir.path()).await;
    let body = envelope_json("ada@example.com");
    let event = testkit::events::sqs(
        "arn:aws:sqs:us-east-1:123456789012:groundwork-staging-email",
        &[("m-1", body.as_str()), ("m-2", "{\"not\":\"a job\"}")],
    );
    let res = response(api.invoke(event.clone()).await);
    // The good job is sent; the undecodable one is parked in the DLQ, not retried.
    assert_eq!(res, json!({"batchItemFailures": []}));
    let raw =
        testkit::smtp::wait_for_file(&dir.path().join("outbox"), "eml", "https://app.acme.test/verify?token=xyz").await;
    assert!(raw.contains("To: ada@example.com"));
    // Redelivered: acknowledged, not sent again.
    let res = response(api.invoke(event).await);
    assert_eq!(res, json!({"batchItemFailures": []}));
    let sent = std::fs::read_dir(dir.path().join("outbox")).unwrap().count();
    assert_eq!(sent, 1, "the duplicate delivery sent nothing");
    child.kill().await.ok();
}

#[tokio::test]
async fn an_unreachable_provider_reports_the_message_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (api, mut child) = start(
        &[
            ("GROUNDWORK_MAIL", "smtp"),
            ("GROUNDWORK_SMTP_URL", "smtp://127.0.0.1:9?tls=none"),
            ("GROUNDWORK_MAIL_FROM", "Acme <no-reply@acme.test>"),
        ],
        dir.path(),
    )
    .await;
    let body = envelope_json("ada@example.com");
    let event =
        testkit::events::sqs("arn:aws:sqs:us-east-1:123456789012:groundwork-staging-email", &[("m-9", body.as_str())]);
    let res = response(api.invoke(event).await);
    assert_eq!(res, json!({"batchItemFailures": [{"itemIdentifier": "m-9"}]}));
    child.kill().await.ok();
}

#[tokio::test]
async fn without_a_sender_on_a_real_provider_init_fails_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let api = RuntimeApi::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_email-dispatch"))
        .env_clear()
        .envs(lambda_env(&api, "email-dispatch"))
        .env("GROUNDWORK_DATA_DIR", dir.path())
        .env("GROUNDWORK_MAIL", "smtp")
        .env("GROUNDWORK_SMTP_URL", "smtp://127.0.0.1:9?tls=none")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GROUNDWORK_MAIL_FROM"));
}
