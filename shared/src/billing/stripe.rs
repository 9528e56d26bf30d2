//! Stripe's API, the calls Groundwork makes: customers, Checkout and portal sessions,
//! subscriptions (read, list, change, cancel at period end, resume) and subscription
//! schedules (downgrades at period end).
//!
//! Requests are async-stripe's typed requests (`async-stripe-*` crates, the 1.0 line), so no
//! form field is spelled by hand. They are sent by this client rather than async-stripe's
//! own: it is built by [`crate::outbound`] (no redirects, bounded time, rustls with
//! aws-lc-rs), honours `STRIPE_API_BASE` (tests and local stand-ins), pins the API version
//! and gives every mutating call its own `Idempotency-Key`, so a retried request never acts
//! twice. Answers decode into Groundwork's tolerant types ([`super::objects`]).

use std::time::Duration;

use serde::de::DeserializeOwned;
use stripe_client_core::{RequestBuilder, StripeMethod, StripeRequest};

use super::config::BillingConfig;
use super::objects::{Created, List, Subscription};
use crate::secret::Secret;

/// The API version every request asks for.
pub const API_VERSION: &str = "2025-08-27.basil";

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
    /// Stripe's answer is not the object expected.
    #[error("Stripe's answer does not decode")]
    Decode(#[source] serde_json::Error),
}

impl StripeError {
    /// Whether the same request may succeed later (a retry with the same idempotency key).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transport(_) | Self::Unavailable { .. })
    }
}

/// A client of Stripe's API.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: Secret<String>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    message: Option<String>,
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

    /// Sends `request` (`idempotency_key` for a mutating call) and decodes the answer as `T`.
    ///
    /// # Errors
    /// [`StripeError`]: transport failures and 429/5xx are retryable, other statuses are
    /// Stripe's refusal, an answer of another shape does not decode.
    pub async fn send<T: DeserializeOwned>(
        &self,
        request: &impl StripeRequest,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let RequestBuilder { query, body, path, method } = request.build();
        let url = match query {
            Some(q) => format!("{}/v1{path}?{q}", self.base),
            None => format!("{}/v1{path}", self.base),
        };
        let mut req = match method {
            StripeMethod::Get => self.http.get(url),
            StripeMethod::Delete => self.http.delete(url),
            StripeMethod::Post => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.unwrap_or_default()),
        };
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let res = req.bearer_auth(self.key.expose()).header("Stripe-Version", API_VERSION).send().await?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await?;
        match status {
            200..=299 => serde_json::from_slice(&bytes).map_err(StripeError::Decode),
            429 | 500..=599 => Err(StripeError::Unavailable { status }),
            _ => {
                let message = serde_json::from_slice::<ErrorBody>(&bytes)
                    .ok()
                    .and_then(|b| b.error?.message)
                    .unwrap_or_else(|| "no message".into());
                Err(StripeError::Rejected { status, message })
            }
        }
    }

    /// Creates the customer of an account; returns its id.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn create_customer(
        &self,
        account_id: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, StripeError> {
        let metadata = std::collections::HashMap::from([("account_id".to_owned(), account_id.to_owned())]);
        let mut request = stripe_core::customer::CreateCustomer::new().name(name).metadata(metadata);
        if let Some(e) = email {
            request = request.email(e);
        }
        let created: Created = self.send(&request, Some(&format!("customer-{account_id}"))).await?;
        Ok(created.id)
    }

    /// A subscription.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn subscription(&self, id: &str) -> Result<Subscription, StripeError> {
        self.send(&stripe_billing::subscription::RetrieveSubscription::new(id), None).await
    }

    /// Every subscription of a customer (any status), newest first.
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn subscriptions(&self, customer: &str) -> Result<Vec<Subscription>, StripeError> {
        use stripe_billing::subscription::{ListSubscription, ListSubscriptionStatus};
        let request = ListSubscription::new().customer(customer).status(ListSubscriptionStatus::All).limit(100);
        let list: List<Subscription> = self.send(&request, None).await?;
        Ok(list.data)
    }

    /// Sets a subscription to end at its period end, or not (resume).
    ///
    /// # Errors
    /// [`StripeError`].
    pub async fn cancel_at_period_end(
        &self,
        subscription: &str,
        cancel: bool,
        idempotency_key: &str,
    ) -> Result<Subscription, StripeError> {
        let request = stripe_billing::subscription::UpdateSubscription::new(subscription).cancel_at_period_end(cancel);
        self.send(&request, Some(idempotency_key)).await
    }
}
