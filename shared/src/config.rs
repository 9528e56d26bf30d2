//! Typed configuration, read once at init from the environment. A missing or malformed
//! variable fails start-up with a message that names it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::secret::Secret;

/// What went wrong reading the configuration. Always names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable the chosen setup needs is not set.
    #[error("missing environment variable {var}: {why}")]
    Missing {
        /// The variable's name.
        var: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// A variable named after something configured (a login provider) is not set.
    #[error("missing environment variable {var}: {why}")]
    MissingFor {
        /// The variable's name.
        var: String,
        /// Why it is needed.
        why: &'static str,
    },
    /// A variable is set to something that does not parse.
    #[error("invalid environment variable {var}={value:?}: {reason}")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// The value as given (never a secret: secrets are not echoed).
        value: String,
        /// What was expected.
        reason: String,
    },
}

/// Where items are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    /// SQLite in the data directory (the local default).
    Embedded,
    /// One DynamoDB table (production).
    DynamoDb,
}

/// Where queue messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackend {
    /// Durable queues in the embedded database (the local default).
    Embedded,
    /// Amazon SQS (production).
    Sqs,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (Lambda's default).
    Json,
    /// Human-readable lines (the local stack's default).
    Text,
}

/// The system's queues. Each has an SQS queue and a dead-letter queue, whose URLs come
/// from `GROUNDWORK_<NAME>_QUEUE_URL` and `GROUNDWORK_<NAME>_DLQ_URL` with `sqs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueName {
    /// Transactional email jobs, consumed by `email-dispatch`.
    Email,
    /// SES bounce and complaint notifications, consumed by `mail-events`.
    MailEvents,
    /// Other background jobs (data exports...), consumed by `worker`.
    Jobs,
    /// Stripe events (FIFO, grouped by customer), consumed by `billing-events`.
    Billing,
}

impl QueueName {
    /// Every queue.
    pub const ALL: [Self; 4] = [Self::Email, Self::MailEvents, Self::Jobs, Self::Billing];

    /// The queue's short name (logs, operator routes, embedded table rows).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::MailEvents => "mail-events",
            Self::Jobs => "jobs",
            Self::Billing => "billing",
        }
    }

    /// Parses [`QueueName::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }

    fn env_vars(self) -> (&'static str, &'static str) {
        match self {
            Self::Email => ("GROUNDWORK_EMAIL_QUEUE_URL", "GROUNDWORK_EMAIL_DLQ_URL"),
            Self::MailEvents => ("GROUNDWORK_MAIL_EVENTS_QUEUE_URL", "GROUNDWORK_MAIL_EVENTS_DLQ_URL"),
            Self::Jobs => ("GROUNDWORK_JOBS_QUEUE_URL", "GROUNDWORK_JOBS_DLQ_URL"),
            Self::Billing => ("GROUNDWORK_BILLING_QUEUE_URL", "GROUNDWORK_BILLING_DLQ_URL"),
        }
    }
}

/// A social login provider: `GROUNDWORK_OIDC_PROVIDERS=google,okta`, then per name (upper
/// case, `-` as `_`) `GROUNDWORK_OIDC_<NAME>_CLIENT_ID`, `..._CLIENT_SECRET` and
/// `..._ISSUER` (preset for `google`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// The name in `/auth/oidc/{provider}/...`.
    pub name: String,
    /// The issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client id registered with it.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret<String>,
}

/// Where access-token keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `GROUNDWORK_JWT_KEYS`: base64 PKCS#8 keys, comma-separated, newest first.
    Value(Secret<String>),
    /// `GROUNDWORK_JWT_KEYS_SECRET`: a Secrets Manager secret holding that value, read at
    /// first use (the function that signs: auth).
    SecretsManager(String),
    /// `GROUNDWORK_JWKS_URL`: verify only, with the public keys the auth function publishes
    /// (every other function: no private key leaves auth).
    Jwks(String),
    /// Generated into `<data dir>/keys/` (local).
    DataDir,
}

