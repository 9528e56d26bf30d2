//! Every email as a person reads it: subject, plain text and HTML of each template,
//! rendered with realistic values and checked against reviewed snapshots.

use shared::mail::render::{Branding, render};
use shared::mail::templates::Email;

fn branding() -> Branding {
    Branding { name: "Acme".into(), url: "https://app.acme.test".into() }
}

fn all_emails() -> Vec<Email> {
    vec![
        Email::VerifyEmail { link: "https://app.acme.test/verify?token=tok_verify".into(), expires_in_hours: 24 },
        Email::PasswordReset { link: "https://app.acme.test/reset?token=tok_reset".into(), expires_in_minutes: 60 },
        Email::Invitation {
            inviter_name: "Ada Lovelace".into(),
            account_name: "Analytical Engines Ltd".into(),
            role: "admin".into(),
            link: "https://app.acme.test/invitations/accept?token=tok_invite".into(),
            expires_in_days: 7,
        },
        Email::PasswordChanged { name: Some("Grace".into()) },
        Email::Welcome { name: Some("Grace".into()) },
        Email::Welcome { name: None },
        Email::TrialEnding {
            account_name: "Analytical Engines Ltd".into(),
            plan_name: "Team".into(),
            trial_ends_on: "18 January 2027".into(),
            link: "https://app.acme.test/billing".into(),
        },
        Email::PaymentFailed {
            account_name: "Analytical Engines Ltd".into(),
            amount: "$49.00".into(),
            link: "https://billing.stripe.test/p/session/abc".into(),
        },
        Email::PlanChanged {
            account_name: "Analytical Engines Ltd".into(),
            old_plan: "Starter".into(),
            new_plan: "Team".into(),
            effective_on: "15 January 2027".into(),
            link: "https://app.acme.test/billing".into(),
        },
        Email::DataExportReady {
            subject: "your account".into(),
            link: "https://exports.acme.test/e/123?sig=abc".into(),
            expires_in_hours: 24,
        },
        Email::PasswordBreached { name: Some("Grace".into()) },
        Email::WebhookEndpointDisabled {
            account_name: "Analytical Engines Ltd".into(),
            url: "https://hooks.engines.test/groundwork".into(),
            link: "https://app.acme.test/accounts/01J/webhooks".into(),
        },
        Email::JoinRequested {
            requester: "Charles Babbage".into(),
            email: "charles@engines.test".into(),
            account_name: "Analytical Engines Ltd".into(),
            role: "member".into(),
            link: "https://app.acme.test/accounts/01J/join-requests".into(),
        },
    ]
}

#[test]
fn every_template_renders_as_reviewed() {
    for (i, email) in all_emails().iter().enumerate() {
        let r = render(email, &branding()).unwrap_or_else(|e| panic!("{e}"));
        let name = format!("{:02}_{}", i, email.template_name());
        assert!(!r.subject.contains('\n'), "{name}: the subject is one line");
        assert!(r.html.contains("Acme"), "{name}: the layout is applied");
        assert!(r.text.contains("https://app.acme.test"), "{name}: the text footer links the app");
        insta::assert_snapshot!(format!("{name}_subject"), r.subject);
        insta::assert_snapshot!(format!("{name}_text"), r.text);
        insta::assert_snapshot!(format!("{name}_html"), r.html);
    }
}

#[test]
fn links_appear_in_both_parts() {
    for email in all_emails() {
        let r = render(&email, &branding()).unwrap();
        let json = serde_json::to_value(&email).unwrap();
        if let Some(link) = json.get("link").and_then(|l| l.as_str()) {
            assert!(r.text.contains(link), "{}: text lacks the link", email.template_name());
            assert!(r.html.contains(link), "{}: html lacks the link", email.template_name());
        }
    }
}
