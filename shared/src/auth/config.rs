//! The auth settings: where access-token keys come from, token lifetimes, social login
//! providers, and rent-auth mode's external issuer.

use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;
use crate::settings::ConfigError;
use crate::settings::{Env, at_least, at_most};

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

/// Issuers of the providers known by name.
pub const OIDC_PRESETS: &[(&str, &str)] = &[("google", "https://accounts.google.com")];

/// Rent-auth mode: the kind of issuer, which decides how a token shows it was issued for
/// this API (`GROUNDWORK_EXTERNAL_PROVIDER`). Each vendor puts that in a different claim; the
/// rules are in the README's rent-auth section and in [`crate::auth::external`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalProvider {
    /// Any OpenID Connect issuer: `aud` (a string or an array) holds a configured audience.
    Generic,
    /// Auth0: access tokens for an API carry its identifier in `aud`, alone or beside the
    /// `/userinfo` audience (an array). <https://auth0.com/docs/secure/tokens/access-tokens>
    Auth0,
    /// Clerk: session tokens name the frontend origin that obtained them in `azp`; the
    /// issuer (the instance's Frontend API) binds them to one application.
    /// <https://clerk.com/docs/backend-requests/manual-jwt>
    Clerk,
    /// Amazon Cognito user pools: ID tokens (`token_use` `id`, the app client in `aud`) and
    /// access tokens (`token_use` `access`, the app client in `client_id`, no `aud`).
    /// <https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-tokens-verifying-a-jwt.html>
    Cognito,
    /// Microsoft Entra ID: v2.0 tokens (`login.microsoftonline.com/{tenant}/v2.0`, the client
    /// id in `aud`) and v1.0 tokens (`sts.windows.net/{tenant}/`, often `api://{client id}`).
    /// <https://learn.microsoft.com/entra/identity-platform/access-tokens>
    Entra,
    /// WorkOS AuthKit: access tokens signed by the keys of one client's JWKS
    /// (`api.workos.com/sso/jwks/{client id}`); `aud` only with a resource indicator.
    /// <https://workos.com/docs/reference/authkit/session-tokens>
    WorkOs,
}

impl ExternalProvider {
    fn parse(value: &str) -> Option<Self> {
        Some(match value.to_ascii_lowercase().as_str() {
            "generic" | "oidc" => Self::Generic,
            "auth0" => Self::Auth0,
            "clerk" => Self::Clerk,
            "cognito" => Self::Cognito,
            "entra" | "azure-ad" | "azuread" => Self::Entra,
            "workos" => Self::WorkOs,
            _ => return None,
        })
    }
}

/// Rent-auth mode: the external issuer whose tokens are accepted instead of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIssuer {
    /// `GROUNDWORK_EXTERNAL_PROVIDER` (default `generic`).
    pub provider: ExternalProvider,
    /// `GROUNDWORK_EXTERNAL_ISSUER`: the `iss` its tokens carry (for Entra, either form).
    pub issuer: String,
    /// `GROUNDWORK_EXTERNAL_JWKS_URL` (default `<issuer>/.well-known/jwks.json`; Entra's
    /// `discovery/v2.0/keys`; required for WorkOS).
    pub jwks_url: String,
    /// `GROUNDWORK_EXTERNAL_AUDIENCE`, comma-separated: what shows a token was issued for
    /// this API (the `aud`, Cognito's app client ids, Clerk's authorized parties). Required
    /// except for WorkOS, whose per-client keys already bind tokens to one application.
    pub audiences: Vec<String>,
}

/// The `SameSite` attribute of the browser session's refresh cookie
/// (`GROUNDWORK_REFRESH_COOKIE_SAME_SITE`), RFC 6265bis section 5.4.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSameSite {
    /// Sent only on requests from the same site (`app.example.com` calling
    /// `api.example.com`): the default.
    Strict,
    /// Also on top-level navigations from other sites.
    Lax,
    /// Also on requests from other sites (a frontend on another registrable domain); always
    /// `Secure`, and blocked by browsers that block third-party cookies.
    None,
}

/// Which addresses may sign up (`GROUNDWORK_SIGNUP_EMAIL_POLICY`; see
/// `auth::email_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailPolicy {
    /// Any address (`allow`, the default).
    Allow,
    /// None at a disposable mail service (`no_disposable`).
    NoDisposable,
    /// Work addresses only: neither disposable nor at a free mail provider (`business_only`).
    BusinessOnly,
}

