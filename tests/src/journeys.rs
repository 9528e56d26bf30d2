//! The critical journeys, written once against [`Deployment`]: the local stack
//! ([`crate::app::TestApp`]) and the cloud-in-a-box harness ([`crate::cloud::Cloud`]) both
//! run them, so a flow that works with `cargo run` is shown to work as the template deploys
//! it.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::app::{PASSWORD, TestApp, token_in};
use crate::cloud::Cloud;
use crate::cloud::functions::Invocation;

/// A running Groundwork the journeys drive.
#[async_trait]
pub trait Deployment: Sync {
    /// The API's base URL.
    fn base(&self) -> &str;

    /// The texts of the emails sent to `to`, newest first.
    async fn emails(&self, to: &str) -> Vec<String>;

    /// Runs the schedule `name` (`purge-soft-deleted`) once, as its rule fires it.
    ///
    /// # Errors
    /// When the job fails.
    async fn fire(&self, name: &str) -> anyhow::Result<()>;
}

#[async_trait]
impl Deployment for TestApp {
    fn base(&self) -> &str {
        &self.base
    }

    async fn emails(&self, to: &str) -> Vec<String> {
        TestApp::emails(self, to, "")
    }

    async fn fire(&self, name: &str) -> anyhow::Result<()> {
        let (_, job) = local::schedules(&self.stack.services)
            .into_iter()
            .find(|(s, _)| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("no schedule {name}"))?;
        job.run(self.stack.services.clock.now_ms()).await
    }
}

#[async_trait]
impl Deployment for Cloud {
    fn base(&self) -> &str {
        &self.url
    }

    async fn emails(&self, to: &str) -> Vec<String> {
        Cloud::emails(self, to).await.unwrap_or_default()
    }

    async fn fire(&self, name: &str) -> anyhow::Result<()> {
        match Cloud::fire(self, name).await? {
            Invocation::Answered(_) => Ok(()),
            other => anyhow::bail!("{name}: {other:?}"),
        }
    }
}

/// How long a journey waits for background work (an email, a job) on a deployment.
const WAIT: Duration = Duration::from_secs(30);

/// A client of one deployment.
pub struct Client<'a> {
    deployment: &'a dyn Deployment,
    http: reqwest::Client,
    /// Each request's route (`POST /accounts/{id}/invitations`) and latency in ms, in order.
    pub latencies: std::sync::Mutex<Vec<(String, f64)>>,
}

impl<'a> Client<'a> {
    /// A client of `deployment`.
    pub fn new(deployment: &'a dyn Deployment) -> Self {
        Self { deployment, http: reqwest::Client::new(), latencies: std::sync::Mutex::default() }
    }

    /// A client of `deployment` whose requests come from `source` (a loopback address other
    /// than 127.0.0.1: another network, as far as per-address limits go).
    ///
    /// # Panics
    /// If the HTTP client cannot be built.
    pub fn from_address(deployment: &'a dyn Deployment, source: std::net::IpAddr) -> Self {
        let http = reqwest::Client::builder().local_address(source).build().expect("an HTTP client");
        Self { deployment, http, latencies: std::sync::Mutex::default() }
    }

