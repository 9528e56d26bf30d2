//! SCIM 2.0 directory sync (RFC 7643, RFC 7644): an organization's identity provider
//! (Okta, Entra ID, Google Workspace, OneLogin...) creates, changes and removes the people and
//! groups of the organization's directory, and Groundwork keeps memberships in the
//! organization's accounts in step with it.
//!
//! - [`directory`]: the directory's settings and bearer token, and their admin routes under
//!   `/organizations/{org_id}/scim` (in the API description);
//! - [`protocol`]: the SCIM endpoints under `/scim/v2` that the identity provider calls with
//!   the token (described by SCIM's own discovery endpoints, not the API description);
//! - [`provisioning`]: what a directory change does: linking a directory user to a Groundwork
//!   user at one of the organization's verified domains, memberships from the default
//!   account and the group mappings, and deprovisioning (memberships ended, sessions revoked).
//!
//! The protocol itself (schema, filters, `PATCH`) is `shared::scim`.

pub mod directory;
pub mod protocol;
pub mod provisioning;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::id::{AccountId, ScimId, UserId};
use shared::tenancy::Role;

/// A user or group of a directory, as stored (`ORG#<org>` / `SCIM_USER#<id>` or
/// `SCIM_GROUP#<id>`); the item's version is its ETag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryResource {
    /// The SCIM `id`.
    pub id: ScimId,
    /// The attributes, canonical names, as `shared::scim::schema::normalize` kept them
    /// (`externalId` included).
    pub attributes: Map<String, Value>,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
    /// A user's linked Groundwork user: the user with its email address, at one of the
    /// organization's verified domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The memberships directory sync granted this user (and so may change or end).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub granted: BTreeMap<AccountId, Role>,
}

impl DirectoryResource {
    /// A user's `active` (absent means active: RFC 7643 leaves it to the provider).
    pub fn active(&self) -> bool {
        self.attributes.get("active").and_then(Value::as_bool).unwrap_or(true)
    }

    /// A group's `displayName`.
    pub fn display_name(&self) -> &str {
        self.attributes.get("displayName").and_then(Value::as_str).unwrap_or_default()
    }

    /// A user's `userName`.
    pub fn user_name(&self) -> &str {
        self.attributes.get("userName").and_then(Value::as_str).unwrap_or_default()
    }

    /// A group's member ids.
    pub fn member_ids(&self) -> Vec<String> {
        self.attributes
            .get("members")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}
