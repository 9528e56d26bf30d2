//! The cloud path end to end: the critical journeys on the cloud-in-a-box harness (every
//! function as its Lambda binary, wired as `template.yaml` wires it), the same journeys on
//! the local stack, and the template broken on purpose in each way a deploy could break:
//! each run fails with a message naming what is wrong.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;
use shared::clock::SystemClock;
use shared::mail::{EmailAddress, suppression};
use testkit::app::TestApp;
use testkit::cloud::{Cloud, Options};
use testkit::journeys::{self, Client};

async fn cloud(options: Options) -> Cloud {
    testkit::logs();
    Cloud::start(options).await.expect("the harness starts")
}

fn resource<'a>(template: &'a mut Yaml, logical: &str) -> &'a mut Yaml {
    template
        .get_mut("Resources")
        .and_then(|r| r.get_mut(logical))
        .unwrap_or_else(|| panic!("{logical} in the template"))
}

fn properties<'a>(template: &'a mut Yaml, logical: &str) -> &'a mut Yaml {
    resource(template, logical).get_mut("Properties").expect("properties")
}

#[tokio::test]
async fn the_critical_path_on_the_local_stack() {
    let app = TestApp::spawn(&[]).await;
    journeys::critical_path(&app).await;
}

#[tokio::test]
async fn the_critical_path_as_the_template_deploys_it() {
    let cloud = cloud(Options::default()).await;
    journeys::critical_path(&cloud).await;

    // SES reports a bounce as the template routes it: configuration set → topic → the
    // mail-events queue → its consumer, which suppresses the address.
    cloud.mail_event("Bounce", "ada@example.com").await.expect("the bounce is published");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(&cloud.aws_url)
        .credentials_provider(aws_credential_types::Credentials::new("test", "test", None, None, "static"))
        .load()
        .await;
    let table = cloud.stack.reference("Table").unwrap().text().unwrap();
    let store =
        shared::store::dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, Arc::new(SystemClock));
    let address = EmailAddress::parse("ada@example.com").unwrap();
    testkit::eventually("the bounced address to be suppressed", || async {
        suppression::get(&store, &address).await.unwrap()
    })
    .await;

    assert_eq!(cloud.faults(), Vec::<String>::new(), "no function failed");
    assert_eq!(cloud.iam_violations().await.unwrap(), Vec::<String>::new(), "every call is allowed");
    assert_eq!(cloud.unrouted_sends().await.unwrap(), Vec::<String>::new(), "every send routes its bounces");
    println!("{}", cloud.report());
}

