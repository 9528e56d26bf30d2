//! SAML 2.0 login routes, per organization: our service provider metadata, the redirect to
//! the organization's IdP (SP-initiated) and the assertion consumer service that both
//! SP- and IdP-initiated logins post to. The protocol is `shared::auth::saml`; the
//! connection is set with `PUT /organizations/{org_id}/saml`.
//!
//! Single use: a response answering a request (`InResponseTo`) consumes that request's
//! item, so the same answer works once; every assertion's ID is kept until the assertion
//! would have expired, so a replayed assertion (solicited or not) is refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use shared::audit::{Actor, AuditAction, AuditStream, NewEvent};
use shared::auth::rate_limit::{self, SAML_FAILURES_PER_IP};
use shared::auth::saml::{self, Expectations, ServiceProvider, VerifiedAssertion};
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, Query, RequestContext};
use shared::id::OrgId;
use shared::services::Services;
use shared::store::{Condition, Delete, Item, Put};
use shared::tenancy::{self, saml_connection, saml_connection::SamlConfig};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::oidc::sso_user;
use super::*;
use crate::oidc;
use crate::sessions::{self, TokenPair};

/// How long a request we sent waits for its answer.
pub const REQUEST_TTL_SECS: i64 = 600;
/// The longest `RelayState` accepted ([SAMLBind] section 3.4.3: 80 bytes is what IdPs must
/// keep; many keep more, so we allow what fits a URL comfortably).
const MAX_RELAY_STATE: usize = 512;

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(metadata)).routes(routes!(saml_start)).routes(routes!(acs))
}

fn service_provider(s: &Services, org: OrgId) -> ServiceProvider {
    let api = &s.config.server.api_url;
    ServiceProvider { entity_id: saml_connection::sp_entity_id(api, org), acs_url: saml_connection::acs_url(api, org) }
}

async fn connection(s: &Services, org: OrgId) -> Result<SamlConfig, ApiError> {
    saml_connection::org_saml(s.store.as_ref(), org).await?.ok_or(ApiError::NotFound)
}

/// Our service provider metadata for the organization: entity id, assertion consumer service
/// (HTTP-POST) and name id format, for IdPs that import metadata (Entra ID, ADFS).
#[utoipa::path(get, path = "/auth/saml/{org_id}/metadata", tag = "auth",
    params(("org_id" = String, Path)),
    responses((status = 200, description = "SAML metadata (an EntityDescriptor)", content_type = "application/samlmetadata+xml", body = String),
              (status = 404, description = "No such organization or no SAML connection", body = Problem, content_type = "application/problem+json")))]
async fn metadata(State(s): State<Services>, Path(org): Path<OrgId>) -> Result<Response, ApiError> {
    let config = connection(&s, org).await?;
    let xml = saml::sp_metadata(&service_provider(&s, org), config.require_signed_assertion);
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/samlmetadata+xml"))], xml).into_response())
}

/// Options of a SAML login.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct SamlStartParams {
    /// Passed to the IdP and posted back with the response (at most 512 bytes, no control characters).
    pub relay_state: Option<String>,
}

/// Starts an SP-initiated SAML login: redirects to the organization's IdP with an
/// `AuthnRequest` (HTTP-Redirect binding).
#[utoipa::path(get, path = "/auth/saml/{org_id}/start", tag = "auth",
    params(("org_id" = String, Path), SamlStartParams),
    responses((status = 302, description = "To the IdP's single sign-on service"),
              (status = 400, description = "A relay state that is too long (`invalid_relay_state`)", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such organization or no SAML connection", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Rent-auth mode (`external_auth`)", body = Problem, content_type = "application/problem+json")))]