/// The bot check's provider (`GROUNDWORK_CHALLENGE_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeProvider {
    /// Cloudflare Turnstile.
    Turnstile,
    /// hCaptcha.
    HCaptcha,
    /// Google reCAPTCHA.
    ReCaptcha,
}

impl ChallengeProvider {
    /// The provider's `siteverify` endpoint.
    pub fn verify_url(self) -> &'static str {
        match self {
            Self::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            Self::HCaptcha => "https://api.hcaptcha.com/siteverify",
            Self::ReCaptcha => "https://www.google.com/recaptcha/api/siteverify",
        }
    }
}

/// The bot check on sign-up and password-forgot, when configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeConfig {
    /// `GROUNDWORK_CHALLENGE_PROVIDER`: `turnstile`, `hcaptcha` or `recaptcha`.
    pub provider: ChallengeProvider,
    /// `GROUNDWORK_CHALLENGE_SECRET`: the provider's secret key.
    pub secret: Secret<String>,
    /// `GROUNDWORK_CHALLENGE_VERIFY_URL` (default: the provider's `siteverify`).
    pub verify_url: String,
}

/// The auth settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Where access-token keys come from (see [`KeySource`]).
    pub jwt_keys: KeySource,
    /// `GROUNDWORK_JWT_AUDIENCE`: the audience of access tokens (default `groundwork`).
    pub audience: String,
    /// `GROUNDWORK_ACCESS_TOKEN_TTL_SECS`: access token lifetime (default 900 s).
    pub access_token_ttl: Duration,
    /// `GROUNDWORK_REFRESH_TOKEN_TTL_DAYS`: how long an unused session lasts (default 30 days).
    pub refresh_token_ttl: Duration,
    /// `GROUNDWORK_REFRESH_REUSE_INTERVAL_SECS`: how long a rotated refresh token still gets
    /// its successor (two tabs refreshing at once) instead of counting as stolen (default
    /// 10 s, at most 60 s; 0 turns the grace off). Auth0 calls this the reuse interval.
    pub refresh_reuse_interval: Duration,
    /// `GROUNDWORK_OIDC_PROVIDERS`: social login providers (OpenID Connect), by name.
    pub oidc_providers: Vec<OidcProvider>,
    /// Rent-auth mode: `GROUNDWORK_EXTERNAL_ISSUER` (+ `_PROVIDER`, `_JWKS_URL`, `_AUDIENCE`).
    pub external_issuer: Option<ExternalIssuer>,
    /// `GROUNDWORK_REFRESH_COOKIE_SAME_SITE`: `strict` (default), `lax` or `none`.
    pub refresh_cookie_same_site: CookieSameSite,
    /// `GROUNDWORK_PWNED_PASSWORDS_URL`: the Pwned Passwords range API that passwords are
    /// checked against (default `https://api.pwnedpasswords.com` on Lambda, none locally;
    /// `off` turns the check off).
    pub pwned_passwords_url: Option<String>,
    /// `GROUNDWORK_SIGNUP_EMAIL_POLICY`: `allow` (default), `no_disposable`, `business_only`.
    pub signup_email_policy: EmailPolicy,
    /// The bot check: `GROUNDWORK_CHALLENGE_PROVIDER` (+ `_SECRET`, `_VERIFY_URL`).
    pub challenge: Option<ChallengeConfig>,
    /// `GROUNDWORK_PASSWORD_HASH_QUEUE`: how many password hashes or checks may wait for a
    /// hashing thread before more are refused with a 503 (default 64, 1 to 100,000; one
    /// thread per core, about 30 ms of CPU each).
    pub password_hash_queue: usize,
}

#[derive(Deserialize)]
struct Vars {
    #[serde(default = "default_audience")]
    jwt_audience: String,
    #[serde(default = "default_access_token_ttl_secs")]
    access_token_ttl_secs: u64,
    #[serde(default = "default_refresh_token_ttl_days")]
    refresh_token_ttl_days: u64,
    #[serde(default = "default_refresh_reuse_interval_secs")]
    refresh_reuse_interval_secs: u64,
    jwt_keys: Option<String>,
    jwt_keys_secret: Option<String>,
    jwks_url: Option<String>,
    external_issuer: Option<String>,
    external_audience: Option<String>,
    external_provider: Option<String>,
    oidc_providers: Option<String>,
    refresh_cookie_same_site: Option<String>,
    signup_email_policy: Option<String>,
    challenge_provider: Option<String>,
    challenge_secret: Option<String>,
    #[serde(default = "default_password_hash_queue")]
    password_hash_queue: usize,
}

fn default_password_hash_queue() -> usize {
    64
}

