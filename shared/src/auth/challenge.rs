//! Bot defence on public forms: a challenge token from the page's widget (Cloudflare
//! Turnstile, hCaptcha or reCAPTCHA), verified server-side with the provider's `siteverify`
//! endpoint together with the client's address. The three take the same form post
//! (`secret`, `response`, `remoteip`) and answer `{"success": bool, "error-codes": [...]}`:
//! <https://developers.cloudflare.com/turnstile/get-started/server-side-validation/>,
//! <https://docs.hcaptcha.com/#verify-the-user-response-server-side>,
//! <https://developers.google.com/recaptcha/docs/verify>.
//!
//! Off unless `GROUNDWORK_CHALLENGE_PROVIDER` is set. A provider that does not answer (or
//! fails: 5xx) lets the request through, with an error log and the `ChallengeCheckFailed`
//! metric: its outage must not close sign-up. Any other unexpected answer (4xx, an
//! unreadable body) is a 500: a mistyped URL or secret must show, not switch the check off.
//! A score (reCAPTCHA v3) under [`MIN_SCORE`] counts as refused.

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::auth::config::ChallengeConfig;
use crate::error::ApiError;
use crate::telemetry::metrics::{Metrics, Unit};

/// How long a verification may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// The longest token accepted (Turnstile's are at most 2048 characters).
pub const MAX_TOKEN_CHARS: usize = 2048;

/// The verifier of one provider.
#[derive(Debug, Clone)]
pub struct ChallengeVerifier {
    client: reqwest::Client,
    config: ChallengeConfig,
}

#[derive(Deserialize)]
struct SiteVerify {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
    /// reCAPTCHA v3 (and hCaptcha Enterprise): how human the request looked, 0 to 1.
    #[serde(default)]
    score: Option<f64>,
}

/// The lowest score (reCAPTCHA v3) taken as human: Google's suggested starting point.
pub const MIN_SCORE: f64 = 0.5;

/// Why a verification did not happen.
enum Unverified {
    /// The provider did not answer, or failed (timeout, 5xx): let the request through.
    Unavailable(anyhow::Error),
    /// It answered something a working setup never gets (4xx, an unreadable body): a
    /// mistyped URL or secret must not quietly turn the check off.
    Misconfigured(anyhow::Error),
}

impl ChallengeVerifier {
    /// A verifier with `config`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: ChallengeConfig) -> anyhow::Result<Self> {
        Ok(Self { client: crate::outbound::client(TIMEOUT)?, config })
    }

    async fn siteverify(&self, token: &str, remote_ip: Option<&str>) -> Result<SiteVerify, Unverified> {
        let mut form = vec![("secret", self.config.secret.expose().as_str()), ("response", token)];
        if let Some(ip) = remote_ip {
            form.push(("remoteip", ip));
        }
        let res = self
            .client
            .post(&self.config.verify_url)
            .form(&form)
            .send()
            .await
            .context("calling siteverify")
            .map_err(Unverified::Unavailable)?;
        let status = res.status();
        if status.is_server_error() {
            return Err(Unverified::Unavailable(anyhow::anyhow!("siteverify answered {status}")));
        }
        if !status.is_success() {
            return Err(Unverified::Misconfigured(anyhow::anyhow!("siteverify answered {status}")));
        }
        res.json().await.context("reading the siteverify answer").map_err(Unverified::Misconfigured)
    }

    /// Checks the challenge token a form carried (field `challenge_token`).
    ///
    /// # Errors
    /// 400 `challenge_required` without a token, 400 `challenge_failed` when the provider
    /// refuses it.
    pub async fn verify(&self, token: Option<&str>, remote_ip: Option<&str>) -> Result<(), ApiError> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(ApiError::BadRequest {
                code: "challenge_required",
                detail: "`challenge_token` is required: the token of the bot check on this form".into(),
            });
        };
        match self.siteverify(token, remote_ip).await {
            Ok(answer) if answer.success && answer.score.is_none_or(|s| s >= MIN_SCORE) => Ok(()),
            Ok(answer) => {
                tracing::info!(error_codes = ?answer.error_codes, "a challenge token was refused");
                Err(ApiError::BadRequest {
                    code: "challenge_failed",
                    detail: "`challenge_token` was not accepted: complete the bot check again".into(),
                })
            }
            Err(Unverified::Unavailable(e)) => {
                tracing::error!(error = format!("{e:#}"), "the challenge provider did not answer: let through");
                Metrics::new().metric("ChallengeCheckFailed", 1.0, Unit::Count).emit();
                Ok(())
            }
            Err(Unverified::Misconfigured(e)) => {
                Err(ApiError::Unexpected(e.context("the bot check is misconfigured (verify URL or secret)")))
            }
        }
    }
}
