//! An organization's SAML connection, as its admins set it up: the identity provider from a
//! metadata URL (fetched through the guarded client), uploaded metadata XML, or entered by
//! hand; who may sign in through it; and what to enter at the IdP (our entity id, assertion
//! consumer service URL and metadata URL). The login routes are the auth function's.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::AuthUser;
use shared::auth::saml::{self, IdpMetadata, SamlError};
use shared::error::{ApiError, Problem};
use shared::http::{Json, Path, RequestContext};
use shared::id::OrgId;
use shared::keys;
use shared::services::Services;
use shared::store::{Item, Put};
use shared::tenancy::Role;
use shared::tenancy::saml_connection::{self, SamlConfig};

use crate::orgs::{invalid, jit_rule, load_as_admin, record, sso_domains};

/// How long fetching an IdP's metadata may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// An organization's SAML settings. Give the IdP by exactly one of `metadata_url`,
/// `metadata_xml`, or `entity_id` + `sso_url` + `certificates`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlRequest {
    /// The IdP's metadata URL (`https`, public address; read again on every `PUT`, which is
    /// how a certificate rollover is picked up).
    #[schema(max_length = 1000)]
    pub metadata_url: Option<String>,
    /// The IdP's metadata document, uploaded.
    #[schema(max_length = 524_288)]
    pub metadata_xml: Option<String>,
    /// By hand: the IdP's entity id (its `Issuer`).
    #[schema(max_length = 1024)]
    pub entity_id: Option<String>,
    /// By hand: its single sign-on URL (HTTP-Redirect binding).
    #[schema(max_length = 1000)]
    pub sso_url: Option<String>,
    /// By hand: its signing certificates, PEM or base64 DER (1 to 5; two during a rollover).
    #[schema(max_items = 5)]
    pub certificates: Option<Vec<String>>,
    /// Email domains allowed to sign in (1 to 50).
    #[schema(min_items = 1, max_items = 50)]
    pub allowed_domains: Vec<String>,
    /// An account of the organization that users join on first sign-in.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub jit_account_id: Option<String>,
    /// Their role there (default `member`; never `owner`).
    #[schema(value_type = Option<crate::GrantableRole>)]
    pub jit_role: Option<Role>,
    /// Accept IdP-initiated logins (from the IdP's dashboard). Default false.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Require the assertion itself to be signed, not only the response. Default false.
    #[serde(default)]
    pub require_signed_assertion: bool,
}

/// A signing certificate as shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateView {
    /// Its SHA-256 fingerprint (hex, colon-separated), as IdP consoles show it.
    pub sha256_fingerprint: String,
}

/// An organization's SAML settings as its admins see them, with what to enter at the IdP.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SamlView {
    /// The IdP's entity id.
    pub idp_entity_id: String,
    /// The IdP's single sign-on URL.
    pub idp_sso_url: String,
    /// The IdP's signing certificates.
    pub idp_certificates: Vec<CertificateView>,
    /// Where the IdP's metadata is read from, if given by URL.
    pub metadata_url: Option<String>,
    /// Allowed email domains.
    pub allowed_domains: Vec<String>,
    /// The account users join on first sign-in.
    pub jit_account_id: Option<String>,
    /// Their role there.
    pub jit_role: Role,
    /// Whether IdP-initiated logins are accepted.
    pub allow_idp_initiated: bool,
    /// Whether the assertion itself must be signed.
    pub require_signed_assertion: bool,
    /// For the IdP: our entity id ("Audience URI", "Identifier (Entity ID)").
    pub sp_entity_id: String,
    /// For the IdP: our assertion consumer service ("Single sign-on URL", "Reply URL (ACS URL)").
    pub acs_url: String,
    /// For the IdP: our metadata (the same URL as the entity id).
    pub sp_metadata_url: String,
    /// Where users start a login (HTTP-Redirect to the IdP).
    pub login_url: String,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
}