/// Issuers of the providers known by name.
pub const OIDC_PRESETS: &[(&str, &str)] = &[("google", "https://accounts.google.com")];

fn oidc_providers(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<OidcProvider>, ConfigError> {
    let Some(list) = get("GROUNDWORK_OIDC_PROVIDERS") else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 32
            && !name.starts_with("org-")
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(ConfigError::Invalid {
                var: "GROUNDWORK_OIDC_PROVIDERS",
                value: list.clone(),
                reason: "names are lower-case letters, digits and -, not starting with org-".into(),
            });
        }
        let prefix = format!("GROUNDWORK_OIDC_{}", name.to_ascii_uppercase().replace('-', "_"));
        let need = |suffix: &str, why: &'static str| {
            let var = format!("{prefix}_{suffix}");
            get(&var).ok_or(ConfigError::MissingFor { var, why })
        };
        let preset = OIDC_PRESETS.iter().find(|(n, _)| *n == name).map(|(_, issuer)| (*issuer).to_owned());
        let issuer = match get(&format!("{prefix}_ISSUER")).or(preset) {
            Some(i) => i.trim_end_matches('/').to_owned(),
            None => need("ISSUER", "every OpenID Connect provider needs its issuer URL")?,
        };
        out.push(OidcProvider {
            name: name.to_owned(),
            issuer,
            client_id: need("CLIENT_ID", "every OpenID Connect provider needs a client id")?,
            client_secret: Secret::new(need("CLIENT_SECRET", "every OpenID Connect provider needs a client secret")?),
        });
    }
    Ok(out)
}

/// How transactional email leaves the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailBackend {
    /// `.eml` files in `<data dir>/outbox/` (the local default).
    Outbox,
    /// Amazon SES v2 (the default on Lambda), with an optional configuration set.
    Ses {
        /// `GROUNDWORK_SES_CONFIGURATION_SET`: where SES sends bounce/complaint events.
        configuration_set: Option<String>,
    },
    /// An SMTP relay.
    Smtp {
        /// `GROUNDWORK_SMTP_URL`: `smtps://user:pass@host:465`, `smtp://user:pass@host:587`
        /// (STARTTLS required) or `smtp://host:port?tls=none` (loopback relays only).
        url: Secret<String>,
    },
}

/// The URLs of one SQS queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsQueueUrls {
    /// The queue messages are sent to.
    pub url: String,
    /// Where SQS moves messages after too many receives.
    pub dead_letter_url: String,
}

