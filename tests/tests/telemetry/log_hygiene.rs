//! No password, token, code or secret appears in any log line: a whole auth journey (and a
//! webhook endpoint's life: its secret, a rotation, a signed delivery attempt) runs
//! with every log line (debug level, every target) captured, and the capture is searched for
//! each secret the journey handled. Error tracking is on in this process, so whatever it
//! sent is searched too.

use serde_json::json;
use testkit::app::TestApp;

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let (capture, sentry) = crate::process_telemetry();

    let app = TestApp::spawn(&[]).await;
    let password = "violet-anchor-trombone-47";
    let new_password = "copper-lantern-meadow-81";
    let mut secrets = vec![password.to_owned(), new_password.to_owned()];

    app.call("POST", "/auth/signup", None, Some(json!({"email": "ada@example.com", "password": password}))).await;
    let verify = app.token_from_email("ada@example.com", "Confirm your email address").await;
    secrets.push(verify.clone());
    app.call("POST", "/auth/verify-email", None, Some(json!({"token": verify}))).await;
    // A failed login with a password-like typo.
    app.call(
        "POST",
        "/auth/login",
        None,
        Some(json!({"email": "ada@example.com", "password": "violet-anchor-trombone-48"})),
    )
    .await;
    secrets.push("violet-anchor-trombone-48".into());
    let (_, pair) =
        app.call("POST", "/auth/login", None, Some(json!({"email": "ada@example.com", "password": password}))).await;
    let (_, pair2) =
        app.call("POST", "/auth/refresh", None, Some(json!({"refresh_token": pair["refresh_token"]}))).await;
    for p in [&pair, &pair2] {
        secrets.push(p["access_token"].as_str().unwrap().to_owned());
        secrets.push(p["refresh_token"].as_str().unwrap().to_owned());
    }
    // A rejected body holding a password.
    app.call(
        "POST",
        "/auth/signup",
        None,
        Some(json!({"email": "x@example.com", "password": 12345, "extra": password})),
    )
    .await;
    app.call("POST", "/auth/password/forgot", None, Some(json!({"email": "ada@example.com"}))).await;
    let reset = app.token_from_email("ada@example.com", "Reset your").await;
    secrets.push(reset.clone());
    app.call("POST", "/auth/password/reset", None, Some(json!({"token": reset, "password": new_password}))).await;
    // Webhook signing secrets: created, rotated, used to sign a delivery attempt.
    let (_, pair) = app
        .call("POST", "/auth/login", None, Some(json!({"email": "ada@example.com", "password": new_password})))
        .await;
    let token = pair["access_token"].as_str().unwrap();
    let (_, account) = app.call("POST", "/accounts", Some(token), Some(json!({"name": "Acme"}))).await;
    let account = account["id"].as_str().unwrap();
    let hooks = format!("/accounts/{account}/webhooks");
    let (_, endpoint) =
        app.call("POST", &hooks, Some(token), Some(json!({"url": "https://hooks.example.com/x"}))).await;
    secrets.push(endpoint["secret"].as_str().unwrap().to_owned());
    let endpoint = format!("{hooks}/{}", endpoint["id"].as_str().unwrap());
    let (_, rotated) = app.call("POST", &format!("{endpoint}/rotate-secret"), Some(token), None).await;
    secrets.push(rotated["secret"].as_str().unwrap().to_owned());
    app.call("POST", &format!("{endpoint}/test"), Some(token), None).await;
    testkit::eventually("the test message's attempt", || async {
        let (_, log) = app.call("GET", &format!("{endpoint}/attempts"), Some(token), None).await;
        (log["attempts"].as_array().is_some_and(|a| !a.is_empty())).then_some(())
    })
    .await;
    app.stack.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 20, "the journey was logged: {} lines", logs.lines().count());
    assert!(logs.contains("request completed"));
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs: {}…", &secret[..8.min(secret.len())]);
    }
    // The signing key and hashes never show either.
    assert!(!logs.contains("BEGIN PRIVATE KEY"));
    assert!(!logs.contains("$argon2id$"));
    let sent = sentry.raw().join("\n");
    for secret in &secrets {
        assert!(!sent.contains(secret.as_str()), "a secret reached Sentry: {}…", &secret[..8.min(secret.len())]);
    }
    assert!(!sent.contains("ada@example.com"));
}