fn fingerprint(certificate: &str) -> String {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(certificate).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn view(s: &Services, org: OrgId, c: &SamlConfig) -> SamlView {
    let api = &s.config.server.api_url;
    SamlView {
        idp_entity_id: c.idp.entity_id.clone(),
        idp_sso_url: c.idp.sso_url.clone(),
        idp_certificates: c
            .idp
            .certificates
            .iter()
            .map(|cert| CertificateView { sha256_fingerprint: fingerprint(cert) })
            .collect(),
        metadata_url: c.metadata_url.clone(),
        allowed_domains: c.allowed_domains.clone(),
        jit_account_id: c.jit_account_id.map(|a| a.to_string()),
        jit_role: c.jit_role,
        allow_idp_initiated: c.allow_idp_initiated,
        require_signed_assertion: c.require_signed_assertion,
        sp_entity_id: saml_connection::sp_entity_id(api, org),
        acs_url: saml_connection::acs_url(api, org),
        sp_metadata_url: saml_connection::sp_entity_id(api, org),
        login_url: format!("{api}/auth/saml/{org}/start"),
        updated_at_ms: c.updated_at_ms,
    }
}

fn metadata_error(e: SamlError) -> ApiError {
    ApiError::Invalid { code: e.code, detail: e.detail }
}

/// Reads the IdP's metadata from `url`: `https` on a public address (checked after DNS),
/// no redirects, at most [`saml::MAX_METADATA_BYTES`], within ten seconds.
async fn fetch_metadata(s: &Services, url: &str) -> Result<IdpMetadata, ApiError> {
    let unreachable =
        |why: String| invalid("metadata_unreachable", &format!("the metadata URL could not be read: {why}"));
    if url.chars().count() > 1000 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("invalid_metadata_url", "the metadata URL is at most 1000 characters, no spaces"));
    }
    let checked = shared::outbound::check_configured(url, s.config.outbound)
        .await
        .map_err(|r| invalid("invalid_metadata_url", &format!("the metadata URL must be a public https URL: {r}")))?;
    let client = shared::outbound::guarded(METADATA_TIMEOUT, s.config.outbound).map_err(ApiError::Unexpected)?;
    let response = client.get(checked).send().await.map_err(|e| match shared::outbound::refused_by_guard(&e) {
        Some(r) => invalid("invalid_metadata_url", &format!("the metadata URL must be a public https URL: {r}")),
        None => unreachable(e.without_url().to_string()),
    })?;
    if !response.status().is_success() {
        return Err(unreachable(format!("it answered {}", response.status().as_u16())));
    }
    let body = shared::outbound::read_capped(response, saml::MAX_METADATA_BYTES + 1)
        .await
        .map_err(|e| unreachable(e.without_url().to_string()))?;
    if body.len() > saml::MAX_METADATA_BYTES {
        return Err(invalid("invalid_metadata", "the metadata is larger than 512 KiB"));
    }
    let text = String::from_utf8(body).map_err(|_| invalid("invalid_metadata", "the metadata is not UTF-8"))?;
    saml::parse_idp_metadata(&text).map_err(metadata_error)
}

