//! Verified domains: an organization claims an email domain and proves it holds it with a
//! DNS TXT record; once verified, the domain decides what happens to people whose proven
//! address is at it (the enrollment mode, after Clerk's Verified Domains) and may require
//! them to sign in through the organization's identity provider.
//!
//! - `ORG#<org>` / `DOMAIN#<domain>`: the [`DomainClaim`], pending or verified. Several
//!   organizations may claim one domain;
//! - `DOMAIN#<domain>` / `OWNER`: the organization that verified it. It is created only if
//!   absent, in the transaction that marks the claim verified, so the first to verify wins
//!   and every later check is told the domain is taken.
//!
//! The proof is a TXT record `_groundwork-verification.<domain>` holding
//! `groundwork-verification=<token>` (an underscored name, RFC 8552, so it cannot collide
//! with a host). It is looked up by the worker ([`crate::jobs::Job::VerifyDomain`]), at the
//! name server `GROUNDWORK_DNS_RESOLVER` names, or the system's.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{Actor, AuditAction, AuditStream, NewEvent, Origin};
use crate::id::{AccountId, OrgId};
use crate::jobs::{JobError, JobOutcome};
use crate::keys;
use crate::services::Services;
use crate::store::{Item, Put, Store, StoreError, StoreExt as _, TxOp};
use crate::tenancy::Role;

/// The label of the TXT record, under the claimed domain.
pub const RECORD_LABEL: &str = "_groundwork-verification";
/// What the TXT record's value starts with; the claim's token follows.
pub const VALUE_PREFIX: &str = "groundwork-verification=";
/// How many domains one organization may claim.
pub const MAX_PER_ORGANIZATION: usize = 50;

/// Domain verification settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct DomainsConfig {
    /// `GROUNDWORK_DNS_RESOLVER`: the name server TXT records are asked of, `ip:port`
    /// (default: the system's, from `/etc/resolv.conf`). Tests point it at a loopback server.
    #[serde(rename = "dns_resolver", default)]
    pub dns_resolver: Option<SocketAddr>,
}

impl DomainsConfig {
    /// From `GROUNDWORK_DNS_RESOLVER`.
    ///
    /// # Errors
    /// A value that is not `ip:port`.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        env.area("GROUNDWORK_")
    }
}

/// What happens to a user whose verified address is at a verified domain (Clerk's Verified
/// Domains' three modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentMode {
    /// Nothing automatic: members join by invitation only.
    #[default]
    ManualInvitation,
    /// They are invited to the domain's account: they join it when they accept.
    AutomaticInvitation,
    /// They are offered to ask to join; an admin of the account approves.
    AutomaticSuggestion,
}

/// Where a claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    /// Waiting for its TXT record to be found.
    Pending,
    /// Proven: this organization holds the domain.
    Verified,
}

/// What the last DNS check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// The record holds the claim's token.
    Verified,
    /// No TXT record at the name holds the token (yet: DNS changes take a while to show).
    RecordNotFound,
    /// The record is there, but another organization verified the domain first.
    ClaimedByAnotherOrganization,
    /// The name server failed or did not answer (not retried: ask again).
    LookupFailed,
}

/// One DNS check of a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DomainCheck {
    /// When (Unix ms).
    pub at_ms: i64,
    /// What it found.
    pub result: CheckResult,
}

/// An organization's claim of an email domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DomainClaim {
    /// The organization.
    #[schema(value_type = String)]
    pub org_id: OrgId,
    /// The domain, in its ASCII form (UTS #46), lowercase.
    pub domain: String,
    /// What the TXT record must hold after [`VALUE_PREFIX`]. Not a secret: it is published
    /// in DNS, and only proves control of the zone.
    pub token: String,
    /// Pending or verified.
    pub status: DomainStatus,
    /// What happens to users at the domain once it is verified.
    pub enrollment_mode: EnrollmentMode,
    /// The account automatic invitations and suggestions are for (one of the
    /// organization's).
    #[schema(value_type = Option<String>)]
    pub account_id: Option<AccountId>,
    /// The role they get there.
    pub role: Role,
    /// Whether addresses at the domain must sign in through the organization's single
    /// sign-on (password and social sign-in are refused for them).
    pub require_sso: bool,
    /// When it was claimed (Unix ms).
    pub created_at_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
    /// When it was verified (Unix ms).
    pub verified_at_ms: Option<i64>,
    /// The last DNS check.
    pub last_check: Option<DomainCheck>,
}

