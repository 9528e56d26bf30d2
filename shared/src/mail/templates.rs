//! The transactional email templates: each [`Email`] variant names a template and carries
//! its typed variables. Any function queues one ([`crate::jobs::Job::SendEmail`]); only the
//! function that sends email renders it ([`super::render`], with the `mail` feature).

use serde::{Deserialize, Serialize};

/// Every email the system sends, with its variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum Email {
    /// Confirm the address given at sign-up.
    VerifyEmail {
        /// The single-use verification link.
        link: String,
        /// How long the link works.
        expires_in_hours: u32,
    },
    /// Choose a new password.
    PasswordReset {
        /// The single-use reset link.
        link: String,
        /// How long the link works.
        expires_in_minutes: u32,
    },
    /// Join an account.
    Invitation {
        /// Who invited.
        inviter_name: String,
        /// The account (tenant) name.
        account_name: String,
        /// The role offered.
        role: String,
        /// The accept link.
        link: String,
        /// How long the invitation lasts.
        expires_in_days: u32,
    },
    /// The password was changed or reset (a security notice).
    PasswordChanged {
        /// The user's name, if known.
        name: Option<String>,
    },
    /// The password just used to sign in appears in known breaches (Pwned Passwords).
    PasswordBreached {
        /// The user's name, if known.
        name: Option<String>,
    },
    /// The account is ready.
    Welcome {
        /// The user's name, if known.
        name: Option<String>,
    },
    /// The trial ends soon.
    TrialEnding {
        /// The account name.
        account_name: String,
        /// The plan on trial.
        plan_name: String,
        /// The end date, formatted for people.
        trial_ends_on: String,
        /// Where to add a payment method.
        link: String,
    },
    /// A payment failed (dunning).
    PaymentFailed {
        /// The account name.
        account_name: String,
        /// The amount, formatted with its currency.
        amount: String,
        /// The customer portal link.
        link: String,
    },
    /// The plan changed.
    PlanChanged {
        /// The account name.
        account_name: String,
        /// The previous plan.
        old_plan: String,
        /// The new plan.
        new_plan: String,
        /// When it takes effect, formatted for people.
        effective_on: String,
        /// The billing page.
        link: String,
    },
    /// A data export can be downloaded.
    DataExportReady {
        /// What was exported ("your account", "Acme Inc.").
        subject: String,
        /// The time-limited download link.
        link: String,
        /// How long the link works.
        expires_in_hours: u32,
    },
    /// A webhook endpoint kept failing and was disabled.
    WebhookEndpointDisabled {
        /// The account's name.
        account_name: String,
        /// The endpoint's URL.
        url: String,
        /// The account's webhook settings.
        link: String,
    },
    /// A plan limit is nearly used up (to the account's owners, once a month per limit).
    UpgradeSuggested {
        /// The account's name.
        account_name: String,
        /// The limit (`seats`, `projects`).
        limit: String,
        /// In use.
        used: u64,
        /// What the plan allows.
        allowed: u64,
        /// The billing page.
        link: String,
    },
    /// Nobody has used the account for a while (to its owners, once per dormancy).
    AccountDormant {
        /// The account's name.
        account_name: String,
        /// Days since anyone did something in it.
        idle_days: i64,
        /// The account.
        link: String,
    },
    /// Someone at a verified domain asked to join an account (to its owners and admins).
    JoinRequested {
        /// Who asked: their name, or their address.
        requester: String,
        /// Their address.
        email: String,
        /// The account's name.
        account_name: String,
        /// The role approval gives.
        role: String,
        /// The account's requests to join.
        link: String,
    },
}

impl Email {
    /// The template's name (also its file stem).
    pub fn template_name(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::PasswordReset { .. } => "password_reset",
            Self::Invitation { .. } => "invitation",
            Self::PasswordChanged { .. } => "password_changed",
            Self::PasswordBreached { .. } => "password_breached",
            Self::Welcome { .. } => "welcome",
            Self::TrialEnding { .. } => "trial_ending",
            Self::PaymentFailed { .. } => "payment_failed",
            Self::PlanChanged { .. } => "plan_changed",
            Self::DataExportReady { .. } => "data_export_ready",
            Self::WebhookEndpointDisabled { .. } => "webhook_endpoint_disabled",
            Self::JoinRequested { .. } => "join_requested",
            Self::UpgradeSuggested { .. } => "upgrade_suggested",
            Self::AccountDormant { .. } => "account_dormant",
        }
    }
}
