//! Rate limits on authenticated routes (`shared::http::rate_limits`), through the whole
//! stack on a frozen clock: an API key at its plan's rate and burst, the account's monthly
//! quota shared by its keys, a signed-in user's rate, the IETF draft's fields on every
//! answer, and 429s that name the limit and the plan that raises it.

use std::sync::Arc;

use serde_json::{Value, json};
use shared::clock::ManualClock;
use testkit::app::TestApp;

/// 2026-11-30T23:59:00Z: a minute before a new month.
const NOW_MS: i64 = 1_796_083_140_000;

/// The shipped catalogue with a small free plan: 1 request a second per key, a burst of 3,
/// and 5 a month per account.
fn plans_file(dir: &std::path::Path) -> String {
    let small = "api_requests_per_second = 1, api_burst = 3, api_requests_per_month = 5 }";
    testkit::services::plans_file_with(dir, testkit::services::FREE_API_LIMITS, small)
}

async fn spawn(clock: &ManualClock, dir: &tempfile::TempDir) -> TestApp {
    let plans = plans_file(dir.path());
    let vars = [
        ("GROUNDWORK_PLANS_FILE", plans.as_str()),
        ("GROUNDWORK_USER_REQUESTS_PER_SECOND", "2"),
        ("GROUNDWORK_USER_REQUEST_BURST", "6"),
    ];
    TestApp::spawn_with_clock(&vars, Arc::new(clock.clone())).await
}

fn field<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

async fn new_key(app: &TestApp, user: &str, account: &str, name: &str) -> String {
    let path = format!("/accounts/{account}/api-keys");
    let (status, key) = app.call("POST", &path, Some(user), Some(json!({"name": name, "role": "admin"}))).await;
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_api_key_is_held_to_its_plans_rate_and_its_account_to_the_months_quota() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(NOW_MS);
    let app = spawn(&clock, &dir).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (status, account) = app.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    assert_eq!(status, 201, "{account}");
    let account = account["id"].as_str().unwrap().to_owned();
    let (first, second) = (new_key(&app, &ada, &account, "one").await, new_key(&app, &ada, &account, "two").await);
    let members = format!("/accounts/{account}/members");

    // Public routes are not limited, whatever credential they are sent.
    for path in ["/health", "/plans", "/openapi.json"] {
        let (status, headers, _) = app.call_full("GET", path, Some(&first), None).await;
        assert_eq!(status, 200, "{path}");
        assert!(headers.get("ratelimit").is_none(), "{path} is not limited");
    }

    // The burst, with the fields of draft-ietf-httpapi-ratelimit-headers on each answer.
    for left in [2, 1, 0] {
        let (status, headers, _) = app.call_full("GET", &members, Some(&first), None).await;
        assert_eq!(status, 200);
        assert_eq!(field(&headers, "ratelimit-policy"), "\"api-key\";q=3;w=3, \"api-month\";q=5;w=2592000");
        let used = 2 - left;
        assert_eq!(
            field(&headers, "ratelimit"),
            format!("\"api-key\";r={left};t={}, \"api-month\";r={};t=60", 3 - left, 4 - used)
        );
    }
    let (status, headers, problem) = app.call_full("GET", &members, Some(&first), None).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(field(&headers, "retry-after"), "1");
    assert_eq!(field(&headers, "ratelimit"), "\"api-key\";r=0;t=3");
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!(problem["limit"], "api_requests_per_second");
    assert_eq!((problem["plan"].as_str(), problem["upgrade_plan"].as_str()), (Some("free"), Some("starter")));
    assert_eq!(problem["retry_after"], 1);

    // A second key has its own rate, and shares the account's month: 3 used, 2 left.
    for _ in 0..2 {
        assert_eq!(app.call("GET", &members, Some(&second), None).await.0, 200);
    }
    let (status, headers, problem) = app.call_full("GET", &members, Some(&second), None).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["limit"], "api_requests_per_month");
    assert_eq!(problem["upgrade_plan"], "starter");
    assert_eq!(field(&headers, "retry-after"), "60", "the month ends in a minute");
    // A new month, and the key's token is back after a second of the minute.
    clock.advance_ms(60_000);
    let (status, headers, _) = app.call_full("GET", &members, Some(&second), None).await;
    assert_eq!(status, 200);
    assert!(field(&headers, "ratelimit").ends_with("\"api-month\";r=4;t=2678400"), "{headers:?}");
    app.stack.stop().await;
}

#[tokio::test]
async fn a_signed_in_user_has_a_rate_and_anonymous_or_unauthenticated_calls_carry_none() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(NOW_MS);
    let app = spawn(&clock, &dir).await;
    let (ada, _) = app.user("ada@example.com").await;
    let mut admitted = 0;
    let refused = loop {
        let (status, headers, body) = app.call_full("GET", "/me", Some(&ada), None).await;
        if status != 200 {
            break (status, headers, body);
        }
        assert_eq!(field(&headers, "ratelimit-policy"), "\"user\";q=6;w=3");
        admitted += 1;
        assert!(admitted <= 6, "more than the burst admitted");
    };
    assert_eq!(admitted, 6);
    let (status, headers, problem) = refused;
    assert_eq!((status, problem["limit"].as_str()), (429, Some("user_requests_per_second")));
    assert_eq!(problem.get("plan"), None, "a user's rate is not a plan's");
    assert_eq!(field(&headers, "retry-after"), "1");
    // Half a second brings one token back (two a second).
    clock.advance_ms(500);
    assert_eq!(app.call("GET", "/me", Some(&ada), None).await.0, 200);
    assert_eq!(app.call("GET", "/me", Some(&ada), None).await.0, 429);

    let (status, headers, _) = app.call_full("GET", "/health", None, None).await;
    assert_eq!(status, 200);
    assert!(headers.get("ratelimit").is_none());
    let (status, headers, _) = app.call_full("GET", "/me", Some("not-a-token"), None).await;
    assert_eq!(status, 401);
    assert!(headers.get("ratelimit").is_none());

    // Documented on every authenticated route.
    let (_, doc): (u16, Value) = app.call("GET", "/openapi.json", None, None).await;
    let me = &doc["paths"]["/me"]["get"]["responses"];
    assert!(me["429"]["headers"]["Retry-After"].is_object(), "{me}");
    assert!(me["200"]["headers"]["RateLimit"].is_object(), "{me}");
    assert!(me["401"]["headers"].get("RateLimit").is_none(), "a 401 is never rate limited: {me}");
    let login = &doc["paths"]["/auth/login"]["post"]["responses"];
    assert!(login["429"]["headers"]["Retry-After"].is_object(), "brute-force limits say when: {login}");
    let health = &doc["paths"]["/health"]["get"]["responses"];
    assert!(health["503"]["headers"]["Retry-After"].is_object(), "a route's own 503 too: {health}");
    assert!(doc["paths"]["/health"]["get"]["responses"].get("429").is_none());
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_requests_of_one_user_are_refused_only_past_the_burst() {
    let clock = ManualClock::at(NOW_MS);
    let vars = [("GROUNDWORK_USER_REQUESTS_PER_SECOND", "1"), ("GROUNDWORK_USER_REQUEST_BURST", "60")];
    let app = TestApp::spawn_with_clock(&vars, Arc::new(clock.clone())).await;
    let (ada, _) = app.user("ada@example.com").await;
    // Eighty at once on a frozen clock: the burst's sixty are admitted, however much the
    // requests contend for the one rate item, and only the rest are refused.
    let statuses = app.statuses_in_parallel(80, "GET", "/me", Some(&ada), None).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, refused), (60, 20), "{statuses:?}");
    app.stack.stop().await;
}
