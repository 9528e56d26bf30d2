//! The audit vocabulary: every action Groundwork records, as `noun.verb`. This list is the
//! catalogue a SOC 2 reviewer reads (CC6.1 logical access, CC6.2 user registration and
//! removal, CC6.3 role changes, CC7.2 monitoring of security events): each variant says what
//! happened, in which stream it is written and what `target` names.

macro_rules! audit_actions {
    ($($(#[doc = $doc:literal])+ $variant:ident => $name:literal,)+) => {
        /// An audited action. Stored as its string form ([`AuditAction::as_str`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[doc = $doc])+ $variant,)+
            /// An action of the product's own functions, `noun.verb` (`project.created`),
            /// written to the account's stream like Groundwork's; the product keeps its own
            /// catalogue of them, next to its routes.
            Product(&'static str),
        }

        impl AuditAction {
            /// Every action of Groundwork's own, in catalogue order.
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            /// The stored name, `noun.verb`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                    Self::Product(name) => name,
                }
            }
        }
    };
}

audit_actions! {
    // The user's own stream (`user:<id>`).
    /// A user signed up (with a password, or on first sign-in through a provider); target: the user.
    UserSignedUp => "user.signed_up",
    /// A user confirmed their email address.
    UserEmailVerified => "user.email_verified",
    /// A sign-in succeeded; target: the new session; detail: method, provider or second factor.
    UserLoggedIn => "user.logged_in",
    /// A sign-in failed for a known user; detail: which factor was wrong.
    UserLoginFailed => "user.login_failed",
    /// The password was right and a second factor is now asked for.
    UserPasswordVerified => "user.password_verified",
    /// The user changed their profile.
    UserProfileUpdated => "user.profile_updated",
    /// An identity at an OpenID Connect provider was linked to the user.
    UserIdentityLinked => "user.identity_linked",
    /// The user asked for an export of their data; target: the export.
    UserExportRequested => "user.export_requested",
    /// The user was erased (GDPR); detail: how many memberships went.
    UserErased => "user.erased",
    /// The user ended a session; target: the session.
    SessionLoggedOut => "session.logged_out",
    /// The user ended every session.
    SessionLoggedOutEverywhere => "session.logged_out_everywhere",
    /// The user revoked one session; target: the session.
    SessionRevoked => "session.revoked",
    /// A used refresh token was presented again: the session was revoked; target: the session.
    SessionRefreshTokenReused => "session.refresh_token_reused",
    /// A password reset link was requested.
    PasswordResetRequested => "password.reset_requested",
    /// The password was reset through an emailed link; every session ended.
    PasswordReset => "password.reset",
    /// The password was changed; every other session ended.
    PasswordChanged => "password.changed",
    /// A password change was refused (wrong current password).
    PasswordChangeFailed => "password.change_failed",
    /// TOTP two-factor authentication was enabled.
    MfaEnabled => "mfa.enabled",
    /// TOTP two-factor authentication was disabled.
    MfaDisabled => "mfa.disabled",
    /// Disabling two-factor authentication was refused.
    MfaDisableFailed => "mfa.disable_failed",

    // An account's stream (`account:<id>`).
    /// The account was created.
    AccountCreated => "account.created",
    /// Its name or settings changed.
    AccountUpdated => "account.updated",
    /// It was soft-deleted.
    AccountDeleted => "account.deleted",
    /// It was restored within the retention window.
    AccountRestored => "account.restored",
    /// Ownership passed to another member; target: the new owner.
    AccountOwnershipTransferred => "account.ownership_transferred",
    /// An export of the account's data was asked for; target: the export.
    AccountExportRequested => "account.export_requested",
    /// The account joined an organization; target: the organization.
    AccountAttachedToOrganization => "account.attached_to_organization",
    /// The account left its organization; target: the organization.
    AccountDetachedFromOrganization => "account.detached_from_organization",
    /// A member's role changed; target: the member.
    MemberRoleChanged => "member.role_changed",
    /// A member was removed; target: the member.
    MemberRemoved => "member.removed",
    /// A member left.
    MemberLeft => "member.left",
    /// A member was erased with their user; target: the member.
    MemberErased => "member.erased",
    /// A user joined through enterprise SSO (just-in-time membership); target: the user.
    MemberJoinedViaSso => "member.joined_via_sso",
    /// Directory sync changed a membership (actor `scim_directory`); target: the
    /// user; detail: the role granted (null when removed), the organization.
    MemberSyncedFromDirectory => "member.synced_from_directory",
    /// A user joined through their verified domain's automatic invitation; target: the
    /// user; detail: role, organization, domain.
    MemberJoinedViaDomain => "member.joined_via_domain",
    /// A user at a verified domain asked to join (automatic suggestion); target: the user.
    JoinRequestCreated => "join_request.created",
    /// An admin approved a request to join; target: the user; detail: role.
    JoinRequestApproved => "join_request.approved",
    /// An admin declined a request to join; target: the user.
    JoinRequestDeclined => "join_request.declined",
    /// Someone was invited; target: the invitation.
    InvitationCreated => "invitation.created",
    /// An invitation was sent again with a new link; target: the invitation.
    InvitationResent => "invitation.resent",
    /// An invitation was revoked; target: the invitation.
    InvitationRevoked => "invitation.revoked",
    /// An invitation was accepted; target: the invitation.
    InvitationAccepted => "invitation.accepted",
    /// An API key was created; target: the key.
    ApiKeyCreated => "api_key.created",
    /// An API key was revoked; target: the key.
    ApiKeyRevoked => "api_key.revoked",
    /// A webhook endpoint was registered; target: the endpoint; detail: its event types.
    WebhookEndpointCreated => "webhook_endpoint.created",
    /// A webhook endpoint's URL, event types, description or enabled flag changed; target: the endpoint.
    WebhookEndpointUpdated => "webhook_endpoint.updated",
    /// A webhook endpoint was deleted; target: the endpoint.
    WebhookEndpointDeleted => "webhook_endpoint.deleted",
    /// A webhook endpoint's signing secret was rotated; target: the endpoint; detail: until when the old one signs.
    WebhookSecretRotated => "webhook_endpoint.secret_rotated",
    /// Messages were sent again to a webhook endpoint; target: the endpoint; detail: what was replayed.
    WebhookMessagesReplayed => "webhook_endpoint.replayed",
    /// Groundwork disabled a webhook endpoint that kept failing; target: the endpoint.
    WebhookEndpointDisabled => "webhook_endpoint.disabled",
    /// A Checkout session was started.
    BillingCheckoutStarted => "billing.checkout_started",
    /// The plan changed at once (an upgrade).
    BillingPlanChanged => "billing.plan_changed",
    /// A downgrade was scheduled for the period end.
    BillingDowngradeScheduled => "billing.downgrade_scheduled",
    /// The subscription was set to end at the period end.
    BillingCancelScheduled => "billing.cancel_scheduled",
    /// A scheduled cancellation was withdrawn.
    BillingResumed => "billing.resumed",
    /// The entitlements derived from Stripe's state changed; detail: from, to, status.
    BillingEntitlementsChanged => "billing.entitlements_changed",
    /// The subscription of a deleted account was cancelled at the period end.
    BillingCancelledWithAccount => "billing.cancelled_with_account",
    /// A feature flag was overridden for the account (operators); target: the flag.
    FlagOverrideSet => "flag.override_set",
    /// A flag override was removed (operators); target: the flag.
    FlagOverrideRemoved => "flag.override_removed",

    // An organization's stream (`org:<id>`).
    /// An organization was created.
    OrganizationCreated => "organization.created",
    /// An account joined it.
    OrganizationAccountAttached => "organization.account_attached",
    /// An account left it.
    OrganizationAccountDetached => "organization.account_detached",
    /// An organization admin was added.
    OrganizationAdminAdded => "organization.admin_added",
    /// An organization admin was removed.
    OrganizationAdminRemoved => "organization.admin_removed",
    /// Its SSO settings changed; detail: issuer and client id (never the secret).
    OrganizationSsoConfigured => "organization.sso_configured",
    /// Its SAML connection changed; detail: the IdP's entity id, its certificates' SHA-256
    /// fingerprints, whether IdP-initiated logins are accepted.
    OrganizationSamlConfigured => "organization.saml_configured",
    /// Its SAML connection was removed.
    OrganizationSamlRemoved => "organization.saml_removed",
    /// A SAML login through it was refused; detail: `reason` (the problem code).
    OrganizationSamlLoginFailed => "organization.saml_login_failed",
    /// A domain was claimed; target: the domain.
    OrganizationDomainAdded => "organization.domain_added",
    /// A domain's settings changed (enrollment mode, account, role, SSO requirement);
    /// target: the domain; detail: the new settings.
    OrganizationDomainUpdated => "organization.domain_updated",
    /// A domain claim was removed (and its ownership released); target: the domain.
    OrganizationDomainRemoved => "organization.domain_removed",
    /// A domain's TXT record was found: the organization holds it (system); target: the domain.
    OrganizationDomainVerified => "organization.domain_verified",
    /// A domain check did not verify it (system); target: the domain; detail: `result`
    /// (`record_not_found`, `claimed_by_another_organization`, `lookup_failed`).
    OrganizationDomainCheckFailed => "organization.domain_check_failed",
    /// A SCIM directory token was issued or rotated (the previous one stops working);
    /// detail: the new token's visible prefix.
    OrganizationScimTokenRotated => "organization.scim_token_rotated",
    /// The SCIM directory's settings changed; detail: default account and role, group mappings.
    OrganizationScimConfigured => "organization.scim_configured",
    /// The SCIM directory was switched off (its token revoked, its users and groups forgotten).
    OrganizationScimDisabled => "organization.scim_disabled",
    /// The identity provider created a user (actor `scim_directory`); target: the SCIM id;
    /// detail: the linked user, if any.
    ScimUserCreated => "scim.user_created",
    /// The identity provider changed a user; target: the SCIM id; detail: active, linked user.
    ScimUserUpdated => "scim.user_updated",
    /// The identity provider deactivated or deleted a user: their memberships in the
    /// organization's accounts ended and their sessions were revoked; target: the SCIM id;
    /// detail: the linked user, the accounts left, the sessions ended.
    ScimUserDeprovisioned => "scim.user_deprovisioned",
    /// The identity provider deleted a user; target: the SCIM id.
    ScimUserDeleted => "scim.user_deleted",
    /// The identity provider created, changed or deleted a group; target: the SCIM id;
    /// detail: its name, its member count, `deleted`.
    ScimGroupChanged => "scim.group_changed",

    // The operators' stream (`ops`).
    /// A flag definition was created or changed; target: the flag.
    FlagChanged => "flag.changed",
    /// A flag definition was deleted; target: the flag.
    FlagDeleted => "flag.deleted",
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    #[test]
    fn names_are_unique_and_noun_dot_verb() {
        let mut seen = std::collections::BTreeSet::new();
        for a in AuditAction::ALL {
            let name = a.as_str();
            assert!(seen.insert(name), "{name} twice");
            let (noun, verb) = name.split_once('.').expect("noun.verb");
            assert!(
                !noun.is_empty()
                    && !verb.is_empty()
                    && name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            );
        }
    }
}
