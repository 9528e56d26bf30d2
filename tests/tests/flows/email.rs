//! Transactional email end to end: the three mail adapters against real peers (the SES API
//! of the loopback server, a real SMTP server, the outbox on disk), the dispatcher through
//! the local stack, and the suppression list fed by SES notifications.

use std::time::Duration;

use serde_json::{Value, json};
use shared::config::{Config, QueueName};
use shared::jobs::{Job, JobState, JobStatus};
use shared::mail::outbox::OutboxMailer;
use shared::mail::ses::SesMailer;
use shared::mail::smtp::SmtpMailer;
use shared::mail::templates::Email;
use shared::mail::{EmailAddress, MailError, Mailer, OutgoingEmail, suppression};
use shared::queue::consumer::Message;
use shared::secret::Secret;
use testkit::smtp::{wait_for_file, wait_for_message};

fn email(to: &str, subject: &str) -> OutgoingEmail {
    OutgoingEmail {
        from: "Acme <no-reply@acme.test>".into(),
        to: EmailAddress::parse(to).unwrap(),
        subject: subject.into(),
        text: "Plain part: https://app.acme.test/verify?token=t1\n".into(),
        html: "<p>HTML part</p>".into(),
        template: "verify_email".into(),
        job_id: ulid::Ulid::new().to_string(),
    }
}

#[tokio::test]
async fn ses_sends_through_the_ses_api() {
    let sdk = testkit::moto::sdk_config().await;
    let client = aws_sdk_sesv2::Client::new(&sdk);
    client.create_email_identity().email_identity("acme.test").send().await.expect("verify the sender domain");
    let mailer = SesMailer::new(client.clone(), None);
    let subject = format!("ses {}", ulid::Ulid::new());
    let id = mailer.send(&email("ada@example.com", &subject)).await.unwrap();
    assert!(!id.is_empty());
    // The server records what it was asked to send.
    let data: Value =
        reqwest::get(format!("{}/moto-api/data.json", testkit::moto::url())).await.unwrap().json().await.unwrap();
    let sent = data["ses"]["Message"].as_array().expect("sent messages");
    let ours = sent.iter().find(|m| m["subject"] == subject.as_str()).expect("our message was recorded");
    assert_eq!(ours["destinations"]["ToAddresses"], json!(["ada@example.com"]));
    assert_eq!(ours["source"], "Acme <no-reply@acme.test>");
    // The server keeps one body per message, the HTML one when both are given.
    assert_eq!(ours["body"], "<p>HTML part</p>");
}