impl DomainClaim {
    /// The TXT record's name, fully qualified.
    pub fn record_name(&self) -> String {
        format!("{RECORD_LABEL}.{}", self.domain)
    }

    /// The TXT record's value.
    pub fn record_value(&self) -> String {
        format!("{VALUE_PREFIX}{}", self.token)
    }
}

/// Why a domain cannot be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unclaimable {
    /// Not a domain name.
    #[error("not a domain name like example.com")]
    Malformed,
    /// A free mail or disposable mail service: its addresses belong to anyone.
    #[error("addresses at free or disposable mail services belong to anyone: claim your organization's own domain")]
    SharedMail,
}

/// `raw` as domains are compared (the ASCII form addresses are stored in, see
/// `EmailAddress::parse`): UTS #46, lowercase, no trailing dot.
///
/// # Errors
/// [`Unclaimable::Malformed`] when it is not a domain name of at least two labels.
pub fn normalize(raw: &str) -> Result<String, Unclaimable> {
    let d = idna::domain_to_ascii(raw.trim().trim_end_matches('.')).map_err(|_| Unclaimable::Malformed)?;
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    // An all-digit last label is an IPv4 address, not a name mail can be addressed at.
    let numeric_tld = d.rsplit('.').next().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()));
    if d.len() > 253 || !d.contains('.') || !labels_ok || numeric_tld {
        return Err(Unclaimable::Malformed);
    }
    Ok(d)
}

/// `raw` lowercase, if it is a domain name in its ASCII form as given (letters, digits,
/// hyphens and dots; no surrounding spaces, no trailing dot): the one spelling the domain
/// routes take, in a body or a path.
///
/// # Errors
/// [`Unclaimable::Malformed`].
pub fn ascii_form(raw: &str) -> Result<String, Unclaimable> {
    if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') || raw.ends_with('.') {
        return Err(Unclaimable::Malformed);
    }
    normalize(raw)
}

/// `raw`, lowercase, if an organization may claim it: a domain name in its
/// [`ascii_form`], not a free mail or disposable service (the maintained lists of [`crate::auth::email_policy`]).
///
/// # Errors
/// [`Unclaimable`].
#[cfg(feature = "email-domains")]
pub fn claimable(raw: &str) -> Result<String, Unclaimable> {
    let d = ascii_form(raw)?;
    if crate::auth::email_policy::is_free_mail(&d) {
        return Err(Unclaimable::SharedMail);
    }
    Ok(d)
}

/// The domain of an address (as stored: ASCII, lowercase).
pub fn of_email(email: &str) -> &str {
    email.rsplit('@').next().unwrap_or_default()
}