    /// Sends a JSON request; returns the status and the JSON body (Null if none).
    ///
    /// # Panics
    /// When the request cannot be sent.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let started = std::time::Instant::now();
        let (status, _, body) =
            crate::app::send_json(&self.http, method, &format!("{}{path}", self.deployment.base()), token, body).await;
        self.latencies.lock().unwrap().push((route_of(method, path), started.elapsed().as_secs_f64() * 1000.0));
        (status, body)
    }

    /// Waits for an email to `to` containing `needle`; returns its text.
    ///
    /// # Panics
    /// If none arrives within the wait.
    pub async fn email(&self, to: &str, needle: &str) -> String {
        crate::eventually_within(WAIT, &format!("an email to {to} containing {needle:?}"), || async {
            self.deployment.emails(to).await.into_iter().find(|t| t.contains(needle))
        })
        .await
    }

    /// Signs `email` up, verifies it through the emailed link and logs in; returns the
    /// access token.
    ///
    /// # Panics
    /// If a step fails.
    pub async fn user(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": PASSWORD});
        let (status, answer) = self.call("POST", "/auth/signup", None, Some(credentials.clone())).await;
        assert_eq!(status, 202, "sign-up: {answer}");
        let token = token_in(&self.email(email, "Confirm your email address").await);
        let (status, me) = self.call("POST", "/auth/verify-email", None, Some(json!({"token": token}))).await;
        assert_eq!(status, 200, "verification: {me}");
        let (status, tokens) = self.call("POST", "/auth/login", None, Some(credentials)).await;
        assert_eq!(status, 200, "login: {tokens}");
        tokens["access_token"].as_str().expect("an access token").to_owned()
    }
}

/// A request's route: ids (segments with a digit or an underscore) become `{id}`.
fn route_of(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> =
        path.split('/').map(|s| if s.chars().any(|c| c.is_ascii_digit() || c == '_') { "{id}" } else { s }).collect();
    format!("{method} {}", segments.join("/"))
}

/// The critical path: sign-up with the verification email (through the email queue and
/// its consumer), login, the profile, an account, an invitation accepted by a second user,
/// an account export written to storage and downloaded through the emailed link, and a
/// scheduled purge.
///
/// Returns each request's route and latency (ms), in order.
///
/// # Panics
/// At the first step that does not do what it should, naming it.
pub async fn critical_path(deployment: &dyn Deployment) -> Vec<(String, f64)> {
    let client = Client::new(deployment);
    let ada = client.user("ada@example.com").await;
    let (status, me) = client.call("GET", "/me", Some(&ada), None).await;
    assert_eq!((status, me["email"].as_str()), (200, Some("ada@example.com")), "{me}");

    let (status, account) = client.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    assert_eq!(status, 201, "account: {account}");
    let acme = account["id"].as_str().expect("an account id").to_owned();

    let invitations = format!("/accounts/{acme}/invitations");
    let (status, invited) =
        client.call("POST", &invitations, Some(&ada), Some(json!({"email": "bob@example.com"}))).await;
    assert_eq!(status, 201, "invitation: {invited}");
    let invitation = token_in(&client.email("bob@example.com", "invited you to").await);
    let bob = client.user("bob@example.com").await;
    let (status, joined) =
        client.call("POST", "/invitations/accept", Some(&bob), Some(json!({"token": invitation}))).await;
    assert_eq!(status, 200, "acceptance: {joined}");
    let (status, members) = client.call("GET", &format!("/accounts/{acme}/members"), Some(&ada), None).await;
    assert_eq!(status, 200, "{members}");
    let count = members["members"].as_array().map_or(0, Vec::len);
    assert_eq!(count, 2, "both are members: {members}");

    let (status, started) = client.call("POST", &format!("/accounts/{acme}/export"), Some(&ada), None).await;
    assert_eq!(status, 202, "export: {started}");
    let export = started["export_id"].as_str().expect("an export id").to_owned();
    let link = client.email("ada@example.com", &format!("/exports/{export}?token=")).await;
    let token = token_in(&link[link.find(&format!("/exports/{export}?token=")).expect("the link")..]);
    let started = std::time::Instant::now();
    let res = client
        .http
        .get(format!("{}/exports/{export}?token={token}", deployment.base()))
        .send()
        .await
        .expect("the download");
    client.latencies.lock().unwrap().push((route_of("GET", "/exports/1"), started.elapsed().as_secs_f64() * 1000.0));
    assert_eq!(res.status(), 200, "the emailed link downloads the export");
    let archive = res.bytes().await.expect("the archive");
    assert!(!archive.is_empty(), "the export has content");

    deployment.fire("purge-soft-deleted").await.expect("the scheduled purge runs");
    client.latencies.into_inner().unwrap()
}