/// Everything a function needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `GROUNDWORK_ENV`: `local`, `staging`, `production`, `pr-42`... (default `local`).
    pub environment: String,
    /// `GROUNDWORK_STORE`: `embedded` or `dynamodb` (default `embedded`).
    pub store: StoreBackend,
    /// `GROUNDWORK_TABLE`: the DynamoDB table (required with `dynamodb`).
    pub table: Option<String>,
    /// `GROUNDWORK_QUEUES`: `embedded` or `sqs` (default `embedded`).
    pub queues: QueueBackend,
    /// Every queue's URLs (all required with `sqs`).
    pub queue_urls: BTreeMap<QueueName, SqsQueueUrls>,
    /// `GROUNDWORK_DATA_DIR`: the embedded database, outbox and keys (default `.groundwork`).
    pub data_dir: PathBuf,
    /// `GROUNDWORK_HOST` (default `127.0.0.1`).
    pub host: String,
    /// `GROUNDWORK_PORT` (default 3000).
    pub port: u16,
    /// `GROUNDWORK_LOG`: a tracing filter such as `info` or `shared=debug,info` (default `info`).
    pub log_filter: String,
    /// `GROUNDWORK_LOG_FORMAT`: `json` or `text` (default `json` on Lambda, else `text`).
    pub log_format: LogFormat,
    /// `GROUNDWORK_MAX_BODY_BYTES`: the largest request body accepted (default 1 MiB).
    pub max_body_bytes: usize,
    /// `GROUNDWORK_AWS_TIMEOUT_MS`: the whole-operation timeout of AWS calls (default 5000).
    pub aws_operation_timeout: Duration,
    /// `GROUNDWORK_AWS_ATTEMPT_TIMEOUT_MS`: one attempt's timeout (default 2000).
    pub aws_attempt_timeout: Duration,
    /// `AWS_ENDPOINT_URL`: send every AWS call to this endpoint (a local API server).
    pub aws_endpoint_url: Option<String>,
    /// `GROUNDWORK_METRICS`: `emf` or `off` (default `emf` on Lambda, else `off`).
    pub emf_metrics: bool,
    /// `GROUNDWORK_MAIL`: `outbox`, `ses` or `smtp` (default `ses` on Lambda, else `outbox`).
    pub mail: MailBackend,
    /// `GROUNDWORK_MAIL_FROM`: the sender of every email (defaults only for the outbox; the
    /// email-dispatch function refuses to start without it on `ses` and `smtp`).
    pub mail_from: Option<String>,
    /// `GROUNDWORK_APP_NAME`: the product name in emails (default `Groundwork`).
    pub app_name: String,
    /// `GROUNDWORK_APP_URL`: the frontend's base URL, for links in emails (default the local
    /// stack's address).
    pub app_url: String,
    /// `GROUNDWORK_OPERATOR_TOKEN`: the bearer token of the `/ops` routes (unset: disabled).
    pub operator_token: Option<Secret<String>>,
    /// `GROUNDWORK_EXPORTS_BUCKET`: the S3 bucket of data exports (else `<data dir>/exports/`).
    pub exports_bucket: Option<String>,
    /// `GROUNDWORK_PLANS_FILE`: the plan catalogue (else the shipped `shared/config/plans.toml`).
    pub plans_file: Option<PathBuf>,
    /// `STRIPE_SECRET_KEY`: Stripe's API key; billing routes answer 503 without it.
    pub stripe_secret_key: Option<Secret<String>>,
    /// `STRIPE_WEBHOOK_SECRET`: endpoint signing secrets, comma-separated (a rotation).
    pub stripe_webhook_secrets: Secret<Vec<String>>,
    /// `STRIPE_API_BASE`: Stripe's API (default `https://api.stripe.com`).
    pub stripe_api_base: String,
    /// `GROUNDWORK_JOB_MAX_ATTEMPTS`: attempts before a job is dead-lettered (default 5).
    pub job_max_attempts: u32,
    /// `GROUNDWORK_SOFT_DELETE_RETENTION_DAYS`: how long soft-deleted records can be
    /// restored before the purge job removes them (default 30).
    pub soft_delete_retention_days: u32,
    /// `GROUNDWORK_API_URL`: the API's public base URL, the issuer of access tokens (default
    /// the local stack's address).
    pub api_url: String,
    /// `GROUNDWORK_JWT_AUDIENCE`: the audience of access tokens (default `groundwork`).
    pub jwt_audience: String,
    /// Where access-token keys come from (see [`KeySource`]).
    pub jwt_keys: KeySource,
    /// `GROUNDWORK_ACCESS_TOKEN_TTL_SECS`: access token lifetime (default 900).
    pub access_token_ttl_secs: u32,
    /// `GROUNDWORK_REFRESH_TOKEN_TTL_DAYS`: how long an unused session lasts (default 30).
    pub refresh_token_ttl_days: u32,
    /// `GROUNDWORK_OIDC_PROVIDERS`: social login providers (OpenID Connect), by name.
    pub oidc_providers: Vec<OidcProvider>,
    /// Rent-auth mode: `GROUNDWORK_EXTERNAL_ISSUER` (+ `_JWKS_URL`, `_AUDIENCE`).
    pub external_issuer: Option<crate::auth::external::ExternalIssuer>,
    /// Whether this runs on Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set).
    pub on_lambda: bool,
}