async fn saml_start(
    State(s): State<Services>,
    Path(org): Path<OrgId>,
    Query(p): Query<SamlStartParams>,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    if p.relay_state.as_ref().is_some_and(|r| r.len() > MAX_RELAY_STATE || r.chars().any(char::is_control)) {
        return Err(ApiError::BadRequest {
            code: "invalid_relay_state",
            detail: format!("relay_state is at most {MAX_RELAY_STATE} bytes, no control characters"),
        });
    }
    let config = connection(&s, org).await?;
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| ApiError::Unexpected(anyhow::anyhow!("no randomness")))?;
    let request_id = format!("_{}", random.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let now = chrono::DateTime::from_timestamp_millis(s.clock.now_ms()).unwrap_or_default();
    let instant = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sp = service_provider(&s, org);
    let url = saml::authn_request_url(&sp, &config.idp.sso_url, &request_id, &instant, p.relay_state.as_deref())
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    let item = Item::new(shared::keys::saml_request(&shared::auth::hash_secret(&request_id)))
        .with("org_id", org.to_string())
        .expiring_at(s.clock.now_secs() + REQUEST_TTL_SECS);
    s.store.put(Put::new(item)).await?;
    let location = HeaderValue::from_str(&url).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// The form the IdP's page posts to the assertion consumer service (HTTP-POST binding,
/// [SAMLBind] section 3.5.4). Described for the API document only: the handler reads the
/// raw form, so that its size is checked before anything is decoded.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AcsForm {
    /// The IdP's `Response`, base64.
    #[schema(rename = "SAMLResponse")]
    saml_response: String,
    /// The relay state the login started with, handed back.
    #[schema(rename = "RelayState")]
    relay_state: Option<String>,
}

fn refused(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest { code, detail: detail.into() }
}

/// The assertion consumer service (HTTP-POST binding): verifies the IdP's response and
/// signs the user in (creating them, or linking the identity to the user with that
/// address), returning tokens. Every refusal is audited on the organization's stream as
/// `organization.saml_login_failed`.
#[utoipa::path(post, path = "/auth/saml/{org_id}/acs", tag = "auth",
    params(("org_id" = String, Path)),
    request_body(content = AcsForm, content_type = "application/x-www-form-urlencoded", description = "`SAMLResponse` (base64) and `RelayState`, as the IdP's auto-submitting form posts them"),
    responses((status = 200, body = TokenPair),
              (status = 400, description = "A response that cannot be believed: `saml_malformed`, `saml_dtd_refused`, `saml_encrypted_assertion`, `saml_unsigned`, `saml_signature_invalid`, `saml_wrapping`, `saml_status`, `saml_issuer`, `saml_audience`, `saml_recipient`, `saml_destination`, `saml_expired`, `saml_not_yet_valid`, `saml_subject`, `saml_unknown_request` (not ours, expired or answered already), `saml_unsolicited` (IdP-initiated login not allowed), `saml_replay`; `invalid_path` (an organization id that is no id)", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "`domain_not_allowed`, `domain_not_verified`, `email_not_verified` (no address in the assertion), `sso_required` (another organization's)", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such organization or no SAML connection", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Rent-auth mode (`external_auth`)", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "Too many refused responses from this client address (50 in 15 minutes)", body = Problem, content_type = "application/problem+json")))]
async fn acs(
    State(s): State<Services>,
    ctx: RequestContext,
    Path(org): Path<OrgId>,
    body: Bytes,
) -> Result<Response, ApiError> {
    own_auth(&s)?;
    let config = connection(&s, org).await?;
    // Counted before the response is read, so a flood of forged responses (the login URL,
    // and so the organization's id, is public) stops before it fills the organization's
    // audit stream; an accepted response takes its count back.
    let store = s.store.as_ref();
    let attempt = rate_limit::claim(store, SAML_FAILURES_PER_IP, &client_key(&ctx), s.clock.now_ms()).await?;
    let assertion = match consume(&s, org, &config, &body).await {
        Ok(a) => a,
        Err(e) => {
            if let ApiError::BadRequest { code, .. } = &e {
                failed(&s, org, &ctx, code, None).await;
            }
            return Err(e);
        }
    };
    match sign_in(&s, org, &config, &assertion, &ctx).await {
        Ok(pair) => {
            attempt.release(store).await?;
            // A token answer is never cached (RFC 6749 section 5.1), least of all by a browser.
            Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(pair)).into_response())
        }
        Err(e) => {
            if let ApiError::ForbiddenBecause { code, .. } | ApiError::Invalid { code, .. } = &e {
                failed(&s, org, &ctx, code, Some(&assertion.name_id)).await;
            }
            Err(e)
        }
    }
}

/// Audits a refused login on the organization's stream. `name_id` only once the signature
/// verified: before that, the subject is whatever the sender wrote.
async fn failed(s: &Services, org: OrgId, ctx: &RequestContext, code: &str, name_id: Option<&str>) {
    tracing::warn!(org = %org, code, "SAML response refused");
    let event = NewEvent::new(Actor::System, AuditAction::OrganizationSamlLoginFailed, ctx.origin())
        .target(org)
        .detail(json!({
            "method": "saml", "reason": code, "name_id": name_id,
        }));
    if let Err(e) = s.audit(AuditStream::Organization(org), event).await {
        tracing::error!(error = %e, "could not audit a refused SAML login");
    }
}

