//! The webhook receiver the test command starts on loopback (`GROUNDWORK_WEBHOOK_RECEIVER_URL`,
//! `infra/webhook_receiver.py`): it verifies every delivery with the Standard Webhooks
//! reference library and keeps what it got.

use serde_json::{Value, json};

/// One endpoint of the receiver, under a name of its own.
pub struct ReceiverEndpoint {
    base: String,
    name: String,
    client: reqwest::Client,
}

/// What the receiver got in one delivery.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    /// Whether the reference library verified it with one of the configured secrets.
    pub verified: bool,
    /// Which secret verified it.
    pub secret_index: Option<usize>,
    /// Why it did not verify.
    pub error: Option<String>,
    /// `webhook-id`.
    pub id: Option<String>,
    /// `webhook-timestamp`.
    pub timestamp: Option<String>,
    /// `webhook-signature`.
    pub signature: Option<String>,
    /// The body.
    pub body: String,
}

impl Received {
    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

impl ReceiverEndpoint {
    /// A fresh endpoint (a unique name).
    ///
    /// # Panics
    /// If the test command did not start the receiver.
    pub fn new() -> Self {
        let base = std::env::var("GROUNDWORK_WEBHOOK_RECEIVER_URL").unwrap_or_else(|_| {
            panic!("GROUNDWORK_WEBHOOK_RECEIVER_URL is not set: run the tests with `./infra/test.sh`")
        });
        Self { base, name: ulid::Ulid::new().to_string(), client: reqwest::Client::new() }
    }

    /// The URL to register with Groundwork.
    pub fn url(&self) -> String {
        format!("{}/hooks/{}", self.base, self.name)
    }

    /// Sets how it answers: the secrets it verifies with, the status of verified
    /// deliveries, a `Location` header, and how far its clock runs ahead (seconds).
    ///
    /// # Panics
    /// If the receiver does not answer.
    pub async fn configure(&self, secrets: &[&str], status: u16, location: Option<&str>, clock_offset_secs: i64) {
        let body =
            json!({"secrets": secrets, "status": status, "location": location, "clock_offset_secs": clock_offset_secs});
        let res = self.client.put(format!("{}/endpoints/{}", self.base, self.name)).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 204);
    }

    /// Every delivery so far, in arrival order.
    ///
    /// # Panics
    /// If the receiver does not answer.
    pub async fn received(&self) -> Vec<Received> {
        let res = self.client.get(format!("{}/received/{}", self.base, self.name)).send().await.unwrap();
        res.json().await.unwrap()
    }

    /// Waits until at least `n` deliveries arrived; returns them all.
    ///
    /// # Panics
    /// If they do not arrive within [`crate::EVENTUALLY`].
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        crate::eventually(&format!("{n} webhook deliveries"), || async {
            let got = self.received().await;
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Default for ReceiverEndpoint {
    fn default() -> Self {
        Self::new()
    }
}