#[tokio::test]
async fn ses_refusing_an_unverified_sender_is_permanent() {
    let sdk = testkit::moto::sdk_config().await;
    let mailer = SesMailer::new(aws_sdk_sesv2::Client::new(&sdk), None);
    let mut e = email("ada@example.com", "unverified");
    e.from = format!("nobody@unverified-{}.test", ulid::Ulid::new().to_string().to_lowercase());
    let err = mailer.send(&e).await.unwrap_err();
    assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn smtp_delivers_a_multipart_message_to_a_real_server() {
    let (port, dir) = testkit::smtp::capture();
    let mailer = SmtpMailer::from_url(&Secret::new(format!("smtp://127.0.0.1:{port}?tls=none"))).unwrap();
    let subject = format!("smtp {}", ulid::Ulid::new());
    mailer.send(&email("grace@example.com", &subject)).await.unwrap();
    let raw = wait_for_message(&dir, &subject).await;
    assert!(raw.contains("X-Envelope-To: grace@example.com"), "{raw}");
    assert!(raw.contains("multipart/alternative"));
    assert!(raw.contains("Plain part"));
    assert!(raw.contains("<p>HTML part</p>"));
    assert!(raw.contains("X-Groundwork-Template: verify_email"));
}

#[tokio::test]
async fn smtp_that_cannot_connect_is_retryable() {
    // Port 9 (discard) is closed on loopback: the connection is refused.
    let mailer = SmtpMailer::from_url(&Secret::new("smtp://127.0.0.1:9?tls=none".into())).unwrap();
    let err = mailer.send(&email("grace@example.com", "nowhere")).await.unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_outbox_writes_readable_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let mailer = OutboxMailer::new(dir.path().join("outbox"));
    mailer.send(&email("ada@example.com", "outbox subject")).await.unwrap();
    let raw = wait_for_file(&dir.path().join("outbox"), "eml", "outbox subject").await;
    assert!(raw.contains("To: ada@example.com"));
    assert!(raw.contains("https://app.acme.test/verify?token=t1"), "the link is readable as is: {raw}");
    let names: Vec<_> =
        std::fs::read_dir(dir.path().join("outbox")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(names[0].to_string_lossy().contains("verify_email-ada_example.com"), "{names:?}");
}

fn local_config(dir: &std::path::Path) -> Config {
    testkit::services::config(dir, &[("GROUNDWORK_PORT", "0"), ("GROUNDWORK_APP_NAME", "Acme")])
}

#[tokio::test]
async fn a_job_enqueued_on_the_local_stack_lands_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let stack = local::start(local_config(dir.path())).await.unwrap();
    let job = Job::SendEmail {
        to: EmailAddress::parse("ada@example.com").unwrap(),
        email: Email::PasswordReset { link: "https://app.acme.test/reset?token=abc".into(), expires_in_minutes: 60 },
    };
    let id = stack.services.jobs().enqueue(job).await.unwrap().to_string();
    let raw = wait_for_file(&dir.path().join("outbox"), "eml", "Reset your Acme password").await;
    assert!(raw.contains("https://app.acme.test/reset?token=abc"), "{raw}");
    assert!(raw.contains(&format!("X-Groundwork-Job: {id}")));
    testkit::eventually("the job to succeed", || async {
        let state = JobState::load(stack.services.store.as_ref(), &id).await.unwrap().unwrap();
        (state.status == JobStatus::Succeeded).then_some(())
    })
    .await;
    stack.stop().await;
}

fn sns_bounce(address: &str) -> String {
    let ses = json!({
        "eventType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail", "bouncedRecipients": [{"emailAddress": address}],
                   "timestamp": "2027-01-15T08:00:00.000Z", "feedbackId": "f"},
        "mail": {"messageId": "m", "destination": [address]}
    });
    json!({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:mail-events",
           "Message": ses.to_string(), "Timestamp": "2027-01-15T08:00:01.000Z"})
    .to_string()
}

#[tokio::test]
async fn bounced_addresses_are_suppressed_once_and_then_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let services = testkit::services::services(dir.path(), &[("GROUNDWORK_APP_NAME", "Acme")]).await;
    let events = mail_events::handler(services.clone());
    let message = Message {
        id: "m1".into(),
        receipt: "r".into(),
        body: sns_bounce("gone@example.com"),
        receive_count: 1,
        group_id: None,
    };
    events.handle(&message).await.unwrap();
    events.handle(&message).await.unwrap();
    let address = EmailAddress::parse("gone@example.com").unwrap();
    let s = suppression::get(services.store.as_ref(), &address).await.unwrap().expect("suppressed");
    assert_eq!(s.reason, suppression::Reason::Bounce);

    // A later email to that address is skipped, recorded, and not retried.
    let dispatch = email_dispatch::handler(services.clone()).unwrap();
    let id =
        services.jobs().enqueue(Job::SendEmail { to: address, email: Email::Welcome { name: None } }).await.unwrap();
    let got = services.queues.get(QueueName::Email).receive(1, Duration::from_secs(1)).await.unwrap();
    dispatch.handle(&Message::from(&got[0])).await.unwrap();
    let state = JobState::load(services.store.as_ref(), &id.to_string()).await.unwrap().unwrap();
    assert_eq!(state.status, JobStatus::Skipped);
    assert!(state.note.unwrap().contains("suppressed"));
    assert!(!dir.path().join("outbox").exists(), "nothing was sent");
}

#[tokio::test]
async fn an_unreadable_mail_event_is_parked_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let services = testkit::services::services(dir.path(), &[("GROUNDWORK_APP_NAME", "Acme")]).await;
    let events = mail_events::handler(services.clone());
    let message =
        Message { id: "m".into(), receipt: "r".into(), body: "<html>".into(), receive_count: 1, group_id: None };
    events.handle(&message).await.unwrap();
    let dead = services.queues.get(QueueName::MailEvents).dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
}
