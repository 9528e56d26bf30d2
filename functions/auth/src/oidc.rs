//! OpenID Connect login: authorization code flow with PKCE (S256), `state` and `nonce`,
//! through the `openidconnect` crate. Providers are the social ones configured by env
//! (`GROUNDWORK_OIDC_PROVIDERS`; see [`shared::config::OidcProvider`]) and each
//! organization's enterprise SSO (`org-<org id>`, set with `PUT /organizations/{id}/sso`).
//!
//! - `/auth/oidc/{provider}/start` stores the flow's secrets under the hash of `state`
//!   (`OIDC#<sha256>` / `STATE`, ten minutes, single use) and redirects to the provider;
//! - `/auth/oidc/{provider}/callback` takes the flow back (once), exchanges the code with the
//!   PKCE verifier, verifies the ID token (signature from the provider's JWKS, issuer,
//!   audience, expiry against our clock, nonce), and signs the user in: by the identity
//!   (`IDENTITY#<sha256 of issuer>#<subject>`), else by verified email (linking it), else as a
//!   new user; enterprise SSO checks the email domain and adds the user to the organization's
//!   just-in-time account.

use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpClientError, HttpRequest, HttpResponse,
    IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use shared::error::ApiError;
use shared::id::{AccountId, OrgId, UserId};
use shared::keys;
use shared::services::Services;
use shared::store::{Delete, Item, Key, Put};
use shared::tenancy::membership_lifecycle::{self, JoinedVia};
use shared::tenancy::{self, Membership, Role};

/// How long a started login waits for the provider's answer.
pub const FLOW_TTL_SECS: i64 = 600;
/// How long discovered provider metadata is reused.
const METADATA_TTL: Duration = Duration::from_secs(600);

/// A provider resolved from the path.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The path name (`google`, `org-<id>`).
    pub name: String,
    /// Its issuer.
    pub issuer: String,
    client_id: String,
    client_secret: String,
    /// For enterprise SSO: the organization's rules.
    pub org: Option<(OrgId, tenancy::SsoConfig)>,
}

/// The provider named `name`, if configured.
///
/// # Errors
/// When the store fails.
pub async fn provider(s: &Services, name: &str) -> Result<Option<Provider>, ApiError> {
    if let Some(id) = name.strip_prefix("org-") {
        let Ok(org) = id.parse::<OrgId>() else { return Ok(None) };
        let Some(sso) = tenancy::org_sso(s.store.as_ref(), org).await? else { return Ok(None) };
        return Ok(Some(Provider {
            name: name.to_owned(),
            issuer: sso.issuer.clone(),
            client_id: sso.client_id.clone(),
            client_secret: sso.client_secret.clone(),
            org: Some((org, sso)),
        }));
    }
    Ok(s.config.auth.oidc_providers.iter().find(|p| p.name == name).map(|p| Provider {
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        client_id: p.client_id.clone(),
        client_secret: p.client_secret.expose().clone(),
        org: None,
    }))
}

/// The HTTP client a provider is called with. An organization's provider was typed in by
/// its admins: every URL (discovery, keys, token, UserInfo: the discovery document names the
/// last three) is checked ([`shared::outbound::check_url`]) and called through the guarded
/// client, which connects to public addresses only. The operator's own providers
/// (`GROUNDWORK_OIDC_PROVIDERS`) use the plain outbound client.
enum ProviderHttp {
    /// The operator's provider: the plain outbound client.
    Operator(reqwest::Client),
    /// An organization's: every URL checked, then the guarded client.
    Organization(shared::outbound::LazyGuarded, shared::outbound::OutboundConfig),
}

impl ProviderHttp {
    fn of(s: &Services, p: &Provider) -> Self {
        match p.org {
            Some(_) => Self::Organization(s.guarded_http.clone(), s.config.outbound),
            None => Self::Operator(s.http.clone()),
        }
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpClientError<reqwest::Error>;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (client, config) = match self {
                Self::Operator(client) => return client.call(request).await,
                Self::Organization(client, config) => (client, *config),
            };
            let url = reqwest::Url::parse(&request.uri().to_string())
                .map_err(|e| HttpClientError::Other(format!("the provider's URL: {e}")))?;
            shared::outbound::check_url(&url, config).map_err(|r| HttpClientError::Other(format!("refused: {r}")))?;
            let client = client.get().map_err(|e| HttpClientError::Other(format!("{e:#}")))?;
            client.call(request).await
        })
    }
}

