//! Stripe's API, the calls Groundwork makes: customers, Checkout and portal sessions,
//! subscriptions (read, list, change, cancel at period end, resume) and subscription
//! schedules (downgrades at period end). Form-encoded requests to `STRIPE_API_BASE`; every
//! mutating call carries an `Idempotency-Key`, so a retried request never acts twice.

use std::time::Duration;

use serde_json::Value;

use super::config::BillingConfig;
use crate::secret::Secret;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// The request did not get an answer (connection, timeout, TLS): retry later.
    #[error("Stripe could not be reached")]
    Transport(#[from] reqwest::Error),
    /// Stripe is throttling (429) or failing (5xx): retry later.
    #[error("Stripe answered {status}: retry later")]
    Unavailable {
        /// The HTTP status.
        status: u16,
    },
    /// Stripe refused the request.
    #[error("Stripe refused the request ({status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Stripe's message.
        message: String,
    },
}

/// A client of Stripe's API.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: Secret<String>,
}

/// Form fields of a request.
pub type Form = Vec<(String, String)>;

/// A form field.
pub fn field(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

impl StripeError {
    /// Whether the same request may succeed later (a retry with the same idempotency key).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transport(_) | Self::Unavailable { .. })
    }
}

impl StripeClient {
    /// The client `config` describes, if a secret key is configured.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn from_config(config: &BillingConfig) -> anyhow::Result<Option<Self>> {
        let Some(key) = config.stripe_secret_key.clone() else { return Ok(None) };
        let http = crate::outbound::client(Duration::from_secs(10))?;
        Ok(Some(Self { http, base: config.stripe_api_base.clone(), key }))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, StripeError> {
        let res = req
            .bearer_auth(self.key.expose())
            .header("Stripe-Version", "2025-08-27.basil")
            .send()
            .await
            .map_err(StripeError::Transport)?;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(body),
            429 | 500..=599 => Err(StripeError::Unavailable { status }),
            _ => Err(StripeError::Rejected {
                status,
                message: body["error"]["message"].as_str().unwrap_or("no message").to_owned(),
            }),
        }
    }

    /// POSTs `form` to `path` with `idempotency_key`.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn post(&self, path: &str, form: &Form, idempotency_key: &str) -> Result<Value, StripeError> {
        let req = self.http.post(format!("{}{path}", self.base)).header("Idempotency-Key", idempotency_key).form(form);
        self.send(req).await
    }

    /// GETs `path` with `query`.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn get(&self, path: &str, query: &Form) -> Result<Value, StripeError> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    /// Creates the customer of an account.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn create_customer(
        &self,
        account_id: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, StripeError> {
        let mut form = vec![field("name", name), field("metadata[account_id]", account_id)];
        if let Some(e) = email {
            form.push(field("email", e));
        }
        let customer = self.post("/v1/customers", &form, &format!("customer-{account_id}")).await?;
        id_of(&customer)
    }

    /// A subscription.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn subscription(&self, id: &str) -> Result<Value, StripeError> {
        self.get(&format!("/v1/subscriptions/{id}"), &Vec::new()).await
    }

    /// Every subscription of a customer (any status), newest first.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn subscriptions(&self, customer: &str) -> Result<Vec<Value>, StripeError> {
        let query = vec![field("customer", customer), field("status", "all"), field("limit", 100)];
        let list = self.get("/v1/subscriptions", &query).await?;
        Ok(list["data"].as_array().cloned().unwrap_or_default())
    }
}

/// The `id` of a Stripe object.
///
/// # Errors
/// When it has none.
pub fn id_of(object: &Value) -> Result<String, StripeError> {
    object["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| StripeError::Rejected { status: 200, message: "the answer has no id".into() })
}
