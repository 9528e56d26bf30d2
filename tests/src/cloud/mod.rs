//! Cloud in a box: the whole system run the way `template.yaml` deploys it, without AWS and
//! without Docker. [`Cloud::start`] reads the template and
//!
//! - starts its own loopback AWS server (moto, recording each caller's actions) and creates
//!   the template's table, queues, topics, subscriptions, SES configuration and bucket on it
//!   ([`resources`]), with the signing keys' secret deploy creates;
//! - runs each function's bootstrap binary behind its own Lambda Runtime API, with only the
//!   environment the template resolves to and what Lambda itself sets ([`functions`]);
//! - serves the HTTP API on loopback, routing each request to the function the template
//!   names as a payload 2.0 event ([`gateway`]);
//! - polls each SQS event source mapping into its consumer with partial batch failures, and
//!   fires schedules into the scheduled function ([`event_sources`]);
//! - routes SES events as the template does: the configuration set's destination topic, and
//!   the topic's queue subscription ([`Cloud::mail_event`]);
//! - checks every AWS call against the caller's template policies ([`iam`]).
//!
//! The only addition to a function's environment is `AWS_ENDPOINT_URL` (the SDK then calls
//! the loopback server; on AWS it is absent) and the outbound client's loopback switch (the
//! API's JWKS and the peers tests point at live on loopback here).

pub mod event_sources;
pub mod functions;
pub mod gateway;
pub mod iam;
pub mod resources;
pub mod stack;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

use event_sources::{ScheduleRule, SqsMapping};
use functions::{Function, Invocation};
use gateway::{Gateway, Route};
use resources::{Aws, MailEventRoute};
use stack::Stack;

/// How a harness starts.
pub struct Options {
    /// The template (a test may change it: a route pointed elsewhere, a variable removed).
    pub template: Yaml,
    /// Parameter overrides on top of the harness's own (see [`Cloud::start`]).
    pub parameters: Vec<(String, String)>,
    /// A binary to run instead of a function's own (fault tests), by logical id.
    pub binaries: HashMap<String, PathBuf>,
    /// Fire each `rate(...)` schedule on its period (the interactive harness); tests fire
    /// them with [`Cloud::fire`].
    pub timers: bool,
    /// Where the functions' binaries are ([`binaries_dir`] unless told).
    pub binaries_dir: PathBuf,
    /// Have the AWS server record each DynamoDB partition's reads and writes
    /// ([`Cloud::partition_load`]).
    pub record_keys: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            template: crate::template::template(),
            parameters: Vec::new(),
            binaries: HashMap::new(),
            timers: false,
            binaries_dir: binaries_dir(),
            record_keys: false,
        }
    }
}

/// The directory of built binaries of the profile this code is built with (`target/debug`
/// for the tests, `target/release` for a release build of the harness).
pub fn binaries_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")), PathBuf::from);
    target.join(if cfg!(debug_assertions) { "debug" } else { "release" })
}

/// The Python that has moto (the test command's virtual environment).
fn python() -> PathBuf {
    std::env::var_os("GROUNDWORK_TEST_PYTHON")
        .map_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/venv/bin/python")), PathBuf::from)
}

/// The reads or writes of one DynamoDB partition (of the table or an index) the AWS server
/// recorded: item accesses and the capacity units DynamoDB would charge for them.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PartitionLoad {
    /// `read` or `write`.
    pub kind: String,
    /// `table`, `gsi1` or `gsi2`.
    pub index: String,
    /// The partition key's value (`USER#01J…`), or `<scan>`.
    pub partition: String,
    /// Item accesses.
    pub ops: u64,
    /// Read or write capacity units (an eventually consistent read costs half a unit).
    pub units: f64,
}