async fn metadata(s: &Services, p: &Provider) -> Result<CoreProviderMetadata, ApiError> {
    let issuer = p.issuer.as_str();
    let cache_key = format!("oidc-discovery {issuer}");
    // The discovery document and the JWKS discovery fetched with it (which the metadata's
    // own serialisation leaves out).
    if let Some(doc) = s.documents.get(&cache_key, s.clock.now_ms(), METADATA_TTL)
        && let Ok(m) = serde_json::from_value::<CoreProviderMetadata>(doc["metadata"].clone())
        && let Ok(jwks) = serde_json::from_value(doc["jwks"].clone())
    {
        return Ok(m.set_jwks(jwks));
    }
    let url = IssuerUrl::new(issuer.to_owned()).map_err(|e| anyhow::anyhow!("issuer URL: {e}"))?;
    // Discovery also checks that the document names this very issuer.
    let m = CoreProviderMetadata::discover_async(url, &ProviderHttp::of(s, p)).await.map_err(|e| match e {
        // The document names another issuer, or is not valid: never trust it.
        openidconnect::DiscoveryError::Validation(_) | openidconnect::DiscoveryError::Parse(_) => {
            refused(&format!("discovery of {issuer}: {e}"))
        }
        other => {
            tracing::warn!(issuer, error = %other, "OpenID Connect discovery failed");
            ApiError::Unavailable(anyhow::anyhow!("the identity provider's discovery failed"))
        }
    })?;
    // Cached only once discovery has validated it (it names this very issuer).
    if let (Ok(metadata), Ok(jwks)) = (serde_json::to_value(&m), serde_json::to_value(m.jwks())) {
        s.documents.put(cache_key, s.clock.now_ms(), serde_json::json!({"metadata": metadata, "jwks": jwks}));
    }
    Ok(m)
}

fn redirect_uri(s: &Services, provider: &str) -> Result<RedirectUrl, ApiError> {
    RedirectUrl::new(format!("{}/auth/oidc/{provider}/callback", s.config.server.api_url))
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("redirect URL: {e}")))
}

/// What a started login keeps until the provider answers.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    provider: String,
    nonce: String,
    pkce_verifier: String,
}

fn flow_key(state: &str) -> Key {
    keys::oidc_state(&shared::auth::hash_secret(state))
}

/// Starts a login: returns the provider's authorization URL.
///
/// # Errors
/// 503 when the provider's discovery fails.
pub async fn start(s: &Services, p: &Provider, login_hint: Option<&str>) -> Result<String, ApiError> {
    let client = CoreClient::from_provider_metadata(
        metadata(s, p).await?,
        ClientId::new(p.client_id.clone()),
        Some(ClientSecret::new(p.client_secret.clone())),
    )
    .set_redirect_uri(redirect_uri(s, &p.name)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge);
    if let Some(hint) = login_hint {
        request = request.add_extra_param("login_hint", hint.to_owned());
    }
    let (url, state, nonce) = request.url();
    let flow =
        Flow { provider: p.name.clone(), nonce: nonce.secret().clone(), pkce_verifier: verifier.secret().clone() };
    let item = Item::from_record(flow_key(state.secret()), &flow)?.expiring_at(s.clock.now_secs() + FLOW_TTL_SECS);
    s.store.put(Put::new(item)).await?;
    Ok(url.to_string())
}

/// What the provider said about the user, verified.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The issuer.
    pub issuer: String,
    /// The subject at the issuer.
    pub subject: String,
    /// The email address, if given and verified.
    pub email: Option<String>,
    /// The name, if given.
    pub name: Option<String>,
}

fn refused(why: &str) -> ApiError {
    tracing::warn!(reason = why, "OpenID Connect login refused");
    ApiError::Unauthenticated
}

/// Completes a login: takes the flow of `state` (once), exchanges `code`, verifies the ID
/// token. Any mismatch is a 401 (the reason is logged, not told).
///
/// # Errors
/// 401 as above, 503 when the provider does not answer.
pub async fn finish(s: &Services, p: &Provider, code: &str, state: &str) -> Result<Identity, ApiError> {
    let Some(item) = s.store.delete(Delete::new(flow_key(state))).await? else {
        return Err(refused("unknown, used or expired state"));
    };
    let flow: Flow = item.record()?;
    if flow.provider != p.name {
        return Err(refused("state of another provider"));
    }
    let client = CoreClient::from_provider_metadata(
        metadata(s, p).await?,
        ClientId::new(p.client_id.clone()),
        Some(ClientSecret::new(p.client_secret.clone())),
    )
    .set_redirect_uri(redirect_uri(s, &p.name)?);
    let request = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier));
    let tokens =
        request.request_async(&ProviderHttp::of(s, p)).await.map_err(|e| refused(&format!("code exchange: {e}")))?;
    let id_token = tokens.id_token().ok_or_else(|| refused("no ID token"))?;
    let now_ms = s.clock.now_ms();
    let verifier = client
        .id_token_verifier()
        .set_time_fn(move || chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default());
    let claims = id_token.claims(&verifier, &Nonce::new(flow.nonce)).map_err(|e| refused(&format!("ID token: {e}")))?;
    let mut email = match (claims.email(), claims.email_verified()) {
        (Some(e), Some(true)) => Some(e.as_str().to_ascii_lowercase()),
        _ => None,
    };
    let mut name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
    if claims.email().is_none() {
        // Many providers keep profile claims out of the ID token: ask the UserInfo endpoint,
        // which must answer for the same subject.
        let request = client
            .user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
            .map_err(|e| refused(&format!("no UserInfo endpoint: {e}")))?;
        let info: openidconnect::core::CoreUserInfoClaims =
            request.request_async(&ProviderHttp::of(s, p)).await.map_err(|e| refused(&format!("UserInfo: {e}")))?;
        if let (Some(e), Some(true)) = (info.email(), info.email_verified()) {
            email = Some(e.as_str().to_ascii_lowercase());
        }
        name = name.or_else(|| info.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()));
    }
    Ok(Identity {
        issuer: claims.issuer().as_str().to_owned(),
        subject: claims.subject().as_str().to_owned(),
        email,
        name,
    })
}

