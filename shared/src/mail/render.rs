//! Rendering an [`Email`]: the templates (subject, plain text, HTML, sharing a layout) live
//! in `shared/templates/email/` and are compiled into the binary. Rendering is strict: a
//! variable a template uses but the variant does not provide is an error, never an empty
//! string, and every template is rendered by the snapshot tests.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior, context};
use serde::Serialize;

use super::templates::Email;

/// The product's identity in every email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Branding {
    /// The product name.
    pub name: String,
    /// The frontend's base URL.
    pub url: String,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject line (one line).
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// A template failed to render (a bug: caught by the snapshot tests).
#[derive(Debug, thiserror::Error)]
#[error("rendering email template {template}: {source}")]
pub struct RenderError {
    /// The template's name.
    pub template: &'static str,
    /// What went wrong.
    #[source]
    pub source: minijinja::Error,
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/email/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "layout.html.j2",
    "layout.txt.j2",
    "button.html.j2",
    "verify_email.subject.j2",
    "verify_email.txt.j2",
    "verify_email.html.j2",
    "password_reset.subject.j2",
    "password_reset.txt.j2",
    "password_reset.html.j2",
    "invitation.subject.j2",
    "invitation.txt.j2",
    "invitation.html.j2",
    "password_changed.subject.j2",
    "password_changed.txt.j2",
    "password_changed.html.j2",
    "password_breached.subject.j2",
    "password_breached.txt.j2",
    "password_breached.html.j2",
    "welcome.subject.j2",
    "welcome.txt.j2",
    "welcome.html.j2",
    "trial_ending.subject.j2",
    "trial_ending.txt.j2",
    "trial_ending.html.j2",
    "payment_failed.subject.j2",
    "payment_failed.txt.j2",
    "payment_failed.html.j2",
    "plan_changed.subject.j2",
    "plan_changed.txt.j2",
    "plan_changed.html.j2",
    "data_export_ready.subject.j2",
    "data_export_ready.txt.j2",
    "data_export_ready.html.j2",
    "webhook_endpoint_disabled.subject.j2",
    "webhook_endpoint_disabled.txt.j2",
    "webhook_endpoint_disabled.html.j2",
    "join_requested.subject.j2",
    "join_requested.txt.j2",
    "join_requested.html.j2",
    "upgrade_suggested.subject.j2",
    "upgrade_suggested.txt.j2",
    "upgrade_suggested.html.j2",
    "account_dormant.subject.j2",
    "account_dormant.txt.j2",
    "account_dormant.html.j2",
);

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        env.set_formatter(html_formatter);
        for (name, source) in TEMPLATES {
            // The sources are compiled in and parsed by every test run: a syntax error
            // cannot reach a build that passed its tests.
            if let Err(e) = env.add_template(name, source) {
                panic!("email template {name} does not parse: {e}");
            }
        }
        env
    })
}

/// Escapes values in HTML templates with the five entities HTML needs (minijinja's default
/// also escapes `/`, which makes links unreadable in a message's source).
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    if matches!(state.auto_escape(), minijinja::AutoEscape::Html) && !value.is_safe() && !value.is_undefined() {
        let text = value.to_string();
        let mut escaped = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => escaped.push_str("&amp;"),
                '<' => escaped.push_str("&lt;"),
                '>' => escaped.push_str("&gt;"),
                '"' => escaped.push_str("&quot;"),
                '\'' => escaped.push_str("&#39;"),
                c => escaped.push(c),
            }
        }
        return out
            .write_str(&escaped)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// Renders `email` with `branding`.
///
/// # Errors
/// [`RenderError`] if a template uses a variable the email does not provide.
pub fn render(email: &Email, branding: &Branding) -> Result<Rendered, RenderError> {
    let template = email.template_name();
    let env = environment();
    let fail = |source| RenderError { template, source };
    let vars = minijinja::Value::from_serialize(email);
    let ctx = context! { app => branding, ..vars };
    let part = |suffix: &str| -> Result<String, RenderError> {
        env.get_template(&format!("{template}.{suffix}.j2")).and_then(|t| t.render(&ctx)).map_err(fail)
    };
    let subject = part("subject")?.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(Rendered { subject, text: part("txt")?.trim().to_owned() + "\n", html: part("html")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_used_by_a_variant() {
        let names = [
            "verify_email",
            "password_reset",
            "invitation",
            "welcome",
            "password_changed",
            "password_breached",
            "trial_ending",
            "payment_failed",
            "plan_changed",
            "data_export_ready",
            "webhook_endpoint_disabled",
            "join_requested",
            "upgrade_suggested",
            "account_dormant",
        ];
        for (file, _) in TEMPLATES {
            let stem = file.split('.').next().unwrap();
            assert!(names.contains(&stem) || ["layout", "button"].contains(&stem), "{file} is not used");
        }
    }

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template("t", "Hello {{ nobody }}").unwrap();
        assert!(env.get_template("t").unwrap().render(context! {}).is_err());
    }

    #[test]
    fn html_escapes_variables_and_text_does_not() {
        let r = render(
            &Email::Welcome { name: Some("<script>alert(1)</script> & co".into()) },
            &Branding { name: "Acme".into(), url: "https://app.acme.test".into() },
        )
        .unwrap();
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<script>"));
        assert!(r.text.contains("<script>alert(1)</script> & co"));
    }
}
