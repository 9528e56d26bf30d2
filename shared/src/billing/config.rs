//! The billing settings: the plan catalogue's file and Stripe's keys.

use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::Secret;
use crate::settings::ConfigError;
use crate::settings::Env;

/// The billing settings.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    /// `GROUNDWORK_PLANS_FILE`: the plan catalogue (else the shipped `shared/config/plans.toml`).
    pub plans_file: Option<PathBuf>,
    /// `STRIPE_SECRET_KEY`: Stripe's API key; billing routes answer 503 without it.
    pub stripe_secret_key: Option<Secret<String>>,
    /// `STRIPE_WEBHOOK_SECRET`: endpoint signing secrets, comma-separated (a rotation).
    pub stripe_webhook_secrets: Secret<Vec<String>>,
    /// `STRIPE_API_BASE`: Stripe's API (default `https://api.stripe.com`).
    pub stripe_api_base: String,
}

#[derive(Deserialize)]
struct StripeVars {
    secret_key: Option<String>,
    webhook_secret: Option<String>,
    #[serde(default = "default_api_base")]
    api_base: String,
}

fn default_api_base() -> String {
    "https://api.stripe.com".into()
}

impl BillingConfig {
    /// From `GROUNDWORK_PLANS_FILE` and `STRIPE_*`.
    ///
    /// # Errors
    /// Never today; kept fallible like every area.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let v: StripeVars = env.area("STRIPE_")?;
        Ok(Self {
            plans_file: env.get("GROUNDWORK_PLANS_FILE").map(PathBuf::from),
            stripe_secret_key: v.secret_key.map(Secret::new),
            stripe_webhook_secrets: Secret::new(
                v.webhook_secret
                    .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default(),
            ),
            stripe_api_base: v.api_base.trim_end_matches('/').to_owned(),
        })
    }
}