fn default_audience() -> String {
    "groundwork".into()
}

fn default_access_token_ttl_secs() -> u64 {
    900
}

fn default_refresh_token_ttl_days() -> u64 {
    30
}

fn default_refresh_reuse_interval_secs() -> u64 {
    10
}

impl AuthConfig {
    /// From `GROUNDWORK_*`.
    ///
    /// # Errors
    /// Malformed numbers; on Lambda, no key source (unless in rent-auth mode); an OpenID
    /// Connect provider without its client or issuer.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let v: Vars = env.area("GROUNDWORK_")?;
        let jwt_keys = match (v.jwt_keys, v.jwt_keys_secret, v.jwks_url) {
            (Some(k), _, _) => KeySource::Value(Secret::new(k)),
            (None, Some(id), _) => KeySource::SecretsManager(id),
            (None, None, Some(url)) => KeySource::Jwks(url),
            (None, None, None) if env.on_lambda && v.external_issuer.is_none() => {
                return Err(ConfigError::Missing {
                    var: "GROUNDWORK_JWT_KEYS_SECRET".into(),
                    why: "on Lambda, auth reads its signing keys from Secrets Manager (or GROUNDWORK_JWT_KEYS) \
                          and other functions verify with GROUNDWORK_JWKS_URL",
                });
            }
            (None, None, None) => KeySource::DataDir,
        };
        let external_issuer = match env.url("GROUNDWORK_EXTERNAL_ISSUER", None)? {
            Some(issuer) => Some(external_issuer(env, issuer, v.external_provider, v.external_audience)?),
            None => None,
        };
        Ok(Self {
            jwt_keys,
            audience: v.jwt_audience,
            access_token_ttl: Duration::from_secs(at_least(
                "GROUNDWORK_ACCESS_TOKEN_TTL_SECS",
                v.access_token_ttl_secs,
                60,
            )?),
            refresh_token_ttl: Duration::from_secs(
                at_least("GROUNDWORK_REFRESH_TOKEN_TTL_DAYS", v.refresh_token_ttl_days, 1)?.saturating_mul(86_400),
            ),
            refresh_reuse_interval: Duration::from_secs(at_most(
                "GROUNDWORK_REFRESH_REUSE_INTERVAL_SECS",
                v.refresh_reuse_interval_secs,
                60,
            )?),
            oidc_providers: oidc_providers(env, v.oidc_providers.as_deref())?,
            external_issuer,
            refresh_cookie_same_site: same_site(v.refresh_cookie_same_site)?,
            pwned_passwords_url: pwned_passwords_url(env)?,
            signup_email_policy: email_policy(v.signup_email_policy)?,
            challenge: challenge(env, v.challenge_provider, v.challenge_secret)?,
            password_hash_queue: at_most(
                "GROUNDWORK_PASSWORD_HASH_QUEUE",
                at_least("GROUNDWORK_PASSWORD_HASH_QUEUE", v.password_hash_queue, 1)?,
                100_000,
            )?,
        })
    }
}

fn email_policy(value: Option<String>) -> Result<EmailPolicy, ConfigError> {
    let Some(value) = value else { return Ok(EmailPolicy::Allow) };
    match value.to_ascii_lowercase().replace('-', "_").as_str() {
        "allow" => Ok(EmailPolicy::Allow),
        "no_disposable" => Ok(EmailPolicy::NoDisposable),
        "business_only" => Ok(EmailPolicy::BusinessOnly),
        _ => Err(ConfigError::Invalid {
            var: "GROUNDWORK_SIGNUP_EMAIL_POLICY".into(),
            value,
            reason: "one of allow, no_disposable, business_only".into(),
        }),
    }
}

fn challenge(
    env: &Env,
    provider: Option<String>,
    secret: Option<String>,
) -> Result<Option<ChallengeConfig>, ConfigError> {
    let Some(name) = provider else { return Ok(None) };
    let provider = match name.to_ascii_lowercase().as_str() {
        "turnstile" => ChallengeProvider::Turnstile,
        "hcaptcha" => ChallengeProvider::HCaptcha,
        "recaptcha" => ChallengeProvider::ReCaptcha,
        _ => {
            return Err(ConfigError::Invalid {
                var: "GROUNDWORK_CHALLENGE_PROVIDER".into(),
                value: name,
                reason: "one of turnstile, hcaptcha, recaptcha".into(),
            });
        }
    };
    let secret = secret.ok_or(ConfigError::Missing {
        var: "GROUNDWORK_CHALLENGE_SECRET".into(),
        why: "the bot check verifies tokens with the provider's secret key",
    })?;
    let verify_url = env
        .url("GROUNDWORK_CHALLENGE_VERIFY_URL", Some(provider.verify_url().to_owned()))?
        .unwrap_or_else(|| provider.verify_url().to_owned());
    Ok(Some(ChallengeConfig { provider, secret: Secret::new(secret), verify_url }))
}

