//! The customer-success console (`GET /ops/console`): one static page, its script and style
//! inline, that signs a staff member in through the auth routes (or takes the operator
//! token) and reads `/ops/accounts` and `/ops/accounts/{account_id}/health`. No build step:
//! the files under `functions/platform/console/` are compiled in.
//!
//! The page itself is public (it holds no data); what it reads needs [`crate::ops::Staff`].
//! Its Content Security Policy allows exactly its own script and style, by hash (CSP Level 3,
//! "hash-source"), and requests to its own origin only, so an account name that reaches
//! the page cannot run as script.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use shared::services::Services;

const PAGE: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// `'sha256-<base64>'` of an inline element's text, as CSP's hash-source.
fn hash_source(text: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash_source(SCRIPT),
        hash_source(STYLE)
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('{', "&#123;")
}

/// The page, with the product's name (`GROUNDWORK_APP_NAME`).
fn render(app_name: &str) -> String {
    // The script and style go in last, so a placeholder in them is never replaced.
    PAGE.replace("{{APP_NAME}}", &escape_html(app_name)).replace("{{CSS}}", STYLE).replace("{{JS}}", SCRIPT)
}

/// The customer-success console: sign in as staff (or with the operator token), see every
/// account's health, and each account's activity trend.
#[utoipa::path(get, path = "/ops/console", operation_id = "customer_success_console", tag = "operations",
    responses((status = 200, description = "The console page", content_type = "text/html", body = String)))]
pub async fn page(State(s): State<Services>) -> Response {
    let mut response =
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], render(&s.config.server.app_name)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, POLICY.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_inline_script_and_style_that_the_page_holds() {
        let page = render("Acme <Ops>");
        assert!(page.contains("Acme &lt;Ops&gt;"), "the name is escaped");
        assert!(
            page.contains(&format!("<script>{SCRIPT}</script>")) && page.contains(&format!("<style>{STYLE}</style>"))
        );
        assert!(!page.contains("{{"), "every placeholder filled");
        let policy = POLICY.to_str().unwrap();
        assert!(policy.contains(&hash_source(SCRIPT)) && policy.contains(&hash_source(STYLE)), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }
}
