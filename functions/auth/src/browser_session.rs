//! The browser session: a client may ask for its refresh token in a cookie instead of the
//! JSON body (`"refresh_token_delivery": "cookie"` at login), as Clerk's and Auth0's
//! single-page-app SDKs keep it, so script on the page (an XSS) can never read it. The
//! access token stays in the page's memory and goes out as a bearer token.
//!
//! The cookie (`gw_refresh`) is `HttpOnly`, `Secure`, `SameSite=Strict` by default
//! (`GROUNDWORK_REFRESH_COOKIE_SAME_SITE`), and set twice with the same value: once with
//! `Path=/auth/refresh` and once with `Path=/auth/logout`, so the browser sends it to those
//! two routes only (RFC 6265bis section 5.1.4, path-match). `Secure` is left off only when
//! the API itself is served over plain HTTP on a loopback host (`cargo run`), where
//! browsers would otherwise drop it.
//!
//! A cookie is ambient authority: the browser attaches it to a request any page makes. So a
//! request the cookie authenticates (refresh, logout) is served only when
//! 1. its `Origin` is the API's own or one of `GROUNDWORK_CORS_ORIGINS` (a missing `Origin`
//!    is refused: every browser sends one on a cross-origin or a `POST` request); and
//! 2. it carries an `X-Requested-With` header (any value). A page on another origin can send
//!    a custom header only after a CORS preflight, which only the allowed origins pass, so
//!    this holds even if the `Origin` check were bypassed.
//!
//! The custom header was chosen over a double-submit token because the SPA usually runs on
//! another origin than the API: it could not read a token cookie the API sets, and a token in
//! a response body is one more secret for page script to hold (OWASP CSRF Prevention Cheat
//! Sheet, "Employing Custom Request Headers for AJAX/API").

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use cookie::{Cookie, SameSite};
use shared::auth::config::CookieSameSite;
use shared::error::ApiError;
use shared::services::Services;

use crate::sessions::TokenPair;

/// The refresh cookie's name.
pub const COOKIE: &str = "gw_refresh";
/// The routes the cookie is sent to.
pub const COOKIE_PATHS: [&str; 2] = ["/auth/refresh", "/auth/logout"];
/// The request header a cookie-authenticated request must carry.
pub const CSRF_HEADER: &str = "x-requested-with";

/// Where a login or refresh hands the refresh token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefreshTokenDelivery {
    /// In the JSON body, as `refresh_token` (native apps, servers): the default.
    #[default]
    Body,
    /// In an `HttpOnly` cookie scoped to `/auth/refresh` and `/auth/logout` (browsers); the
    /// body then has no `refresh_token`.
    Cookie,
}

/// Whether the API runs over plain HTTP on a loopback host, where `Secure` cookies would be
/// dropped by browsers that do not treat the host as secure.
fn insecure_loopback(api_url: &str) -> bool {
    let Some(rest) = api_url.strip_prefix("http://") else { return false };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if authority.starts_with('[') {
        authority.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default().to_owned()
    };
    host == "localhost" || host.ends_with(".localhost") || host == "[::1]" || host.starts_with("127.")
}

fn cookies(services: &Services, value: &str, max_age_secs: i64) -> Vec<(header::HeaderName, HeaderValue)> {
    let same_site = match services.config.auth.refresh_cookie_same_site {
        CookieSameSite::Strict => SameSite::Strict,
        CookieSameSite::Lax => SameSite::Lax,
        CookieSameSite::None => SameSite::None,
    };
    let api_url = &services.config.server.api_url;
    let secure = same_site == SameSite::None || !insecure_loopback(api_url);
    // Behind a base path (`https://api.example.com/v1`) the browser calls `/v1/auth/refresh`.
    let base = api_url[own_origin(api_url).len()..].trim_end_matches('/');
    COOKIE_PATHS
        .iter()
        .filter_map(|path| {
            let cookie = Cookie::build((COOKIE, value.to_owned()))
                .path(format!("{base}{path}"))
                .http_only(true)
                .secure(secure)
                .same_site(same_site)
                .max_age(cookie::time::Duration::seconds(max_age_secs))
                .build();
            HeaderValue::from_str(&cookie.to_string()).ok().map(|v| (header::SET_COOKIE, v))
        })
        .collect()
}

/// The answer to a login or refresh: the pair as JSON, or with `Cookie` delivery the pair
/// without its refresh token and the token in the cookie.
pub fn respond<T: serde::Serialize>(
    services: &Services,
    delivery: RefreshTokenDelivery,
    mut pair: TokenPair,
    wrap: impl FnOnce(TokenPair) -> T,
) -> Response {
    let set = match (delivery, pair.refresh_token.take()) {
        (RefreshTokenDelivery::Cookie, Some(token)) => cookies(services, &token, services.tokens.refresh_ttl_secs),
        (_, token) => {
            pair.refresh_token = token;
            Vec::new()
        }
    };
    (AppendHeaders(set), axum::Json(wrap(pair))).into_response()
}

/// `Set-Cookie` headers that remove the refresh cookie (logout, a refused cookie).
pub fn cleared(services: &Services) -> AppendHeaders<Vec<(header::HeaderName, HeaderValue)>> {
    AppendHeaders(cookies(services, "", 0))
}

/// The refresh token the cookie carries, if any.
pub fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// The API's own origin (`scheme://host[:port]`) from its base URL.
fn own_origin(api_url: &str) -> &str {
    let after_scheme = api_url.find("://").map_or(0, |i| i + 3);
    let end = api_url[after_scheme..].find('/').map_or(api_url.len(), |i| after_scheme + i);
    &api_url[..end]
}

/// The CSRF defence of a cookie-authenticated request (see the module documentation).
///
/// # Errors
/// 403 `csrf_origin` when `Origin` is missing or not allowed, 403 `csrf_header` without
/// `X-Requested-With`.
pub fn check_csrf(services: &Services, headers: &HeaderMap) -> Result<(), ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let allowed = !origin.is_empty()
        && (origin == own_origin(&services.config.server.api_url)
            || services.config.http.cors_origins.iter().any(|o| o == origin));
    if !allowed {
        return Err(ApiError::ForbiddenBecause {
            code: "csrf_origin",
            detail: "a request that uses the session cookie must come from the API's own origin or an allowed \
                     one (GROUNDWORK_CORS_ORIGINS)"
                .into(),
        });
    }
    if headers.get(CSRF_HEADER).is_none_or(|v| v.is_empty()) {
        return Err(ApiError::ForbiddenBecause {
            code: "csrf_header",
            detail: "a request that uses the session cookie must carry an X-Requested-With header".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_is_relaxed_only_for_plain_http_on_loopback() {
        for url in ["http://127.0.0.1:3000", "http://localhost:3000/", "http://[::1]:3000", "http://app.localhost"] {
            assert!(insecure_loopback(url), "{url}");
        }
        for url in [
            "https://127.0.0.1:3000",
            "https://api.example.com",
            "http://api.example.com",
            "http://localhost.example.com",
            "http://10.0.0.1",
        ] {
            assert!(!insecure_loopback(url), "{url}");
        }
    }

    #[test]
    fn the_own_origin_drops_the_path() {
        assert_eq!(own_origin("https://api.example.com/v1"), "https://api.example.com");
        assert_eq!(own_origin("http://127.0.0.1:3000"), "http://127.0.0.1:3000");
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; gw_refresh=tok; b=2"));
        assert_eq!(token(&headers).as_deref(), Some("tok"));
        headers.clear();
        headers.append(header::COOKIE, HeaderValue::from_static("gw_refresh="));
        assert_eq!(token(&headers), None);
    }
}