#[tokio::test]
async fn stripe_checkout_and_its_webhook_through_the_fifo_queue_as_the_template_deploys_it() {
    use crate::billing::{SECRET, checkout_completed, mount_subscription, post_signed, stripe_double, subscription};
    use shared::clock::Clock as _;

    let stripe = stripe_double().await;
    let cloud = cloud(Options {
        parameters: vec![
            ("StripeSecretKey".into(), "sk_test_123".into()),
            ("StripeApiBase".into(), stripe.uri()),
            ("StripeWebhookSecret".into(), SECRET.into()),
        ],
        ..Options::default()
    })
    .await;
    let client = Client::new(&cloud);
    let ada = client.user("ada@example.com").await;
    let (_, account) = client.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    let acme = account["id"].as_str().unwrap().to_owned();
    let checkout = format!("/accounts/{acme}/billing/checkout");
    let (status, body) =
        client.call("POST", &checkout, Some(&ada), Some(json!({"plan": "team", "interval": "monthly"}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().unwrap().starts_with("https://checkout.stripe.com/"), "{body}");

    // Stripe reports the completed checkout: the webhook function records it and queues it
    // on the FIFO queue; the billing events consumer reads the subscription and applies it.
    let t0 = shared::clock::SystemClock.now_secs() - 1000;
    mount_subscription(&stripe, &subscription("sub_1", "cus_acme", "trialing", "price_team_monthly_local", t0)).await;
    let completed = checkout_completed(&acme, t0 + 1);
    let http = reqwest::Client::new();
    let post = || post_signed(&http, &cloud.url, &completed, SECRET);
    let (status, receipt) = post().await;
    assert_eq!((status, receipt["duplicate"].as_bool()), (200, Some(false)), "{receipt}");
    let billing =
        testkit::eventually_within(std::time::Duration::from_secs(30), "the subscription applied", || async {
            let (_, b) = client.call("GET", &format!("/accounts/{acme}/billing"), Some(&ada), None).await;
            (b["subscription"]["status"] == "trialing").then_some(b)
        })
        .await;
    assert_eq!(billing["entitlements"]["plan"], "team");
    // Delivered again: acknowledged, not queued again.
    assert_eq!(post().await.1["duplicate"], true);

    assert_eq!(cloud.faults(), Vec::<String>::new(), "no function failed");
    assert_eq!(cloud.iam_violations().await.unwrap(), Vec::<String>::new(), "every call is allowed");
}

#[tokio::test]
async fn a_route_pointed_at_the_wrong_function_is_named() {
    let mut options = Options::default();
    // `GET /me` moved from the auth function to the platform function.
    let events = properties(&mut options.template, "AuthFunction").get_mut("Events").unwrap().as_mapping_mut().unwrap();
    let (key, event) = events
        .iter()
        .find(|(_, e)| {
            e["Properties"]["Path"].as_str() == Some("/me") && e["Properties"]["Method"].as_str() == Some("GET")
        })
        .map(|(k, e)| (k.clone(), e.clone()))
        .expect("GET /me is an auth route");
    events.remove(&key);
    properties(&mut options.template, "PlatformFunction")
        .get_mut("Events")
        .unwrap()
        .as_mapping_mut()
        .unwrap()
        .insert(key, event);
    let cloud = cloud(options).await;
    let (status, _) = Client::new(&cloud).call("GET", "/me", Some("a-token"), None).await;
    assert_eq!(status, 404);
    let faults = cloud.faults().join("\n");
    assert!(faults.contains("route GET /me is wired to PlatformFunction, whose router does not serve it"), "{faults}");
}

#[tokio::test]
async fn a_removed_environment_variable_is_named() {
    let mut options = Options::default();
    let globals = options.template["Globals"]["Function"]["Environment"]["Variables"].as_mapping_mut().unwrap();
    globals.remove("GROUNDWORK_TABLE").expect("the table's variable");
    let cloud = cloud(options).await;
    let (status, body) = Client::new(&cloud).call("GET", "/health", None, None).await;
    assert_eq!((status, body), (500, json!({"message": "Internal Server Error"})));
    let faults = cloud.faults().join("\n");
    assert!(faults.contains("PlatformFunction exited during init") && faults.contains("GROUNDWORK_TABLE"), "{faults}");
}

#[tokio::test]
async fn a_send_outside_the_routed_configuration_set_is_named() {
    let mut options = Options::default();
    let globals = options.template["Globals"]["Function"]["Environment"]["Variables"].as_mapping_mut().unwrap();
    globals.remove("GROUNDWORK_SES_CONFIGURATION_SET").expect("the configuration set's variable");
    let cloud = cloud(options).await;
    let client = Client::new(&cloud);
    let body = json!({"email": "ada@example.com", "password": testkit::app::PASSWORD});
    assert_eq!(client.call("POST", "/auth/signup", None, Some(body)).await.0, 202);
    client.email("ada@example.com", "Confirm your email address").await;
    let unrouted = cloud.unrouted_sends().await.unwrap();
    assert_eq!(unrouted.len(), 1, "{unrouted:?}");
    assert!(
        unrouted[0].starts_with("EmailDispatchFunction sent email with no configuration set, which routes no bounce"),
        "{unrouted:?}"
    );
}

#[tokio::test]
async fn a_removed_policy_statement_is_named() {
    let mut options = Options::default();
    let statements = properties(&mut options.template, "EmailDispatchFunction")["Policies"][0]["Statement"]
        .as_sequence_mut()
        .unwrap();
    statements.retain(|s| !serde_yaml_ng::to_string(&s["Action"]).unwrap().contains("ses:SendEmail"));
    let cloud = cloud(options).await;
    let client = Client::new(&cloud);
    let (status, _) = client
        .call(
            "POST",
            "/auth/signup",
            None,
            Some(json!({"email": "ada@example.com", "password": testkit::app::PASSWORD})),
        )
        .await;
    assert_eq!(status, 202);
    client.email("ada@example.com", "Confirm your email address").await;
    let violations = cloud.iam_violations().await.unwrap();
    assert_eq!(
        violations,
        [
            "EmailDispatchFunction called ses:SendEmail, which its template policies do not allow (add it to a statement of EmailDispatchFunction's Policies)"
        ]
    );
}

/// A bootstrap that takes one event and then crashes (for `/health`) or never answers.
fn misbehaving_bootstrap(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("bootstrap");
    let python = std::env::var("GROUNDWORK_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/venv/bin/python").to_owned());
    std::fs::write(
        &path,
        format!(
            "#!{python}\nimport json, os, sys, time, urllib.request\n\
             api = os.environ['AWS_LAMBDA_RUNTIME_API']\n\
             while True:\n\
             \x20   event = json.load(urllib.request.urlopen(f'http://{{api}}/2018-06-01/runtime/invocation/next'))\n\
             \x20   if event.get('rawPath') == '/health' or 'Records' in event:\n\
             \x20       sys.exit(3)\n\
             \x20   time.sleep(60)\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_queue_that_hides_messages_for_less_than_its_consumer_runs_is_refused() {
    let mut options = Options::default();
    properties(&mut options.template, "EmailQueue")["VisibilityTimeout"] = Yaml::Number(5.into());
    let err = Cloud::start(options).await.err().expect("Lambda refuses the mapping");
    assert!(
        err.to_string().contains("EmailDispatchFunction")
            && err.to_string().contains("visibility timeout (5 s) is less than the function's timeout (30 s)"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_crash_or_a_timeout_gets_the_gateways_answer_and_the_rest_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options {
        binaries: HashMap::from([("PlatformFunction".to_owned(), misbehaving_bootstrap(dir.path()))]),
        ..Options::default()
    };
    properties(&mut options.template, "PlatformFunction")["Timeout"] = Yaml::Number(1.into());
    let cloud = cloud(options).await;
    let client = Client::new(&cloud);
    let (status, body) = client.call("GET", "/health", None, None).await;
    assert_eq!((status, body), (500, json!({"message": "Internal Server Error"})), "a crash");
    let (status, body) = client.call("GET", "/openapi.json", None, None).await;
    assert_eq!((status, body), (503, json!({"message": "Service Unavailable"})), "a timeout");
    let (status, _) = client.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(status, 200, "other functions keep serving");
    let (status, _) = client.call("GET", "/health", None, None).await;
    assert_eq!(status, 500, "a new instance replaces the crashed one");
    let faults = cloud.faults().join("\n");
    assert!(faults.contains("PlatformFunction exited during an invocation"), "{faults}");
    assert!(faults.contains("PlatformFunction timed out after 1s on GET /openapi.json"), "{faults}");
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dead_letter_queue_after_max_receive_count() {
    let dir = tempfile::tempdir().unwrap();
    // The worker crashes on every batch; the jobs queue's visibility is shortened so the
    // retries take seconds, its maxReceiveCount kept.
    let mut options = Options {
        binaries: HashMap::from([("WorkerFunction".to_owned(), misbehaving_bootstrap(dir.path()))]),
        ..Options::default()
    };
    // One receive per batch (no batching window), a crash at once, the message back two
    // seconds later (not less than the function's timeout, as Lambda requires).
    properties(&mut options.template, "JobsQueue")["VisibilityTimeout"] = Yaml::Number(2.into());
    let worker = properties(&mut options.template, "WorkerFunction");
    worker["Timeout"] = Yaml::Number(1.into());
    let jobs = worker["Events"]["JobsQueue"]["Properties"].as_mapping_mut().unwrap();
    jobs.remove("MaximumBatchingWindowInSeconds");
    let max: u64 = properties(&mut options.template, "JobsQueue")["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap();
    let cloud = cloud(options).await;
    let queue = cloud.queue_url("JobsQueue").unwrap();
    let dlq = cloud.queue_url("JobsDeadLetterQueue").unwrap();
    cloud
        .aws()
        .json("sqs", "AmazonSQS.SendMessage", json!({"QueueUrl": queue, "MessageBody": "{\"poison\": true}"}))
        .await
        .unwrap();
    let parked: Value = testkit::eventually_within(
        std::time::Duration::from_secs(60),
        "the message in the dead-letter queue",
        || async {
            let got = cloud
                .aws()
                .json(
                    "sqs",
                    "AmazonSQS.ReceiveMessage",
                    json!({"QueueUrl": dlq, "AttributeNames": ["All"], "MessageSystemAttributeNames": ["All"]}),
                )
                .await
                .unwrap();
            got["Messages"].as_array().and_then(|m| m.first().cloned())
        },
    )
    .await;
    assert_eq!(parked["Body"], "{\"poison\": true}");
    let crashes = cloud.faults().iter().filter(|f| f.contains("WorkerFunction exited during an invocation")).count();
    assert_eq!(crashes as u64, max, "delivered maxReceiveCount times, then parked");
}
