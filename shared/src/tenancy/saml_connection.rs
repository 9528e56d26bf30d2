//! An organization's SAML connection: its identity provider (from metadata or entered by
//! hand) and the rules for who may sign in through it, kept on the organization's item
//! (`ORG#<id>` / `ORG`, field `saml`) next to its OIDC settings. The protocol itself is in
//! `crate::auth::saml`; the admin routes are the tenancy function's, the login routes auth's.
//!
//! Items of a login in flight (auth):
//! - `SAML_REQUEST#<sha256 of the AuthnRequest ID>` / `REQUEST`: a request we sent, ten
//!   minutes, deleted by the response that answers it (`InResponseTo` is single use);
//! - `SAML_ASSERTION#<org>#<sha256 of the assertion ID>` / `ASSERTION`: an assertion
//!   consumed, kept until it would have expired, so a replay is refused.

use serde::{Deserialize, Serialize};

use crate::id::{AccountId, OrgId};
use crate::keys;
use crate::store::{Store, StoreError, StoreExt as _};

use super::Role;

/// An identity provider as its metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpMetadata {
    /// Its `entityID`: the `Issuer` of everything it sends.
    pub entity_id: String,
    /// Its single sign-on service for the HTTP-Redirect binding.
    pub sso_url: String,
    /// Its signing certificates (base64 DER), one or several during a rollover.
    pub certificates: Vec<String>,
}

/// An organization's SAML settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlConfig {
    /// The identity provider.
    pub idp: IdpMetadata,
    /// Where its metadata was read from, when it was given by URL (read again on each
    /// `PUT`, which is how a certificate rollover is picked up).
    pub metadata_url: Option<String>,
    /// Accept responses no request of ours asked for (IdP-initiated login, from the IdP's
    /// app dashboard). Off by default: such responses cannot be bound to a browser.
    pub allow_idp_initiated: bool,
    /// Require the assertion itself to be signed, not only the response around it.
    pub require_signed_assertion: bool,
    /// Email domains whose users may sign in through it (a domain another organization
    /// verified is never accepted).
    pub allowed_domains: Vec<String>,
    /// Just-in-time membership: users signing in through it join this account...
    pub jit_account_id: Option<AccountId>,
    /// ...with this role.
    pub jit_role: Role,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
}

/// An organization's SAML settings, if it exists and has them.
///
/// # Errors
/// When the store fails.
pub async fn org_saml(store: &dyn Store, id: OrgId) -> Result<Option<SamlConfig>, StoreError> {
    #[derive(Deserialize)]
    struct OrgSaml {
        #[serde(default)]
        saml: Option<SamlConfig>,
    }
    Ok(store.get_record::<OrgSaml>(&keys::organization(id)).await?.and_then(|o| o.saml))
}

/// Our entity id for an organization (the URL of our metadata for it): what the IdP
/// admin enters as "Audience URI" / "Identifier (Entity ID)".
#[must_use]
pub fn sp_entity_id(api_url: &str, org: OrgId) -> String {
    format!("{api_url}/auth/saml/{org}/metadata")
}

/// Our assertion consumer service for an organization: "Single sign-on URL" / "Reply URL
/// (ACS URL)".
#[must_use]
pub fn acs_url(api_url: &str, org: OrgId) -> String {
    format!("{api_url}/auth/saml/{org}/acs")
}