/// A running harness. Dropping it stops everything it started.
pub struct Cloud {
    /// The HTTP API's URL (`http://127.0.0.1:<port>`).
    pub url: String,
    /// The loopback AWS server's URL.
    pub aws_url: String,
    /// The stack, resolved.
    pub stack: Arc<Stack>,
    /// The functions, by logical id.
    pub functions: Arc<HashMap<String, Arc<Function>>>,
    /// The HTTP routes.
    pub routes: Arc<Vec<Route>>,
    /// The SQS event source mappings.
    pub mappings: Vec<SqsMapping>,
    /// The schedules.
    pub schedules: Vec<ScheduleRule>,
    faults: Arc<Mutex<Vec<String>>>,
    mail_events: Vec<MailEventRoute>,
    admin: Aws,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _server: tokio::process::Child,
    /// What the harness adds to every function's environment.
    extra: Vec<(String, String)>,
    binaries_dir: PathBuf,
    /// Logs (the server's, each function's).
    pub dir: tempfile::TempDir,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start_server(dir: &std::path::Path, record_keys: bool) -> Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.join("aws-server.log"))?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/moto_server.py");
    let child = tokio::process::Command::new(python())
        .arg(script)
        .arg(port.to_string())
        .env("GROUNDWORK_MOTO_RECORD_CALLS", "1")
        .env("GROUNDWORK_MOTO_RECORD_KEYS", if record_keys { "1" } else { "0" })
        .env("GROUNDWORK_MOTO_PARENT_PID", std::process::id().to_string())
        // Its own process group: a terminal's Ctrl-C stops the harness, which then still
        // reads the recorded calls before it stops the server.
        .process_group(0)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the loopback AWS server with {}", python().display()))?;
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{url}/moto-api/")).await.is_ok_and(|r| r.status().is_success()) {
            return Ok((child, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the loopback AWS server did not start; see {}", dir.join("aws-server.log").display())
}

fn text_of(value: &Yaml, stack: &Stack) -> Option<String> {
    stack.resolve(value).ok()?.text().ok()
}

impl Cloud {
    /// Starts the harness. Its own parameters, under `options.parameters`: `Environment`
    /// `local` (the environment whose plans the catalogue prices without Stripe price ids),
    /// `ApiUrl` the gateway's URL, a mail domain and sender (so the template creates the
    /// SES identity), an operator token, a Stripe webhook secret.
    ///
    /// # Errors
    /// When the template does not resolve, a resource cannot be created, or the server
    /// does not start; the message names what.
    pub async fn start(options: Options) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (server, aws_url) = start_server(dir.path(), options.record_keys).await?;
        let admin = Aws::new(&aws_url, "harness");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut parameters: Vec<(String, String)> = vec![
            ("Environment".into(), "local".into()),
            ("ApiUrl".into(), url.clone()),
            ("AppUrl".into(), url.clone()),
            ("MailDomain".into(), "mail.acme.test".into()),
            ("MailFrom".into(), "Acme <no-reply@mail.acme.test>".into()),
            ("AppName".into(), "Acme".into()),
            ("OperatorToken".into(), OPERATOR_TOKEN.into()),
            ("StripeWebhookSecret".into(), STRIPE_WEBHOOK_SECRET.into()),
            ("LogLevel".into(), "info".into()),
        ];
        for (k, v) in &options.parameters {
            parameters.retain(|(key, _)| key != k);
            parameters.push((k.clone(), v.clone()));
        }
        let overrides: Vec<(&str, String)> = parameters.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut stack = Stack::new(options.template, "groundwork-local", &overrides)?;
        let created = resources::create(&mut stack, &admin, crate::runtime_api::test_jwt_keys()).await?;
        let stack = Arc::new(stack);

        let extra = vec![
            ("AWS_ENDPOINT_URL".to_owned(), aws_url.clone()),
            ("GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK".to_owned(), "true".to_owned()),
        ];
        let mut functions = HashMap::new();
        for (logical, resource) in stack.resources("AWS::Serverless::Function")? {
            let binary = options.binaries.get(&logical).cloned();
            let function =
                Function::new(&stack, &logical, &resource, &options.binaries_dir, binary, dir.path(), &extra).await?;
            functions.insert(logical, Arc::new(function));
        }
        let functions = Arc::new(functions);

        let mut routes = Vec::new();
        for (function, props) in crate::template::events(&stack.template, "HttpApi") {
            // A function whose condition is false is not deployed, nor are its routes.
            if !functions.contains_key(&function) {
                continue;
            }
            let method = props.get("Method").and_then(|m| text_of(m, &stack)).unwrap_or_else(|| "ANY".into());
            let path = props.get("Path").and_then(|p| text_of(p, &stack)).unwrap_or_else(|| "/{proxy+}".into());
            routes.push(Route {
                method: if method == "*" { "ANY".into() } else { method.to_uppercase() },
                path,
                function,
            });
        }
        let routes = Arc::new(routes);

        let mut mappings = Vec::new();
        for (function, props) in crate::template::events(&stack.template, "SQS") {
            if !functions.contains_key(&function) {
                continue;
            }
            let queue_arn = props.get("Queue").and_then(|q| text_of(q, &stack)).context("an SQS event's Queue")?;
            let name = queue_arn.rsplit(':').next().unwrap_or_default();
            let found = admin.json("sqs", "AmazonSQS.GetQueueUrl", json!({"QueueName": name})).await?;
            let number = |key: &str, default: u64| {
                props.get(key).and_then(|v| text_of(v, &stack)).and_then(|t| t.parse().ok()).unwrap_or(default)
            };
            let reports_failures = props
                .get("FunctionResponseTypes")
                .and_then(|t| t.as_sequence())
                .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures")));
            // Lambda refuses a mapping whose queue hides a message for less time than the
            // function may run ("Using Lambda with Amazon SQS": visibility timeout at least
            // the function's timeout).
            let attributes = admin
                .json(
                    "sqs",
                    "AmazonSQS.GetQueueAttributes",
                    json!({"QueueUrl": found["QueueUrl"], "AttributeNames": ["VisibilityTimeout"]}),
                )
                .await?;
            let visibility: u64 = attributes["Attributes"]["VisibilityTimeout"].as_str().unwrap_or("30").parse()?;
            let timeout = functions.get(&function).map_or(0, |f| f.timeout.as_secs());
            anyhow::ensure!(
                visibility >= timeout,
                "the SQS event of {function}: queue {name}'s visibility timeout ({visibility} s) is less than \
                 the function's timeout ({timeout} s), which Lambda refuses"
            );
            mappings.push(SqsMapping {
                function,
                queue_url: found["QueueUrl"].as_str().context("QueueUrl")?.to_owned(),
                queue_arn,
                batch_size: u32::try_from(number("BatchSize", 10))?,
                window: Duration::from_secs(number("MaximumBatchingWindowInSeconds", 0)),
                reports_failures,
            });
        }
        let mut schedules = Vec::new();
        for (function, props) in crate::template::events(&stack.template, "Schedule") {
            if !functions.contains_key(&function)
                || props.get("Enabled").and_then(|e| text_of(e, &stack)).is_some_and(|e| e == "false")
            {
                continue;
            }
            let name =
                props.get("Name").and_then(|n| text_of(n, &stack)).unwrap_or_else(|| format!("{function}-schedule"));
            let expression = props.get("Schedule").and_then(|s| text_of(s, &stack)).context("a Schedule expression")?;
            let input = match props.get("Input").and_then(|i| text_of(i, &stack)) {
                Some(text) => Some(serde_json::from_str(&text).with_context(|| format!("{name}'s Input is not JSON"))?),
                None => None,
            };
            schedules.push(ScheduleRule { name, expression, function, input });
        }

        let faults: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut tasks = Vec::new();
        for mapping in &mappings {
            let function = Arc::clone(
                functions.get(&mapping.function).with_context(|| format!("{} is not a function", mapping.function))?,
            );
            // The poller runs with the function's role.
            let sqs = Aws::new(&aws_url, &function.access_key);
            tasks.push(tokio::spawn(event_sources::poll(mapping.clone(), function, sqs, Arc::clone(&faults))));
        }
        if options.timers {
            for rule in &schedules {
                let (Some(period), Some(function)) = (rule.period(), functions.get(&rule.function).cloned()) else {
                    continue;
                };
                let rule = rule.clone();
                let faults = Arc::clone(&faults);
                tasks.push(tokio::spawn(async move {
                    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    loop {
                        ticks.tick().await;
                        if let outcome @ (Invocation::Failed(_)
                        | Invocation::Crashed(_)
                        | Invocation::TimedOut
                        | Invocation::InitFailed(_)) = function.invoke(rule.event()).await
                        {
                            faults.lock().unwrap().push(format!("schedule {}: {outcome:?}", rule.name));
                        }
                    }
                }));
            }
        }
        let gateway = Gateway {
            routes: Arc::clone(&routes),
            functions: Arc::clone(&functions),
            faults: Arc::clone(&faults),
            api_id: "cloudinabox".into(),
        };
        let app = axum::Router::new()
            .fallback(gateway::serve)
            .with_state(gateway)
            .layer(axum::extract::DefaultBodyLimit::max(gateway::BODY_LIMIT))
            .layer(axum::middleware::map_response(too_large));
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
        }));
        Ok(Self {
            url,
            aws_url,
            stack,
            functions,
            routes,
            mappings,
            schedules,
            faults,
            mail_events: created.mail_events,
            admin,
            tasks,
            _server: server,
            extra,
            binaries_dir: options.binaries_dir,
            dir,
        })
    }

    /// What went wrong so far (init failures, crashes, timeouts, misrouted requests,
    /// failed batches), each naming the function.
    pub fn faults(&self) -> Vec<String> {
        self.faults.lock().unwrap().clone()
    }

    /// Fires the schedule whose rule is named `name` (or ends with `-name`) into its target.
    ///
    /// # Errors
    /// When there is no such schedule.
    pub async fn fire(&self, name: &str) -> Result<Invocation> {
        let rule = self
            .schedules
            .iter()
            .find(|r| r.name == name || r.name.ends_with(&format!("-{name}")))
            .with_context(|| format!("no schedule named {name}"))?;
        let function = self.functions.get(&rule.function).context("the schedule's target")?;
        Ok(function.invoke(rule.event()).await)
    }

    /// The emails the functions sent through SES to `to`, as `Subject: ...\n\n<body>`,
    /// newest first.
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn emails(&self, to: &str) -> Result<Vec<String>> {
        let data: Value = reqwest::get(format!("{}/moto-api/data.json", self.aws_url)).await?.json().await?;
        let mut out = Vec::new();
        for message in data["ses"]["Message"].as_array().into_iter().flatten() {
            let addressed = message["destinations"]["ToAddresses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a.as_str().is_some_and(|a| a == to || a.ends_with(&format!("<{to}>"))));
            if addressed {
                out.push(format!(
                    "To: {to}\nSubject: {}\n\n{}",
                    message["subject"].as_str().unwrap_or_default(),
                    message["body"].as_str().unwrap_or_default()
                ));
            }
        }
        out.reverse();
        Ok(out)
    }

    /// What SES does when a message to `recipient` bounces (`kind` `Bounce`) or draws a
    /// complaint (`Complaint`): publishes the event to the topic of the configuration set's
    /// destination that matches it, whose subscriptions deliver it (to the mail-events
    /// queue). Source: Amazon SES Developer Guide, "Examples of event data that Amazon SES
    /// publishes to Amazon SNS".
    ///
    /// # Errors
    /// When no destination matches `kind`, or the server refuses.
    pub async fn mail_event(&self, kind: &str, recipient: &str) -> Result<()> {
        let route = self
            .mail_events
            .iter()
            .find(|r| r.event_types.iter().any(|t| t.eq_ignore_ascii_case(kind)))
            .with_context(|| format!("no SES event destination matches {kind}"))?;
        let now = now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mail = json!({"timestamp": now, "messageId": ulid::Ulid::new().to_string(), "source": "no-reply@mail.acme.test",
                          "destination": [recipient], "tags": {"ses:configuration-set": [route.configuration_set]}});
        let event = match kind {
            "Bounce" => json!({"eventType": "Bounce", "mail": mail, "bounce": {
                "bounceType": "Permanent", "bounceSubType": "General", "timestamp": now, "feedbackId": ulid::Ulid::new().to_string(),
                "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": "5.1.1"}]}}),
            _ => json!({"eventType": kind, "mail": mail, "complaint": {
                "timestamp": now, "feedbackId": ulid::Ulid::new().to_string(), "complaintFeedbackType": "abuse",
                "complainedRecipients": [{"emailAddress": recipient}]}}),
        };
        let ses = Aws::new(&self.aws_url, "ses.amazonaws.com");
        ses.query("sns", "Publish", &[("TopicArn".into(), route.topic.clone()), ("Message".into(), event.to_string())])
            .await?;
        Ok(())
    }

    /// The IAM check: every call to the AWS server a function made, against its template
    /// policies. An empty list when every call was allowed.
    ///
    /// # Errors
    /// When the server does not answer or a policy cannot be read.
    pub async fn iam_violations(&self) -> Result<Vec<String>> {
        let calls: HashMap<String, Vec<String>> =
            reqwest::get(format!("{}/groundwork/calls", self.aws_url)).await?.json().await?;
        let mut checked = BTreeMap::new();
        for (logical, resource) in self.stack.resources("AWS::Serverless::Function")? {
            let function = self.functions.get(&logical).context("a function")?;
            let called: BTreeSet<String> = calls.get(&function.access_key).into_iter().flatten().cloned().collect();
            checked.insert(logical.clone(), (iam::policies(&self.stack, &logical, &resource)?, called));
        }
        Ok(iam::violations(&checked))
    }

    /// The functions that sent email without the configuration set whose events (bounces,
    /// complaints) the template routes: their bounces would never reach the suppression
    /// list. An empty list when every send named it.
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn unrouted_sends(&self) -> Result<Vec<String>> {
        let sends: HashMap<String, Vec<String>> =
            reqwest::get(format!("{}/groundwork/sends", self.aws_url)).await?.json().await?;
        let routed: BTreeSet<&str> = self.mail_events.iter().map(|r| r.configuration_set.as_str()).collect();
        let mut out = Vec::new();
        let mut names: Vec<_> = self.functions.values().collect();
        names.sort_by(|a, b| a.logical.cmp(&b.logical));
        for function in names {
            for set in sends.get(&function.access_key).into_iter().flatten() {
                if !routed.contains(set.as_str()) {
                    let named = if set.is_empty() {
                        "no configuration set".to_owned()
                    } else {
                        format!("configuration set {set:?}")
                    };
                    out.push(format!(
                        "{} sent email with {named}, which routes no bounce or complaint events (expected one of {routed:?})",
                        function.logical
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Each function's latencies as a table: instances started, init, first invocation,
    /// later invocations (median and slowest), in milliseconds.
    pub fn report(&self) -> String {
        let mut out = String::from(
            "| function | instances | init ms | first invocation ms | warm invocations | warm p50 ms | warm max ms |\n|---|---|---|---|---|---|---|\n",
        );
        let mut names: Vec<_> = self.functions.keys().collect();
        names.sort();
        for name in names {
            let t = self.functions[name].timings();
            let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
            let mut warm = t.warm.clone();
            warm.sort_by(f64::total_cmp);
            let p50 = warm.get(warm.len() / 2).copied().unwrap_or(f64::NAN);
            let max = warm.last().copied().unwrap_or(f64::NAN);
            out.push_str(&format!(
                "| {name} | {} | {:.1} | {:.1} | {} | {p50:.1} | {max:.1} |\n",
                t.inits.len(),
                mean(&t.inits),
                mean(&t.first),
                warm.len()
            ));
        }
        out
    }

    /// A new execution environment of the function `logical`, apart from the one the
    /// harness routes to: its own Runtime API, the same environment, `binary` instead of its
    /// own when given. Its first invocation is a cold start (the init-time report starts
    /// many).
    ///
    /// # Errors
    /// When there is no such function or its binary is not built.
    pub async fn new_environment(&self, logical: &str, binary: Option<PathBuf>) -> Result<Function> {
        let resource = self
            .stack
            .resources("AWS::Serverless::Function")?
            .into_iter()
            .find(|(l, _)| l == logical)
            .map(|(_, r)| r)
            .with_context(|| format!("no function {logical}"))?;
        Function::new(&self.stack, logical, &resource, &self.binaries_dir, binary, self.dir.path(), &self.extra).await
    }

    /// Each DynamoDB partition's reads and writes since the last reset, as the AWS server
    /// recorded them (start with [`Options::record_keys`]).
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn partition_load(&self) -> Result<Vec<PartitionLoad>> {
        Ok(reqwest::get(format!("{}/groundwork/keys", self.aws_url)).await?.error_for_status()?.json().await?)
    }

    /// Forgets the partition load recorded so far (to measure one phase).
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn reset_partition_load(&self) -> Result<()> {
        reqwest::Client::new().delete(format!("{}/groundwork/keys", self.aws_url)).send().await?.error_for_status()?;
        Ok(())
    }

    /// The admin client of the loopback AWS server (calls it makes are not checked).
    pub fn aws(&self) -> &Aws {
        &self.admin
    }

    /// The URL of the queue the template names `logical`.
    ///
    /// # Errors
    /// When there is no such queue.
    pub fn queue_url(&self, logical: &str) -> Result<String> {
        self.stack.reference(logical)?.text()
    }
}

/// API Gateway's answer to a body over its limit, in place of the HTTP server's own.
async fn too_large(response: axum::response::Response) -> axum::response::Response {
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        && response.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"text/plain"))
    {
        return gateway::gateway_answer(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    response
}

/// The current time (the harness's events carry real times, as AWS's do).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or_default()).unwrap_or_default()
}

/// The operator token the harness deploys with.
pub const OPERATOR_TOKEN: &str = "cloud-in-a-box-operator-token-0123456789";

/// The Stripe webhook signing secret the harness deploys with.
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_cloudinabox0123456789";