/// Reads the form, verifies the response and spends its single-use parts.
async fn consume(s: &Services, org: OrgId, config: &SamlConfig, body: &[u8]) -> Result<VerifiedAssertion, ApiError> {
    if body.len() > saml::MAX_RESPONSE_BYTES + 4096 {
        return Err(refused("saml_malformed", "the form is too large"));
    }
    let encoded = form_urlencoded::parse(body)
        .find(|(k, _)| k == "SAMLResponse")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| refused("saml_malformed", "the form has no SAMLResponse"))?;
    let (sp, idp) = (service_provider(s, org), config.idp.clone());
    let (now_ms, require_signed_assertion) = (s.clock.now_ms(), config.require_signed_assertion);
    // Parsing and signature checks are CPU work on untrusted input: off the async workers,
    // so a slow response never stalls other requests.
    let verified = tokio::task::spawn_blocking(move || {
        let expectations = Expectations { idp: &idp, sp: &sp, now_ms, require_signed_assertion };
        saml::verify_response(&encoded, &expectations)
    })
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))?;
    let assertion = verified.map_err(|e| refused(e.code, e.detail))?;
    match &assertion.in_response_to {
        Some(request) => {
            // Spent only by the organization that sent it: another organization's ACS
            // cannot cancel a login in progress by naming its request.
            let key = shared::keys::saml_request(&shared::auth::hash_secret(request));
            let ours = Condition::Equals("org_id".into(), json!(org.to_string()));
            match s.store.delete(Delete::new(key).when(ours)).await {
                Ok(_) => {}
                Err(e) if e.is_condition_failure() => {
                    return Err(refused(
                        "saml_unknown_request",
                        "the response answers no login in progress here (expired, answered already, or not ours)",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        None if !config.allow_idp_initiated => {
            return Err(refused(
                "saml_unsolicited",
                "this organization does not accept IdP-initiated logins: start at its login URL instead",
            ));
        }
        None => {}
    }
    let skew_secs = saml::CLOCK_SKEW_MS / 1000;
    let marker = Item::new(shared::keys::saml_assertion(org, &shared::auth::hash_secret(&assertion.id)))
        .with("seen_at_ms", s.clock.now_ms())
        .expiring_at(assertion.not_on_or_after_ms / 1000 + skew_secs + 1);
    match s.store.put(Put::new(marker).if_not_exists()).await {
        Ok(_) => Ok(assertion),
        Err(e) if e.is_condition_failure() => Err(refused("saml_replay", "this assertion was used already")),
        Err(e) => Err(e.into()),
    }
}

/// Signs in the user the assertion names, under the organization's rules (allowed or
/// verified domain, `sso_required` elsewhere, just-in-time membership).
async fn sign_in(
    s: &Services,
    org: OrgId,
    config: &SamlConfig,
    assertion: &VerifiedAssertion,
    ctx: &RequestContext,
) -> Result<TokenPair, ApiError> {
    // Identities are namespaced by organization: an entity id is only a string an admin
    // typed, so one organization's IdP must never speak for another's users.
    let identity = oidc::Identity {
        issuer: format!("saml:{org}:{}", config.idp.entity_id),
        subject: assertion.subject(),
        email: assertion.email().map(str::to_owned),
        name: assertion.display_name(),
    };
    let provider = format!("saml-{org}");
    let rules = Some((org, config.allowed_domains.as_slice()));
    let user = sso_user(s, "saml", &provider, rules, &identity, ctx).await?;
    if let Some(required) = tenancy::domains::sso_required(s.store.as_ref(), user.email.as_str()).await?
        && required != org
    {
        return Err(tenancy::domains::sso_required_error(required));
    }
    oidc::join_jit(s, org, (config.jit_account_id, config.jit_role), user.id).await?;
    let pair = sessions::start_with(s, user.id, ctx, false, Some(org)).await?;
    let detail = json!({"method": "saml", "provider": provider, "idp_initiated": assertion.in_response_to.is_none()});
    sessions::record(s, user.id, AuditAction::UserLoggedIn, Some(pair.session_id.clone()), ctx, detail).await?;
    Ok(pair)
}