/// The key linking an identity at an issuer to a user.
pub fn identity_key(issuer: &str, subject: &str) -> Key {
    keys::identity(&shared::auth::hash_secret(issuer), subject)
}

/// Links `identity` to `user` (indexed by user, so erasure finds it).
///
/// # Errors
/// When the store fails.
pub async fn link(s: &Services, identity: &Identity, user: UserId) -> Result<(), ApiError> {
    let key = identity_key(&identity.issuer, &identity.subject);
    let index = keys::identity_index(user, &key);
    let item = Item::new(key)
        .with("user_id", user.to_string())
        .with("issuer", identity.issuer.clone())
        .with("linked_at_ms", s.clock.now_ms())
        .with_gsi1(index);
    s.store.put(Put::new(item)).await?;
    Ok(())
}

/// The user an identity is linked to.
///
/// # Errors
/// When the store fails.
pub async fn linked_user(s: &Services, identity: &Identity) -> Result<Option<UserId>, ApiError> {
    let item = s.store.get(&identity_key(&identity.issuer, &identity.subject)).await?;
    Ok(item.and_then(|i| i.data.get("user_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok())))
}

/// Enterprise SSO rules: the email's domain must be verified by the organization
/// (`tenancy::domains`), or be one of its allowed domains that no other organization
/// verified: a domain's verified holder alone decides which IdP speaks for it.
///
/// Returns whether the organization itself verified the domain (rather than only allowing
/// it), which decides whether its IdP may speak for an address someone already holds.
///
/// # Errors
/// 403 `domain_not_allowed`; store failures.
pub async fn check_domain(s: &Services, org: OrgId, allowed_domains: &[String], email: &str) -> Result<bool, ApiError> {
    let domain = tenancy::domains::of_email(email);
    let holder = tenancy::domains::owner(s.store.as_ref(), domain).await?;
    if holder == Some(org) {
        Ok(true)
    } else if holder.is_none() && allowed_domains.iter().any(|d| d == domain) {
        Ok(false)
    } else {
        Err(ApiError::ForbiddenBecause {
            code: "domain_not_allowed",
            detail: "this organization's single sign-on does not accept that email domain".into(),
        })
    }
}

/// Just-in-time membership: the organization's account, with its role, unless the user is
/// (or was removed as) a member already.
///
/// # Errors
/// When the store fails.
pub async fn join_jit(s: &Services, org: OrgId, rule: (Option<AccountId>, Role), user: UserId) -> Result<(), ApiError> {
    let (Some(account), role) = rule else { return Ok(()) };
    if s.store.get(&keys::membership(account, user)).await?.is_some() {
        return Ok(());
    }
    // Detaching an account clears it from the SSO settings, but a sign-in racing the detach
    // could read the settings first: an account that left the organization takes nobody in.
    let attached = tenancy::load_account(s.store.as_ref(), account)
        .await?
        .is_some_and(|(a, _)| a.org_id == Some(org) && a.deleted_at_ms.is_none());
    if !attached {
        tracing::warn!(org = %org, account = %account, "just-in-time account is deleted or no longer the organization's; skipped");
        return Ok(());
    }
    // A seat as for every other way of joining: the IdP cannot buy one, so the user signs in
    // without the membership (the account's audit says why) until a seat frees up.
    if let Some(seats) = s.entitlements(account).await?.limit("seats")
        && tenancy::members(s.store.as_ref(), account).await?.len() as u64 >= seats
    {
        tracing::warn!(org = %org, account = %account, "no seat for a just-in-time member");
        let event = NewEvent::new(Actor::User(user), AuditAction::MemberJoinedViaSso, Origin::default())
            .target(user)
            .detail(json!({"role": null, "wanted_role": role, "organization": org, "refused": "seat_limit"}));
        s.audit(AuditStream::Account(account), event).await?;
        return Ok(());
    }
    let m = Membership { account_id: account, user_id: user, role, joined_at_ms: s.clock.now_ms() };
    let put = Put::new(tenancy::membership_item(&m)?).if_not_exists();
    let event_id = format!("member-joined-sso-{account}-{user}");
    // A condition failure means a concurrent sign-in made them a member first.
    if membership_lifecycle::join(s, put, &m, JoinedVia::Sso, event_id, Vec::new()).await? {
        let event = NewEvent::new(Actor::User(user), AuditAction::MemberJoinedViaSso, Origin::default())
            .target(user)
            .detail(json!({"role": m.role, "organization": org}));
        s.audit(AuditStream::Account(account), event).await?;
    }
    Ok(())
}
