//! The browser session: the refresh token in an `HttpOnly` cookie scoped to refresh and
//! logout, and the CSRF defence of the requests that cookie authenticates. (The same flow in
//! a real browser is `infra/browser/`.)

use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use testkit::app::{PASSWORD, TestApp};

const SPA: &str = "http://localhost:5173";

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn cookie_value(set: &[String]) -> String {
    let first = set.first().expect("a Set-Cookie");
    first.split(';').next().unwrap().strip_prefix("gw_refresh=").expect("the refresh cookie").to_owned()
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, HeaderMap, Value) {
    let mut req = app.client.post(format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let text = res.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_refresh_token_lives_in_a_scoped_http_only_cookie_and_csrf_is_refused() {
    let app = TestApp::spawn(&[("GROUNDWORK_CORS_ORIGINS", SPA)]).await;
    let email = "cookie@example.com";
    app.user(email).await;
    let login = json!({"email": email, "password": PASSWORD, "refresh_token_delivery": "cookie"});

    // Login CSRF: a cookie login from a foreign page, or without the header, is refused.
    for headers in [
        vec![("origin", "https://evil.example"), ("x-requested-with", "fetch")],
        vec![("x-requested-with", "fetch")],
        vec![("origin", SPA)],
    ] {
        let (status, set, problem) = post(&app, "/auth/login", &headers, Some(login.clone())).await;
        assert_eq!(status, 403, "{headers:?}: {problem}");
        assert!(["csrf_origin", "csrf_header"].contains(&problem["code"].as_str().unwrap()), "{problem}");
        assert!(set_cookies(&set).is_empty());
    }

    let browser = [("origin", SPA), ("x-requested-with", "fetch")];
    let (status, headers, pair) = post(&app, "/auth/login", &browser, Some(login)).await;
    assert_eq!(status, 200, "{pair}");
    assert!(pair["access_token"].is_string());
    assert!(pair.get("refresh_token").is_none(), "the body holds no refresh token: {pair}");
    let set = set_cookies(&headers);
    assert_eq!(set.len(), 2, "{set:?}");
    for (cookie, path) in set.iter().zip(["/auth/refresh", "/auth/logout"]) {
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(cookie.contains(&format!("Path={path}")), "{cookie}");
        assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
        // The local stack is plain HTTP on loopback: the only place Secure is left off.
        assert!(!cookie.contains("Secure"), "{cookie}");
    }
    let first = cookie_value(&set);
    let cookie = format!("gw_refresh={first}");

    // The cookie alone, from a foreign origin, without an origin, or without the header: 403.
    for headers in [
        vec![("cookie", cookie.as_str()), ("origin", "https://evil.example"), ("x-requested-with", "x")],
        vec![("cookie", cookie.as_str()), ("x-requested-with", "x")],
        vec![("cookie", cookie.as_str()), ("origin", SPA)],
    ] {
        let (status, _, problem) = post(&app, "/auth/refresh", &headers, Some(json!({}))).await;
        assert_eq!(status, 403, "{headers:?}: {problem}");
        let (status, _, problem) = post(&app, "/auth/logout", &headers, None).await;
        assert_eq!(status, 403, "{headers:?}: {problem}");
    }

    // From the allowed origin with the header: rotated, answered as a cookie again.
    let with_cookie = [("cookie", cookie.as_str()), ("origin", SPA), ("x-requested-with", "fetch")];
    let (status, headers, pair) = post(&app, "/auth/refresh", &with_cookie, Some(json!({}))).await;
    assert_eq!(status, 200, "{pair}");
    assert!(pair.get("refresh_token").is_none(), "{pair}");
    let second = cookie_value(&set_cookies(&headers));
    assert_ne!(second, first, "the refresh token rotated");
    let (status, me) = app.call("GET", "/me", pair["access_token"].as_str(), None).await;
    assert_eq!((status, me["email"].as_str()), (200, Some(email)));

    // Logout by the cookie ends the session and removes the cookie.
    let cookie = format!("gw_refresh={second}");
    let with_cookie = [("cookie", cookie.as_str()), ("origin", SPA), ("x-requested-with", "fetch")];
    let (status, headers, _) = post(&app, "/auth/logout", &with_cookie, None).await;
    assert_eq!(status, 204);
    let cleared = set_cookies(&headers);
    assert_eq!(cleared.len(), 2, "{cleared:?}");
    assert!(cleared.iter().all(|c| c.starts_with("gw_refresh=;") && c.contains("Max-Age=0")), "{cleared:?}");
    let (status, _) = app.call("GET", "/me", pair["access_token"].as_str(), None).await;
    assert_eq!(status, 401, "the session ended");
    let (status, headers, _) = post(&app, "/auth/refresh", &with_cookie, Some(json!({}))).await;
    assert_eq!(status, 401);
    assert_eq!(set_cookies(&headers).len(), 2, "a dead cookie is removed");

    // No token in the body and no cookie: 401, not a CSRF answer.
    let (status, _, _) = post(&app, "/auth/refresh", &browser, Some(json!({}))).await;
    assert_eq!(status, 401);
    app.stack.stop().await;
}

#[tokio::test]
async fn the_body_delivery_is_unchanged_and_needs_no_origin() {
    let app = TestApp::spawn(&[]).await;
    let email = "native@example.com";
    app.user(email).await;
    let (status, headers, pair) =
        post(&app, "/auth/login", &[], Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(status, 200, "{pair}");
    assert!(set_cookies(&headers).is_empty());
    let refresh = pair["refresh_token"].as_str().unwrap();
    let (status, _, next) = post(&app, "/auth/refresh", &[], Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(status, 200, "{next}");
    assert!(next["refresh_token"].is_string());
    app.stack.stop().await;
}