fn by_hand(entity_id: &str, sso_url: &str, certificates: &[String]) -> Result<IdpMetadata, ApiError> {
    let entity_id = entity_id.trim();
    if entity_id.is_empty() || entity_id.len() > 1024 || entity_id.chars().any(char::is_control) {
        return Err(invalid("invalid_metadata", "entity_id is 1 to 1024 characters"));
    }
    let url = url::Url::parse(sso_url.trim()).map_err(|_| invalid("invalid_metadata", "sso_url is not a URL"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid("invalid_metadata", "sso_url is an http(s) URL"));
    }
    if certificates.is_empty() || certificates.len() > saml::MAX_CERTIFICATES {
        return Err(invalid("invalid_certificate", "give 1 to 5 signing certificates"));
    }
    let certificates = certificates
        .iter()
        .map(|c| saml::normalize_certificate(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(metadata_error)?;
    Ok(IdpMetadata { entity_id: entity_id.to_owned(), sso_url: url.into(), certificates })
}

/// Sets the organization's SAML connection (its admins). The response says what to enter
/// at the IdP.
#[utoipa::path(put, path = "/organizations/{org_id}/saml", tag = "tenancy", request_body = SamlRequest,
    security(("bearer" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = SamlView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "An allowed domain another organization verified (`domain_claimed`)", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Metadata that cannot be used (`invalid_metadata`, `invalid_certificate`, `saml_dtd_refused`), a metadata URL refused or unreadable (`invalid_metadata_url`, `metadata_unreachable`), not exactly one way of giving the IdP (`invalid_request`), a free mail domain (`shared_mail_domain`), a domain that is no domain name (`invalid_domain`), an account that is not the organization's (`invalid_account`), the `owner` role (`invalid_role`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_saml(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(id): Path<OrgId>,
    Json(req): Json<SamlRequest>,
) -> Result<Json<SamlView>, ApiError> {
    let (mut org, version) = load_as_admin(&s, id, caller.user_id).await?;
    let manual = req.entity_id.is_some() || req.sso_url.is_some() || req.certificates.is_some();
    let idp = match (&req.metadata_url, &req.metadata_xml, manual) {
        (Some(url), None, false) => fetch_metadata(&s, url.trim()).await?,
        (None, Some(xml), false) => saml::parse_idp_metadata(xml).map_err(metadata_error)?,
        (None, None, true) => {
            let (Some(entity_id), Some(sso_url), Some(certificates)) =
                (&req.entity_id, &req.sso_url, &req.certificates)
            else {
                return Err(invalid("invalid_request", "by hand, give entity_id, sso_url and certificates"));
            };
            by_hand(entity_id, sso_url, certificates)?
        }
        _ => {
            return Err(invalid(
                "invalid_request",
                "give the IdP by exactly one of metadata_url, metadata_xml, or entity_id + sso_url + certificates",
            ));
        }
    };
    let allowed_domains = sso_domains(&s, id, &req.allowed_domains).await?;
    let (jit_account_id, jit_role) = jit_rule(&s, id, req.jit_account_id.as_deref(), req.jit_role).await?;
    let config = SamlConfig {
        idp,
        metadata_url: req.metadata_url.map(|u| u.trim().to_owned()),
        allow_idp_initiated: req.allow_idp_initiated,
        require_signed_assertion: req.require_signed_assertion,
        allowed_domains,
        jit_account_id,
        jit_role,
        updated_at_ms: s.clock.now_ms(),
    };
    org.saml = Some(config.clone());
    let mut item = Item::from_record(keys::organization(id), &org)?;
    item.version = version;
    s.store.put(Put::new(item).if_unchanged()).await?;
    let detail = json!({
        "idp_entity_id": config.idp.entity_id,
        "certificates": config.idp.certificates.iter().map(|c| fingerprint(c)).collect::<Vec<_>>(),
        "allow_idp_initiated": config.allow_idp_initiated,
    });
    record(&s, id, caller.user_id, AuditAction::OrganizationSamlConfigured, &ctx, detail).await?;
    Ok(Json(view(&s, id, &config)))
}

/// The organization's SAML connection (its admins).
#[utoipa::path(get, path = "/organizations/{org_id}/saml", tag = "tenancy", security(("bearer" = [])),
    params(("org_id" = String, Path)),
    responses((status = 200, body = SamlView), (status = 404, description = "No such organization, or no SAML connection", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_saml(
    State(s): State<Services>,
    caller: AuthUser,
    Path(id): Path<OrgId>,
) -> Result<Json<SamlView>, ApiError> {
    let (org, _) = load_as_admin(&s, id, caller.user_id).await?;
    let config = org.saml.ok_or(ApiError::NotFound)?;
    Ok(Json(view(&s, id, &config)))
}

/// Removes the organization's SAML connection: its users no longer sign in through it
/// (their sessions stay). Idempotent.
#[utoipa::path(delete, path = "/organizations/{org_id}/saml", tag = "tenancy", security(("bearer" = [])),
    params(("org_id" = String, Path)),
    responses((status = 204, description = "Removed (or there was none)"), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "A verified domain requires single sign-on and this is the organization's only connection (`sso_required_by_domain`)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete_saml(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Path(id): Path<OrgId>,
) -> Result<StatusCode, ApiError> {
    let (mut org, version) = load_as_admin(&s, id, caller.user_id).await?;
    if org.saml.take().is_none() {
        return Ok(StatusCode::NO_CONTENT);
    }
    if org.sso.is_none()
        && let Some(domain) = crate::domains::requiring_sso(&s, id).await?
    {
        return Err(ApiError::Conflict {
            code: "sso_required_by_domain",
            detail: format!(
                "{domain} requires single sign-on: turn require_sso off first, or set up OpenID Connect SSO"
            ),
        });
    }
    let mut item = Item::from_record(keys::organization(id), &org)?;
    item.version = version;
    s.store.put(Put::new(item).if_unchanged()).await?;
    record(&s, id, caller.user_id, AuditAction::OrganizationSamlRemoved, &ctx, json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}