impl Config {
    /// How long soft-deleted records stay restorable.
    pub fn soft_delete_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.soft_delete_retention_days) * 86_400)
    }

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
        let vars: HashMap<String, String> = vars.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
        let get = |k: &str| vars.get(k).map(|v| v.trim().to_owned());

        let on_lambda = vars.contains_key("AWS_LAMBDA_FUNCTION_NAME");
        let store = match get("GROUNDWORK_STORE").as_deref() {
            None | Some("embedded") => StoreBackend::Embedded,
            Some("dynamodb") => StoreBackend::DynamoDb,
            Some(other) => return Err(invalid("GROUNDWORK_STORE", other, "expected `embedded` or `dynamodb`")),
        };
        let queues = match get("GROUNDWORK_QUEUES").as_deref() {
            None | Some("embedded") => QueueBackend::Embedded,
            Some("sqs") => QueueBackend::Sqs,
            Some(other) => return Err(invalid("GROUNDWORK_QUEUES", other, "expected `embedded` or `sqs`")),
        };
        let table = get("GROUNDWORK_TABLE");
        if store == StoreBackend::DynamoDb && table.is_none() {
            return Err(ConfigError::Missing {
                var: "GROUNDWORK_TABLE",
                why: "GROUNDWORK_STORE=dynamodb needs the table name",
            });
        }
        let mut queue_urls = BTreeMap::new();
        for queue in QueueName::ALL {
            let (url_var, dlq_var) = queue.env_vars();
            match (get(url_var), get(dlq_var)) {
                (Some(url), Some(dead_letter_url)) => {
                    queue_urls.insert(queue, SqsQueueUrls { url, dead_letter_url });
                }
                (None, _) if queues == QueueBackend::Sqs => {
                    return Err(ConfigError::Missing {
                        var: url_var,
                        why: "GROUNDWORK_QUEUES=sqs needs every queue URL",
                    });
                }
                (Some(_), None) if queues == QueueBackend::Sqs => {
                    return Err(ConfigError::Missing {
                        var: dlq_var,
                        why: "GROUNDWORK_QUEUES=sqs needs every dead-letter queue URL",
                    });
                }
                _ => {}
            }
        }
        let mail = match get("GROUNDWORK_MAIL").as_deref() {
            None if !on_lambda => MailBackend::Outbox,
            Some("outbox") => MailBackend::Outbox,
            None | Some("ses") => MailBackend::Ses { configuration_set: get("GROUNDWORK_SES_CONFIGURATION_SET") },
            Some("smtp") => MailBackend::Smtp {
                url: Secret::new(get("GROUNDWORK_SMTP_URL").ok_or(ConfigError::Missing {
                    var: "GROUNDWORK_SMTP_URL",
                    why: "GROUNDWORK_MAIL=smtp needs the relay's URL",
                })?),
            },
            Some(other) => return Err(invalid("GROUNDWORK_MAIL", other, "expected `outbox`, `ses` or `smtp`")),
        };
        let mail_from = match get("GROUNDWORK_MAIL_FROM") {
            Some(from) => Some(from),
            None if mail == MailBackend::Outbox => Some("Groundwork <no-reply@localhost>".into()),
            None => None,
        };
        let port: u16 = parse_or("GROUNDWORK_PORT", get("GROUNDWORK_PORT"), 3000)?;
        let host = get("GROUNDWORK_HOST").unwrap_or_else(|| "127.0.0.1".into());
        let api_url = match get("GROUNDWORK_API_URL") {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if on_lambda => {
                return Err(ConfigError::Missing {
                    var: "GROUNDWORK_API_URL",
                    why: "access tokens name the API's public URL as their issuer (stack parameter ApiUrl)",
                });
            }
            None => format!("http://{host}:{port}"),
        };
        let log_format = match get("GROUNDWORK_LOG_FORMAT").as_deref() {
            None if on_lambda => LogFormat::Json,
            None => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => return Err(invalid("GROUNDWORK_LOG_FORMAT", other, "expected `json` or `text`")),
        };

        Ok(Self {
            environment: get("GROUNDWORK_ENV").unwrap_or_else(|| "local".into()),
            store,
            table,
            queues,
            queue_urls,
            data_dir: get("GROUNDWORK_DATA_DIR").map_or_else(|| PathBuf::from(".groundwork"), PathBuf::from),
            app_url: get("GROUNDWORK_APP_URL")
                .unwrap_or_else(|| format!("http://{host}:{port}"))
                .trim_end_matches('/')
                .to_owned(),
            host,
            port,
            log_filter: get("GROUNDWORK_LOG").unwrap_or_else(|| "info".into()),
            log_format,
            max_body_bytes: parse_or("GROUNDWORK_MAX_BODY_BYTES", get("GROUNDWORK_MAX_BODY_BYTES"), 1 << 20)?,
            aws_operation_timeout: Duration::from_millis(parse_or(
                "GROUNDWORK_AWS_TIMEOUT_MS",
                get("GROUNDWORK_AWS_TIMEOUT_MS"),
                5_000,
            )?),
            aws_attempt_timeout: Duration::from_millis(parse_or(
                "GROUNDWORK_AWS_ATTEMPT_TIMEOUT_MS",
                get("GROUNDWORK_AWS_ATTEMPT_TIMEOUT_MS"),
                2_000,
            )?),
            aws_endpoint_url: get("AWS_ENDPOINT_URL"),
            emf_metrics: match get("GROUNDWORK_METRICS").as_deref() {
                None => on_lambda,
                Some("emf") => true,
                Some("off") => false,
                Some(other) => return Err(invalid("GROUNDWORK_METRICS", other, "expected `emf` or `off`")),
            },
            mail,
            mail_from,
            app_name: get("GROUNDWORK_APP_NAME").unwrap_or_else(|| "Groundwork".into()),
            operator_token: get("GROUNDWORK_OPERATOR_TOKEN").map(Secret::new),
            exports_bucket: get("GROUNDWORK_EXPORTS_BUCKET"),
            plans_file: get("GROUNDWORK_PLANS_FILE").map(PathBuf::from),
            stripe_secret_key: get("STRIPE_SECRET_KEY").map(Secret::new),
            stripe_webhook_secrets: Secret::new(
                get("STRIPE_WEBHOOK_SECRET")
                    .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default(),
            ),
            stripe_api_base: get("STRIPE_API_BASE")
                .map_or_else(|| "https://api.stripe.com".to_owned(), |v| v.trim_end_matches('/').to_owned()),
            job_max_attempts: parse_or("GROUNDWORK_JOB_MAX_ATTEMPTS", get("GROUNDWORK_JOB_MAX_ATTEMPTS"), 5)?,
            soft_delete_retention_days: parse_or(
                "GROUNDWORK_SOFT_DELETE_RETENTION_DAYS",
                get("GROUNDWORK_SOFT_DELETE_RETENTION_DAYS"),
                30,
            )?,
            api_url,
            jwt_audience: get("GROUNDWORK_JWT_AUDIENCE").unwrap_or_else(|| "groundwork".into()),
            jwt_keys: match (get("GROUNDWORK_JWT_KEYS"), get("GROUNDWORK_JWT_KEYS_SECRET"), get("GROUNDWORK_JWKS_URL"))
            {
                (Some(k), _, _) => KeySource::Value(Secret::new(k)),
                (None, Some(id), _) => KeySource::SecretsManager(id),
                (None, None, Some(url)) => KeySource::Jwks(url),
                (None, None, None) if on_lambda && get("GROUNDWORK_EXTERNAL_ISSUER").is_none() => {
                    return Err(ConfigError::Missing {
                        var: "GROUNDWORK_JWT_KEYS_SECRET",
                        why: "on Lambda, auth reads its signing keys from Secrets Manager (or GROUNDWORK_JWT_KEYS) \
                              and other functions verify with GROUNDWORK_JWKS_URL",
                    });
                }
                (None, None, None) => KeySource::DataDir,
            },
            access_token_ttl_secs: parse_or(
                "GROUNDWORK_ACCESS_TOKEN_TTL_SECS",
                get("GROUNDWORK_ACCESS_TOKEN_TTL_SECS"),
                900,
            )?,
            refresh_token_ttl_days: parse_or(
                "GROUNDWORK_REFRESH_TOKEN_TTL_DAYS",
                get("GROUNDWORK_REFRESH_TOKEN_TTL_DAYS"),
                30,
            )?,
            oidc_providers: oidc_providers(&get)?,
            external_issuer: get("GROUNDWORK_EXTERNAL_ISSUER").map(|issuer| {
                let issuer = issuer.trim_end_matches('/').to_owned();
                crate::auth::external::ExternalIssuer {
                    jwks_url: get("GROUNDWORK_EXTERNAL_JWKS_URL")
                        .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json")),
                    audience: get("GROUNDWORK_EXTERNAL_AUDIENCE"),
                    issuer,
                }
            }),
            on_lambda,
        })
    }
}