/// The organization that verified `domain`, if any.
///
/// # Errors
/// When the store fails.
pub async fn owner(store: &dyn Store, domain: &str) -> Result<Option<OrgId>, StoreError> {
    let item = store.get(&keys::domain_owner(domain)).await?;
    Ok(item.and_then(|i| i.data.get("org_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok())))
}

/// The verified claim of the domain of `email`, if an organization verified it.
///
/// # Errors
/// When the store fails.
pub async fn verified_for_email(store: &dyn Store, email: &str) -> Result<Option<DomainClaim>, StoreError> {
    let domain = of_email(email);
    let Some(org) = owner(store, domain).await? else { return Ok(None) };
    let claim: Option<DomainClaim> = store.get_record(&keys::org_domain(org, domain)).await?;
    Ok(claim.filter(|c| c.status == DomainStatus::Verified))
}

/// The organization whose single sign-on `email` must use, when its domain is verified
/// with "require SSO" by an organization that has SSO (OpenID Connect or SAML) configured.
///
/// # Errors
/// When the store fails.
pub async fn sso_required(store: &dyn Store, email: &str) -> Result<Option<OrgId>, StoreError> {
    let Some(claim) = verified_for_email(store, email).await? else { return Ok(None) };
    if !claim.require_sso {
        return Ok(None);
    }
    Ok(crate::tenancy::org_has_sso(store, claim.org_id).await?.then_some(claim.org_id))
}

/// The 403 a password or social sign-in gets for an address whose domain requires `org`'s
/// single sign-on: code `sso_required`; the detail names the routes that start it (SAML
/// and OpenID Connect: whichever the organization set up).
pub fn sso_required_error(org: OrgId) -> crate::error::ApiError {
    crate::error::ApiError::ForbiddenBecause {
        code: "sso_required",
        detail: format!(
            "your organization requires single sign-on for this address: sign in at /auth/saml/{org}/start (SAML) or /auth/oidc/org-{org}/start (OpenID Connect), whichever it set up"
        ),
    }
}

/// The TXT strings at `name`: empty when the name or its TXT records do not exist.
///
/// # Errors
/// When the name server does not answer, or answers with an error.
pub async fn lookup_txt(config: DomainsConfig, name: &str) -> Result<Vec<String>, anyhow::Error> {
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;

    let builder = match config.dns_resolver {
        Some(at) => Resolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                vec![],
                NameServerConfigGroup::from_ips_clear(&[at.ip()], at.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => Resolver::builder_tokio()?,
    };
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_secs(3);
    options.attempts = 2;
    // A claim is checked when someone asks: a cached "not there" would hide a record just added.
    options.cache_size = 0;
    let resolver = builder.with_options(options).build();
    // Fully qualified: no search domain is appended.
    match resolver.txt_lookup(format!("{name}.")).await {
        Ok(answer) => Ok(answer
            .iter()
            .map(|txt| txt.txt_data().iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
            .collect()),
        Err(e) if absent(&e) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a failed lookup says the records do not exist (NXDOMAIN, or NOERROR with no
/// answer), as opposed to a server that failed (SERVFAIL, REFUSED, no answer at all), which
/// hickory also reports as "no records found".
fn absent(e: &hickory_resolver::ResolveError) -> bool {
    use hickory_resolver::proto::ProtoErrorKind;
    use hickory_resolver::proto::op::ResponseCode;
    match e.proto().map(hickory_resolver::proto::ProtoError::kind) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
            matches!(*response_code, ResponseCode::NXDomain | ResponseCode::NoError)
        }
        _ => false,
    }
}

fn retry(e: impl Into<anyhow::Error>) -> JobError {
    JobError::Retry(e.into())
}

/// The verification job: looks the claim's TXT record up and, when it holds the token,
/// marks the claim verified and the organization the domain's owner, in one transaction
/// that fails if another organization owns it already. Runs any number of times: a removed
/// or verified claim is skipped, and each check is recorded on the claim and in the
/// organization's audit stream. A failed lookup is recorded, not retried.
///
/// # Errors
/// Retryable when the store fails.
pub async fn verify(s: &Services, org: OrgId, domain: &str) -> Result<JobOutcome, JobError> {
    let store = s.store.as_ref();
    let key = keys::org_domain(org, domain);
    let Some(item) = store.get(&key).await.map_err(retry)? else {
        return Ok(JobOutcome::Skipped("the claim was removed".into()));
    };
    let mut claim: DomainClaim = item.record().map_err(|e| JobError::Permanent(e.into()))?;
    if claim.status == DomainStatus::Verified {
        return Ok(JobOutcome::Skipped("verified already".into()));
    }
    let now = s.clock.now_ms();
    let (result, lookup_error) = match lookup_txt(s.config.domains, &claim.record_name()).await {
        Ok(values) if values.iter().any(|v| v.trim() == claim.record_value()) => (CheckResult::Verified, None),
        Ok(_) => (CheckResult::RecordNotFound, None),
        Err(e) => (CheckResult::LookupFailed, Some(e)),
    };
    claim.last_check = Some(DomainCheck { at_ms: now, result });
    claim.updated_at_ms = now;
    let mut ops = Vec::new();
    if result == CheckResult::Verified {
        claim.status = DomainStatus::Verified;
        claim.verified_at_ms = Some(now);
        let owner = Item::new(keys::domain_owner(domain)).with("org_id", org.to_string()).with("verified_at_ms", now);
        ops.push(TxOp::Put(Put::new(owner).if_not_exists()));
    }
    let mut updated = Item::from_record(key, &claim).map_err(|e| JobError::Permanent(e.into()))?;
    updated.version = item.version;
    ops.push(TxOp::Put(Put::new(updated).if_unchanged()));
    let result = match store.transact(ops).await {
        Ok(()) => result,
        Err(e) if e.is_condition_failure() && result == CheckResult::Verified => {
            match owner(store, domain).await.map_err(retry)? {
                // Someone else verified it first: this claim stays pending, and says why.
                Some(other) if other != org => {
                    claim.status = DomainStatus::Pending;
                    claim.verified_at_ms = None;
                    claim.last_check =
                        Some(DomainCheck { at_ms: now, result: CheckResult::ClaimedByAnotherOrganization });
                    let mut updated = Item::from_record(keys::org_domain(org, domain), &claim)
                        .map_err(|e| JobError::Permanent(e.into()))?;
                    updated.version = item.version;
                    store.put(Put::new(updated).if_unchanged()).await.map_err(retry)?;
                    CheckResult::ClaimedByAnotherOrganization
                }
                // The claim changed meanwhile (or an earlier run half-finished): check again.
                _ => return Err(retry(e)),
            }
        }
        Err(e) => return Err(retry(e)),
    };
    let action = if result == CheckResult::Verified {
        AuditAction::OrganizationDomainVerified
    } else {
        AuditAction::OrganizationDomainCheckFailed
    };
    let event = NewEvent::new(Actor::System, action, Origin::default())
        .target(domain.to_owned())
        .detail(json!({"result": result}));
    s.audit(AuditStream::Organization(org), event).await.map_err(retry)?;
    match (result, lookup_error) {
        // Recorded and not retried: a tenant's broken zone is theirs to fix, then to check
        // again, and a job retried into the dead-letter queue would page the operators.
        (_, Some(e)) => {
            tracing::warn!(domain, error = format!("{e:#}"), "a domain's TXT lookup failed");
            Ok(JobOutcome::Skipped(format!("the TXT lookup failed: {e:#}")))
        }
        (CheckResult::Verified, None) => Ok(JobOutcome::Done),
        (other, None) => Ok(JobOutcome::Skipped(format!("not verified: {}", json!(other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_compared_in_their_ascii_form() {
        assert_eq!(normalize(" Example.COM. ").unwrap(), "example.com");
        assert_eq!(normalize("bücher.example").unwrap(), "xn--bcher-kva.example");
        for bad in
            ["", "com", "exa mple.com", "-a.com", "a..com", "a_b.com", "1.2.3.4", &format!("{}.com", "a".repeat(64))]
        {
            assert_eq!(normalize(bad), Err(Unclaimable::Malformed), "{bad}");
        }
    }

    #[test]
    #[cfg(feature = "email-domains")]
    fn shared_mail_domains_cannot_be_claimed() {
        assert_eq!(claimable("gmail.com"), Err(Unclaimable::SharedMail));
        assert_eq!(claimable("mailinator.com"), Err(Unclaimable::SharedMail));
        assert_eq!(claimable("Acme-Widgets.example").unwrap(), "acme-widgets.example");
        for not_ascii_form in ["bücher.example", " acme.example", "acme.example."] {
            assert_eq!(claimable(not_ascii_form), Err(Unclaimable::Malformed), "{not_ascii_form}");
        }
    }

    #[test]
    fn the_record_is_under_an_underscored_label() {
        let claim = DomainClaim {
            org_id: OrgId::new(),
            domain: "acme.example".into(),
            token: "abc".into(),
            status: DomainStatus::Pending,
            enrollment_mode: EnrollmentMode::default(),
            account_id: None,
            role: Role::Member,
            require_sso: false,
            created_at_ms: 0,
            updated_at_ms: 0,
            verified_at_ms: None,
            last_check: None,
        };
        assert_eq!(claim.record_name(), "_groundwork-verification.acme.example");
        assert_eq!(claim.record_value(), "groundwork-verification=abc");
    }
}