fn pwned_passwords_url(env: &Env) -> Result<Option<String>, ConfigError> {
    const VAR: &str = "GROUNDWORK_PWNED_PASSWORDS_URL";
    if env.get(VAR).is_some_and(|v| v.eq_ignore_ascii_case("off")) {
        return Ok(None);
    }
    // Locally the check is off unless asked for: the local stack works without a network.
    let default = env.on_lambda.then(|| "https://api.pwnedpasswords.com".to_owned());
    env.url(VAR, default)
}

fn same_site(value: Option<String>) -> Result<CookieSameSite, ConfigError> {
    let Some(value) = value else { return Ok(CookieSameSite::Strict) };
    match value.to_ascii_lowercase().as_str() {
        "strict" => Ok(CookieSameSite::Strict),
        "lax" => Ok(CookieSameSite::Lax),
        "none" => Ok(CookieSameSite::None),
        _ => Err(ConfigError::Invalid {
            var: "GROUNDWORK_REFRESH_COOKIE_SAME_SITE".into(),
            value,
            reason: "one of strict, lax, none".into(),
        }),
    }
}

fn external_issuer(
    env: &Env,
    issuer: String,
    provider: Option<String>,
    audience: Option<String>,
) -> Result<ExternalIssuer, ConfigError> {
    let provider = match provider {
        None => ExternalProvider::Generic,
        Some(name) => ExternalProvider::parse(&name).ok_or_else(|| ConfigError::Invalid {
            var: "GROUNDWORK_EXTERNAL_PROVIDER".into(),
            value: name,
            reason: "one of generic, auth0, clerk, cognito, entra, workos".into(),
        })?,
    };
    let default_jwks = match provider {
        ExternalProvider::WorkOs => None,
        ExternalProvider::Entra => {
            let tenant = crate::auth::external::entra_tenant(&issuer).ok_or_else(|| ConfigError::Invalid {
                var: "GROUNDWORK_EXTERNAL_ISSUER".into(),
                value: issuer.clone(),
                reason: "an Entra ID issuer with the tenant's id (a GUID, not common or a domain): \
                         https://login.microsoftonline.com/<tenant id>/v2.0 or https://sts.windows.net/<tenant id>/"
                    .into(),
            })?;
            Some(format!("https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"))
        }
        _ => Some(format!("{issuer}/.well-known/jwks.json")),
    };
    let jwks_url = env.url("GROUNDWORK_EXTERNAL_JWKS_URL", default_jwks)?.ok_or(ConfigError::Missing {
        var: "GROUNDWORK_EXTERNAL_JWKS_URL".into(),
        why: "WorkOS signs with the keys of one client: https://api.workos.com/sso/jwks/<client id>",
    })?;
    let audiences: Vec<String> = audience
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if audiences.is_empty() && provider != ExternalProvider::WorkOs {
        return Err(ConfigError::Missing {
            var: "GROUNDWORK_EXTERNAL_AUDIENCE".into(),
            why: "without it a token the issuer made for another application would be accepted \
                  (Cognito: the app client ids; Clerk: the frontend origins in azp; others: the aud)",
        });
    }
    Ok(ExternalIssuer { provider, issuer, jwks_url, audiences })
}

fn oidc_providers(env: &Env, list: Option<&str>) -> Result<Vec<OidcProvider>, ConfigError> {
    let Some(list) = list else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 32
            && !name.starts_with("org-")
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(ConfigError::Invalid {
                var: "GROUNDWORK_OIDC_PROVIDERS".into(),
                value: list.chars().take(200).collect(),
                reason: "names are lower-case letters, digits and -, not starting with org-".into(),
            });
        }
        let prefix = format!("GROUNDWORK_OIDC_{}", name.to_ascii_uppercase().replace('-', "_"));
        let need = |suffix: &str, why: &'static str| {
            let var = format!("{prefix}_{suffix}");
            env.get(&var).ok_or(ConfigError::Missing { var, why })
        };
        let preset = OIDC_PRESETS.iter().find(|(n, _)| *n == name).map(|(_, issuer)| (*issuer).to_owned());
        let issuer = match env.get(&format!("{prefix}_ISSUER")).or(preset) {
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