fn invalid(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid { var, value: value.chars().take(200).collect(), reason: reason.into() }
}

fn parse_or<T: FromStr>(var: &'static str, value: Option<String>, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| invalid(var, &v, &e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn defaults_are_local() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.store, StoreBackend::Embedded);
        assert_eq!(c.queues, QueueBackend::Embedded);
        assert_eq!(c.port, 3000);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.data_dir, PathBuf::from(".groundwork"));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.mail, MailBackend::Outbox);
        assert_eq!(c.app_url, "http://127.0.0.1:3000");
        assert_eq!(c.job_max_attempts, 5);
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
        assert_eq!(c.api_url, "https://api.acme.test");
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!format!("{c:?}").contains("\"k\""), "keys never print");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_vars(vars(&[("GROUNDWORK_PORT", "eighty")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_PORT"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_STORE", "dynamodb")])).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing { var: "GROUNDWORK_TABLE", why: "GROUNDWORK_STORE=dynamodb needs the table name" }
        );
        let e = Config::from_vars(vars(&[("GROUNDWORK_QUEUES", "sqs")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_EMAIL_QUEUE_URL"), "{e}");
        let e =
            Config::from_vars(vars(&[("GROUNDWORK_QUEUES", "sqs"), ("GROUNDWORK_EMAIL_QUEUE_URL", "u")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_EMAIL_DLQ_URL"), "{e}");
        let e = Config::from_vars(vars(&[("GROUNDWORK_MAIL", "smtp")])).unwrap_err();
        assert!(e.to_string().contains("GROUNDWORK_SMTP_URL"), "{e}");
        let c = Config::from_vars(vars(&[("GROUNDWORK_MAIL", "ses")])).unwrap();
        assert_eq!(c.mail_from, None, "only email-dispatch needs a sender; it checks at init");
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
        assert_eq!(c.oidc_providers[0].issuer, "https://accounts.google.com");
        assert_eq!(c.oidc_providers[1].issuer, "https://login.acme.test");
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
        assert_eq!(c.table.as_deref(), Some("t"));
        assert_eq!(c.queue_urls[&QueueName::Email].dead_letter_url, "https://q/email-dlq");
        assert_eq!(c.port, 8080);
        assert_eq!(c.app_url, "https://app.acme.test");
        assert!(!format!("{c:?}").contains("u:p@"), "the SMTP password must not print");
    }
}
