//! Typed configuration, read once at init from the environment. Each area owns its settings
//! type and reads its own variables ([`crate::store::config::StoreConfig`],
//! [`crate::queue::config::QueuesConfig`], [`crate::mail::config::MailConfig`],
//! [`crate::auth::config::AuthConfig`], [`crate::billing::config::BillingConfig`],
//! [`crate::jobs::JobsConfig`], [`server::ServerConfig`]...): scalars, their types and
//! defaults are declared once, on a struct `envy` fills; the hand-written checks are the
//! rules that tie variables together. A missing or malformed variable fails start-up with a
//! message that names it. The README's configuration table lists every variable.

pub mod server;

use std::path::PathBuf;

pub use crate::auth::config::{AuthConfig, ExternalIssuer, ExternalProvider, KeySource, OIDC_PRESETS, OidcProvider};
pub use crate::mail::config::{MailBackend, MailConfig};
pub use crate::queue::QueueName;
pub use crate::queue::config::{QueueBackend, QueuesConfig, SqsQueueUrls};
use crate::settings::Env;
pub use crate::store::config::{StoreBackend, StoreConfig};
pub use crate::telemetry::{LogFormat, TelemetryConfig};
use server::ServerConfig;

pub use crate::settings::ConfigError;

/// Everything a function needs to know about its environment, by area.
#[derive(Debug, Clone)]
pub struct Config {
    /// `GROUNDWORK_ENV`: `local`, `staging`, `production`, `pr-42`... (default `local`).
    pub environment: String,
    /// Whether this runs on Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set).
    pub on_lambda: bool,
    /// `GROUNDWORK_DATA_DIR`: the embedded database, outbox, keys and exports (default
    /// `.groundwork`).
    pub data_dir: PathBuf,
    /// The local server and the public addresses.
    pub server: ServerConfig,
    /// Storage.
    pub store: StoreConfig,
    /// Queues.
    pub queues: QueuesConfig,
    /// Transactional email.
    pub mail: MailConfig,
    /// Access tokens, keys, sign-in providers.
    pub auth: AuthConfig,
    /// Plans and Stripe.
    pub billing: crate::billing::config::BillingConfig,
    /// Background jobs.
    pub jobs: crate::jobs::JobsConfig,
    /// Soft delete and purge.
    pub soft_delete: crate::soft_delete::SoftDeleteConfig,
    /// Logs and metrics.
    pub telemetry: TelemetryConfig,
    /// AWS clients.
    pub aws: crate::aws::AwsConfig,
    /// The HTTP conventions.
    pub http: server::HttpSettings,
    /// Data exports.
    pub exports: crate::exports::ExportsConfig,
    /// Outbound HTTP to URLs tenants configure.
    pub outbound: crate::outbound::OutboundConfig,
    /// Outbound webhooks.
    pub webhooks: crate::webhooks::WebhooksConfig,
    /// Domain verification.
    pub domains: crate::tenancy::domains::DomainsConfig,
    /// Product events forwarded to PostHog.
    pub posthog: crate::product_events::posthog::PostHogConfig,
    /// Account health thresholds.
    pub health: crate::account_health::HealthConfig,
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first missing or malformed variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads configuration from the given variables (tests pass their own).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first missing or malformed variable.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let env = Env::new(vars);
        let environment = env.get("GROUNDWORK_ENV").unwrap_or_else(|| "local".into());
        // As template.yaml's Environment parameter allows: it names resources and the plan
        // catalogue's price tables.
        let valid = environment.len() <= 32
            && environment.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && environment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(ConfigError::Invalid {
                var: "GROUNDWORK_ENV".into(),
                value: environment.chars().take(64).collect(),
                reason: "expected lowercase letters, digits and hyphens (staging, production, pr-42)".into(),
            });
        }
        let mail = MailConfig::from_env(&env)?;
        if environment == "production" && mail.smoke_domain.is_some() {
            return Err(ConfigError::Invalid {
                var: "GROUNDWORK_SMOKE_MAIL_DOMAIN".into(),
                value: mail.smoke_domain.clone().unwrap_or_default(),
                reason: "the smoke mailbox is for previews and staging, never production".into(),
            });
        }
        Ok(Self {
            on_lambda: env.on_lambda,
            data_dir: env.get("GROUNDWORK_DATA_DIR").map_or_else(|| PathBuf::from(".groundwork"), PathBuf::from),
            server: ServerConfig::from_env(&env)?,
            store: StoreConfig::from_env(&env)?,
            queues: QueuesConfig::from_env(&env)?,
            mail,
            auth: AuthConfig::from_env(&env)?,
            billing: crate::billing::config::BillingConfig::from_env(&env)?,
            jobs: crate::jobs::JobsConfig::from_env(&env)?,
            soft_delete: crate::soft_delete::SoftDeleteConfig::from_env(&env)?,
            telemetry: TelemetryConfig::from_env(&env, &environment)?,
            aws: crate::aws::AwsConfig::from_env(&env)?,
            http: server::HttpSettings::from_env(&env)?,
            exports: crate::exports::ExportsConfig::from_env(&env)?,
            outbound: crate::outbound::OutboundConfig::from_env(&env, &environment)?,
            webhooks: crate::webhooks::WebhooksConfig::from_env(&env)?,
            domains: crate::tenancy::domains::DomainsConfig::from_env(&env)?,
            posthog: crate::product_events::posthog::PostHogConfig::from_env(&env)?,
            health: crate::account_health::HealthConfig::from_env(&env)?,
            environment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn the_smoke_mailbox_is_refused_in_production() {
        let smoke = ("GROUNDWORK_SMOKE_MAIL_DOMAIN", "Smoke.Acme.com");
        let c = Config::from_vars(vars(&[smoke, ("GROUNDWORK_ENV", "staging")])).unwrap();
        assert_eq!(c.mail.smoke_domain.as_deref(), Some("smoke.acme.com"));
        let err = Config::from_vars(vars(&[smoke, ("GROUNDWORK_ENV", "production")])).unwrap_err();
        assert!(err.to_string().contains("GROUNDWORK_SMOKE_MAIL_DOMAIN"), "{err}");
        assert!(Config::from_vars(vars(&[("GROUNDWORK_SMOKE_MAIL_DOMAIN", "not a domain")])).is_err());
    }

    #[test]
    fn defaults_are_local() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.store.backend, StoreBackend::Embedded);
        assert_eq!(c.queues.backend, QueueBackend::Embedded);
        assert_eq!(c.server.port, 3000);
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.data_dir, PathBuf::from(".groundwork"));
        assert_eq!(c.telemetry.log_format, LogFormat::Text);
        assert_eq!(c.http.max_body_bytes, 1 << 20);
        assert_eq!(c.mail.backend, MailBackend::Outbox);
        assert_eq!(c.server.app_url, "http://127.0.0.1:3000");
        assert_eq!(c.jobs.max_attempts, 5);
        assert_eq!(c.soft_delete.retention, std::time::Duration::from_secs(30 * 86_400));
        assert_eq!(c.auth.access_token_ttl, std::time::Duration::from_secs(900));
    }

    #[test]
    fn lambda_defaults_to_json_logs_and_needs_signing_keys_and_the_api_url() {
        let e = Config::from_vars(vars(&[("AWS_LAMBDA_FUNCTION_NAME", "f"), ("GROUNDWORK_API_URL", "https://a")]))
            .unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_JWT_KEYS"), "{e}");
        let e =
            Config::from_vars(vars(&[("AWS_LAMBDA_FUNCTION_NAME", "f"), ("GROUNDWORK_JWT_KEYS", "k")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_API_URL"), "{e}");
        let c = Config::from_vars(vars(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("GROUNDWORK_JWT_KEYS", "k"),
            ("GROUNDWORK_API_URL", "https://api.acme.test/"),
        ]))
        .unwrap();
        assert_eq!(c.server.api_url, "https://api.acme.test");
        assert_eq!(c.telemetry.log_format, LogFormat::Json);
        assert!(!format!("{c:?}").contains("\"k\""), "keys never print");
    }

    #[test]
    fn rent_auth_needs_what_binds_tokens_to_this_api() {
        let issuer = ("GROUNDWORK_EXTERNAL_ISSUER", "https://idp.acme.test");
        let e = Config::from_vars(vars(&[issuer])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_EXTERNAL_AUDIENCE"), "{e}");
        let e = Config::from_vars(vars(&[issuer, ("GROUNDWORK_EXTERNAL_PROVIDER", "okta-ish")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_EXTERNAL_PROVIDER"), "{e}");
        let workos = ("GROUNDWORK_EXTERNAL_PROVIDER", "workos");
        let e =
            Config::from_vars(vars(&[("GROUNDWORK_EXTERNAL_ISSUER", "https://api.workos.com"), workos])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_EXTERNAL_JWKS_URL"), "{e}");
        let c = Config::from_vars(vars(&[
            ("GROUNDWORK_EXTERNAL_ISSUER", "https://sts.windows.net/9188040d-6c67-4c5b-b112-36a304b66dad/"),
            ("GROUNDWORK_EXTERNAL_PROVIDER", "entra"),
            ("GROUNDWORK_EXTERNAL_AUDIENCE", "a, b"),
        ]))
        .unwrap();
        let external = c.auth.external_issuer.unwrap();
        assert_eq!(
            external.jwks_url,
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/discovery/v2.0/keys"
        );
        assert_eq!(external.audiences, ["a", "b"]);
        for unusable in [
            "https://login.microsoftonline.com/common",
            "https://login.microsoftonline.com/common/v2.0",
            "https://login.microsoftonline.com/organizations/v2.0",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
        ] {
            let e = Config::from_vars(vars(&[
                ("GROUNDWORK_EXTERNAL_ISSUER", unusable),
                ("GROUNDWORK_EXTERNAL_PROVIDER", "entra"),
                ("GROUNDWORK_EXTERNAL_AUDIENCE", "a"),
            ]))
            .unwrap_err();
            assert!(e.to_string().contains("Entra ID issuer"), "{unusable}: {e}");
        }
    }

    #[test]
    fn cors_origins_are_exact_origins_and_dev_origins_stay_local() {
        let c = Config::from_vars(vars(&[(
            "GROUNDWORK_CORS_ORIGINS",
            "https://app.acme.test, http://LOCALHOST:5173/,https://app.acme.test",
        )]))
        .unwrap();
        assert_eq!(c.http.cors_origins, ["http://localhost:5173", "https://app.acme.test"]);
        for bad in ["*", "https://*.acme.test", "https://app.acme.test/path", "ftp://app.acme.test", "app.acme.test"] {
            let e = Config::from_vars(vars(&[("GROUNDWORK_CORS_ORIGINS", bad)])).unwrap_err();
            assert!(e.to_string().contains("GROUNDWORK_CORS_ORIGINS"), "{bad}: {e}");
        }
        let c = Config::from_vars(vars(&[("GROUNDWORK_CORS_DEV_ORIGINS", "true")])).unwrap();
        assert!(c.http.cors_origins.contains(&"http://localhost:5173".to_owned()));
        assert!(Config::from_vars(vars(&[])).unwrap().http.cors_origins.is_empty(), "none unless told");
        let e = Config::from_vars(vars(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("GROUNDWORK_JWT_KEYS", "k"),
            ("GROUNDWORK_API_URL", "https://api.acme.test"),
            ("GROUNDWORK_CORS_DEV_ORIGINS", "true"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_CORS_DEV_ORIGINS"), "{e}");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_vars(vars(&[("GROUNDWORK_ENV", "Prod!")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_ENV"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_PORT", "eighty")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_PORT") && e.to_string().contains("eighty"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_SOFT_DELETE_RETENTION_DAYS", "-1")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_SOFT_DELETE_RETENTION_DAYS"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_AWS_TIMEOUT_MS", "soon")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_AWS_TIMEOUT_MS"), "{e}");
        for (var, value) in [
            ("GROUNDWORK_API_URL", "notaurl"),
            ("GROUNDWORK_APP_URL", "ftp://app.acme.test"),
            ("GROUNDWORK_EXTERNAL_ISSUER", "notaurl"),
            ("GROUNDWORK_MAIL_FROM", "not an address"),
            ("GROUNDWORK_LOG", "shared=verbose"),
            ("GROUNDWORK_MAX_BODY_BYTES", "0"),
            ("GROUNDWORK_ACCESS_TOKEN_TTL_SECS", "0"),
            ("GROUNDWORK_JOB_MAX_ATTEMPTS", "0"),
            ("GROUNDWORK_SOFT_DELETE_RETENTION_DAYS", "0"),
        ] {
            let e = Config::from_vars(vars(&[(var, value)])).unwrap_err();
            assert!(e.to_string().contains(var), "{var}={value}: {e}");
        }
        let e = Config::from_vars(vars(&[("GROUNDWORK_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_LOG_FORMAT") && e.to_string().contains("`json`"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_STORE", "dynamodb")])).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing {
                var: "GROUNDWORK_TABLE".into(),
                why: "GROUNDWORK_STORE=dynamodb needs the table name"
            }
        );
        let e = Config::from_vars(vars(&[("GROUNDWORK_QUEUES", "sqs")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_EMAIL_QUEUE_URL"), "{e}");
        let e =
            Config::from_vars(vars(&[("GROUNDWORK_QUEUES", "sqs"), ("GROUNDWORK_EMAIL_QUEUE_URL", "u")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_EMAIL_DLQ_URL"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_MAIL", "smtp")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_SMTP_URL"), "{e}");
        let c = Config::from_vars(vars(&[("GROUNDWORK_MAIL", "ses")])).unwrap();
        assert_eq!(c.mail.from, None, "only email-dispatch needs a sender; it checks at init");
        let e = Config::from_vars(vars(&[("GROUNDWORK_STORE", "postgres")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_STORE"), "{e}");
    }

    #[test]
    fn oidc_providers_need_their_client_and_know_presets() {
        let c = Config::from_vars(vars(&[
            ("GROUNDWORK_OIDC_PROVIDERS", "google, acme-sso"),
            ("GROUNDWORK_OIDC_GOOGLE_CLIENT_ID", "g"),
            ("GROUNDWORK_OIDC_GOOGLE_CLIENT_SECRET", "gs"),
            ("GROUNDWORK_OIDC_ACME_SSO_ISSUER", "https://login.acme.test/"),
            ("GROUNDWORK_OIDC_ACME_SSO_CLIENT_ID", "a"),
            ("GROUNDWORK_OIDC_ACME_SSO_CLIENT_SECRET", "as"),
        ]))
        .unwrap();
        assert_eq!(c.auth.oidc_providers[0].issuer, "https://accounts.google.com");
        assert_eq!(c.auth.oidc_providers[1].issuer, "https://login.acme.test");
        let e = Config::from_vars(vars(&[("GROUNDWORK_OIDC_PROVIDERS", "okta")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_OIDC_OKTA_ISSUER"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_OIDC_PROVIDERS", "org-x")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_OIDC_PROVIDERS"), "{e}");
    }

    #[test]
    fn production_setup_parses() {
        let c = Config::from_vars(vars(&[
            ("GROUNDWORK_STORE", "dynamodb"),
            ("GROUNDWORK_TABLE", "t"),
            ("GROUNDWORK_QUEUES", "sqs"),
            ("GROUNDWORK_EMAIL_QUEUE_URL", "https://q/email"),
            ("GROUNDWORK_EMAIL_DLQ_URL", "https://q/email-dlq"),
            ("GROUNDWORK_MAIL_EVENTS_QUEUE_URL", "https://q/mail-events"),
            ("GROUNDWORK_MAIL_EVENTS_DLQ_URL", "https://q/mail-events-dlq"),
            ("GROUNDWORK_JOBS_QUEUE_URL", "https://q/jobs"),
            ("GROUNDWORK_JOBS_DLQ_URL", "https://q/jobs-dlq"),
            ("GROUNDWORK_BILLING_QUEUE_URL", "https://q/billing.fifo"),
            ("GROUNDWORK_BILLING_DLQ_URL", "https://q/billing-dlq.fifo"),
            ("GROUNDWORK_PORT", "8080"),
            ("GROUNDWORK_MAIL_FROM", "Acme <no-reply@acme.test>"),
            ("GROUNDWORK_SMTP_URL", "smtps://u:p@mail.acme.test"),
            ("GROUNDWORK_MAIL", "smtp"),
            ("GROUNDWORK_APP_URL", "https://app.acme.test/"),
        ]))
        .unwrap();
        assert_eq!(c.store.table.as_deref(), Some("t"));
        assert_eq!(c.queues.urls[&QueueName::Email].dead_letter_url, "https://q/email-dlq");
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.server.app_url, "https://app.acme.test");
        assert!(!format!("{c:?}").contains("u:p@"), "the SMTP password must not print");
    }
}
