//! Auth end to end on the local stack, over HTTP: the flows a person goes through, and the
//! attacks each step must refuse.

use serde_json::{Value, json};
use testkit::app::TestApp;

const PASSWORD: &str = "violet-anchor-trombone-47";

async fn signup_and_verify(app: &TestApp, email: &str) {
    let (status, body) =
        app.call("POST", "/auth/signup", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(status, 202, "{body}");
    let token = app.token_from_email(email, "Confirm your email address").await;
    let (status, body) = app.call("POST", "/auth/verify-email", None, Some(json!({"token": token}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email_verified"], true);
}

async fn login(app: &TestApp, email: &str, password: &str) -> (u16, Value) {
    app.call("POST", "/auth/login", None, Some(json!({"email": email, "password": password}))).await
}

#[tokio::test]
async fn sign_up_verify_log_in_refresh_and_log_out() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    // The verification link works once.
    let (status, body) = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    let (status, me) = app.call("GET", "/me", Some(&access), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "ada@example.com");

    let (status, pair) = app.call("POST", "/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(status, 200, "{pair}");
    let access2 = pair["access_token"].as_str().unwrap().to_owned();
    assert_ne!(pair["refresh_token"], refresh.as_str());
    assert_eq!(app.call("GET", "/me", Some(&access2), None).await.0, 200);

    let (status, list) = app.call("GET", "/auth/sessions", Some(&access2), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(list["sessions"][0]["current"], true);

    assert_eq!(app.call("POST", "/auth/logout", Some(&access2), None).await.0, 204);
    // Revoked at once, not at the token's expiry.
    assert_eq!(app.call("GET", "/me", Some(&access2), None).await.0, 401);
    assert_eq!(
        app.call("POST", "/auth/refresh", None, Some(json!({"refresh_token": pair["refresh_token"]}))).await.0,
        401
    );
    // A welcome email followed the verification.
    app.wait_email("ada@example.com", "Subject: Welcome to").await;
    app.stack.stop().await;
}

#[tokio::test]
async fn answers_do_not_reveal_who_is_registered() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    app.wait_email("ada@example.com", "Subject: Welcome to").await;
    let before = app.emails_to("ada@example.com");
    let (status, _) = app
        .call(
            "POST",
            "/auth/signup",
            None,
            Some(json!({"email": "ada@example.com", "password": "another-quiet-harbour-93"})),
        )
        .await;
    assert_eq!(status, 202, "same answer for a taken address");
    let (status, _) =
        app.call("POST", "/auth/password/forgot", None, Some(json!({"email": "nobody@example.com"}))).await;
    assert_eq!(status, 202);
    let (a, body_a) = login(&app, "nobody@example.com", PASSWORD).await;
    let (b, body_b) = login(&app, "ada@example.com", "wrong-password-entirely-9").await;
    assert_eq!((a, b), (401, 401));
    assert_eq!(body_a["code"], body_b["code"]);
    assert_eq!(body_a["detail"], body_b["detail"]);
    app.drain().await;
    assert_eq!(app.emails_to("ada@example.com"), before, "nothing sent for a verified, taken address");
    app.stack.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_problems_and_nothing_stored() {
    let app = TestApp::spawn(&[]).await;
    for (body, code) in [
        (json!({"email": "not-an-email", "password": PASSWORD}), "invalid_email"),
        (json!({"email": "ada@example.com", "password": "password123"}), "weak_password"),
        (json!({"email": "ada@example.com", "password": "short"}), "weak_password"),
        (json!({"email": "ada@example.com", "password": PASSWORD, "admin": true}), "invalid_body"),
        (json!({"email": "ada@example.com", "password": PASSWORD, "name": "x".repeat(500)}), "invalid_name"),
    ] {
        let (status, problem) = app.call("POST", "/auth/signup", None, Some(body)).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["code"], code, "{problem}");
        assert!(!problem.to_string().contains(PASSWORD));
    }
    assert_eq!(app.emails_to("ada@example.com"), 0, "nothing was stored or sent");
    let (status, problem) = app.call("POST", "/auth/verify-email", None, Some(json!({"token": "forged"}))).await;
    assert_eq!((status, problem["code"].clone()), (400, json!("invalid_token")));
    app.stack.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    for _ in 0..5 {
        assert_eq!(login(&app, "ada@example.com", "wrong-password-entirely-9").await.0, 401);
    }
    let (status, headers, body) = app
        .call_full("POST", "/auth/login", None, Some(json!({"email": "ada@example.com", "password": PASSWORD})))
        .await;
    assert_eq!(status, 429, "even the right password waits: {body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    assert_eq!(body["code"], "too_many_requests");
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_guesses_gets_no_more_tries_than_the_limit() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    // Thirty wrong guesses at once, then the right password: a check made before any
    // failure was counted would let them all through, and then the right one too.
    let wrong = json!({"email": "ada@example.com", "password": "wrong-password-entirely-9"});
    let statuses = app.statuses_in_parallel(30, "POST", "/auth/login", None, Some(wrong)).await;
    let tried = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((tried, refused), (5, 25), "{statuses:?}");
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.0, 429, "the address is locked for the window");
    app.stack.stop().await;
}

#[tokio::test]
async fn a_password_reset_ends_every_session_and_its_link_works_once() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    let (_, s1) = login(&app, "ada@example.com", PASSWORD).await;
    let (status, _) = app.call("POST", "/auth/password/forgot", None, Some(json!({"email": "ada@example.com"}))).await;
    assert_eq!(status, 202);
    let token = app.token_from_email("ada@example.com", "Reset your").await;
    let (status, weak) =
        app.call("POST", "/auth/password/reset", None, Some(json!({"token": token, "password": "123456789"}))).await;
    assert_eq!(
        (status, weak["code"].clone()),
        (422, json!("weak_password")),
        "a weak password does not use up the link"
    );
    let own = json!({"token": token, "password": "ada@example.com-2027"});
    let (status, _) = app.call("POST", "/auth/password/reset", None, Some(own)).await;
    assert_eq!(status, 422, "nor one built on the user's own address");
    let new_password = "copper-lantern-meadow-81";
    let (status, body) =
        app.call("POST", "/auth/password/reset", None, Some(json!({"token": token, "password": new_password}))).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(app.call("GET", "/me", Some(s1["access_token"].as_str().unwrap()), None).await.0, 401);
    let (status, _) = app
        .call(
            "POST",
            "/auth/password/reset",
            None,
            Some(json!({"token": token, "password": "another-copper-lantern-2"})),
        )
        .await;
    assert_eq!(status, 400, "the link works once");
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.0, 401);
    assert_eq!(login(&app, "ada@example.com", new_password).await.0, 200);
    app.wait_email("ada@example.com", "password was changed").await;
    app.stack.stop().await;
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    let (_, laptop) = login(&app, "ada@example.com", PASSWORD).await;
    let (_, phone) = login(&app, "ada@example.com", PASSWORD).await;
    let laptop_token = laptop["access_token"].as_str().unwrap();
    let wrong = json!({"current_password": "not-my-password-at-all-1", "new_password": "copper-lantern-meadow-81"});
    assert_eq!(app.call("POST", "/auth/password/change", Some(laptop_token), Some(wrong)).await.0, 403);
    let change = json!({"current_password": PASSWORD, "new_password": "copper-lantern-meadow-81"});
    assert_eq!(app.call("POST", "/auth/password/change", Some(laptop_token), Some(change)).await.0, 204);
    assert_eq!(app.call("GET", "/me", Some(laptop_token), None).await.0, 200);
    assert_eq!(app.call("GET", "/me", Some(phone["access_token"].as_str().unwrap()), None).await.0, 401);
    // Revoking a session by id, and not someone else's.
    let (_, tablet) = login(&app, "ada@example.com", "copper-lantern-meadow-81").await;
    let path = format!("/auth/sessions/{}", tablet["session_id"].as_str().unwrap());
    assert_eq!(app.call("DELETE", &path, Some(laptop_token), None).await.0, 204);
    assert_eq!(app.call("DELETE", &path, Some(laptop_token), None).await.0, 404);
    assert_eq!(app.call("GET", "/me", Some(tablet["access_token"].as_str().unwrap()), None).await.0, 401);
    app.stack.stop().await;
}

/// Each process keeps the access tokens it verified (`shared::auth::verified_tokens`), but
/// not the sessions: a session revoked through one process (one Lambda container) ends its
/// tokens at once in every other that shares the store, though each has the token cached.
#[tokio::test]
async fn a_session_revoked_through_one_process_ends_at_once_in_another() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    let (_, pair) = login(&app, "ada@example.com", PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let other = local::start_wrapped(
        // The same issuer, as two instances of one API behind one URL.
        testkit::services::config(
            app.dir.path(),
            &[
                ("GROUNDWORK_PORT", "0"),
                ("GROUNDWORK_APP_URL", "https://app.acme.test"),
                ("GROUNDWORK_API_URL", &app.base),
            ],
        ),
        std::sync::Arc::new(shared::clock::SystemClock),
        |services, _| services,
    )
    .await
    .expect("a second stack on the same data starts");
    let other_me = || async {
        let response = app.client.get(format!("http://{}/me", other.addr)).bearer_auth(&access).send().await.unwrap();
        response.status().as_u16()
    };
    // Both processes verify the token and keep it.
    for _ in 0..2 {
        assert_eq!(app.call("GET", "/me", Some(&access), None).await.0, 200);
        assert_eq!(other_me().await, 200);
    }
    assert!(!app.stack.services.tokens.verified().is_empty());
    assert_eq!(app.call("POST", "/auth/logout", Some(&access), None).await.0, 204);
    assert_eq!(other_me().await, 401);
    assert_eq!(app.call("GET", "/me", Some(&access), None).await.0, 401);
    other.stop().await;
    app.stack.stop().await;
}

#[tokio::test]
async fn the_audit_log_records_security_events_in_an_unbroken_chain() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    login(&app, "ada@example.com", "wrong-password-entirely-9").await;
    let (_, s) = login(&app, "ada@example.com", PASSWORD).await;
    let token = s["access_token"].as_str().unwrap();
    let (status, page) = app.call("GET", "/me/audit?limit=2", Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    let actions: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["user.logged_in", "user.login_failed"]);
    let (_, rest) = app
        .call("GET", &format!("/me/audit?cursor={}", page["next_cursor"].as_str().unwrap()), Some(token), None)
        .await;
    let older: Vec<&str> = rest["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(older, ["user.email_verified", "user.signed_up"]);
    let uid = app.call("GET", "/me", Some(token), None).await.1["id"].as_str().unwrap().to_owned();
    let stream = format!("user:{uid}");
    let verified = shared::audit::verify(app.stack.services.store.as_ref(), &stream).await.unwrap();
    assert_eq!(verified, Ok(4));
    assert_eq!(app.call("GET", "/me/audit?cursor=garbage", Some(token), None).await.0, 400);
    app.stack.stop().await;
}

#[tokio::test]
async fn jwks_and_discovery_describe_the_signing_keys() {
    let app = TestApp::spawn(&[]).await;
    let (status, jwks) = app.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(status, 200);
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(key["n"].as_str().unwrap().len() > 300);
    let (_, discovery) = app.call("GET", "/.well-known/openid-configuration", None, None).await;
    assert_eq!(discovery["issuer"], app.base.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{}/.well-known/jwks.json", app.base));
    app.stack.stop().await;
}

fn totp_code(secret: &str, offset_secs: i64) -> String {
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .with_account_name("ada@example.com")
        .build()
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    totp.generate(now.checked_add_signed(offset_secs).unwrap()).to_string()
}

#[tokio::test]
async fn two_factor_enrolment_login_recovery_and_disable() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    let (_, s) = login(&app, "ada@example.com", PASSWORD).await;
    let token = s["access_token"].as_str().unwrap().to_owned();

    let (status, enrol) = app.call("POST", "/auth/mfa/totp/enroll", Some(&token), None).await;
    assert_eq!(status, 200, "{enrol}");
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    assert!(enrol["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"));
    assert!(enrol["qr_svg"].as_str().unwrap().contains("<svg"));
    let (status, bad) = app.call("POST", "/auth/mfa/totp/confirm", Some(&token), Some(json!({"code": "000000"}))).await;
    assert_eq!((status, bad["code"].clone()), (422, json!("invalid_code")));
    let (status, codes) =
        app.call("POST", "/auth/mfa/totp/confirm", Some(&token), Some(json!({"code": totp_code(&secret, 0)}))).await;
    assert_eq!(status, 200, "{codes}");
    let recovery: Vec<String> =
        codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);

    // The password alone now yields a challenge, not tokens.
    let (status, step1) = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(step1["mfa_required"], true);
    assert!(step1.get("access_token").is_none());
    let challenge = step1["challenge"].clone();
    let (status, _) =
        app.call("POST", "/auth/login/mfa", None, Some(json!({"challenge": challenge, "code": "123456"}))).await;
    assert_eq!(status, 401);
    // The code of the next step works (skew), then cannot be replayed.
    let code = totp_code(&secret, 30);
    let (status, pair) =
        app.call("POST", "/auth/login/mfa", None, Some(json!({"challenge": challenge, "code": code}))).await;
    assert_eq!(status, 200, "{pair}");
    assert!(pair["access_token"].is_string());
    let (_, again) = login(&app, "ada@example.com", PASSWORD).await;
    let (status, _) =
        app.call("POST", "/auth/login/mfa", None, Some(json!({"challenge": again["challenge"], "code": code}))).await;
    assert_eq!(status, 401, "a code works once");
    // A recovery code works once, whatever its formatting.
    let formatted = recovery[0].to_uppercase();
    let (status, _) = app
        .call(
            "POST",
            "/auth/login/mfa",
            None,
            Some(json!({"challenge": again["challenge"], "recovery_code": formatted})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, third) = login(&app, "ada@example.com", PASSWORD).await;
    let (status, _) = app
        .call(
            "POST",
            "/auth/login/mfa",
            None,
            Some(json!({"challenge": third["challenge"], "recovery_code": recovery[0]})),
        )
        .await;
    assert_eq!(status, 401, "a recovery code works once");

    // Disabling needs the password and a code.
    let wrong = json!({"password": "not-my-password-at-all-1", "code": recovery[1]});
    assert_eq!(app.call("DELETE", "/auth/mfa/totp", Some(&token), Some(wrong)).await.0, 403);
    let right = json!({"password": PASSWORD, "code": recovery[1]});
    assert_eq!(app.call("DELETE", "/auth/mfa/totp", Some(&token), Some(right)).await.0, 204);
    let (_, plain) = login(&app, "ada@example.com", PASSWORD).await;
    assert!(plain["access_token"].is_string());
    let (_, audit) = app.call("GET", "/me/audit?limit=100", Some(&token), None).await;
    let actions: Vec<&str> =
        audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"mfa.enabled") && actions.contains(&"mfa.disabled"), "{actions:?}");
    app.stack.stop().await;
}

#[tokio::test]
async fn guessing_second_factor_codes_is_throttled() {
    let app = TestApp::spawn(&[]).await;
    signup_and_verify(&app, "ada@example.com").await;
    let (_, s) = login(&app, "ada@example.com", PASSWORD).await;
    let token = s["access_token"].as_str().unwrap().to_owned();
    let (_, enrol) = app.call("POST", "/auth/mfa/totp/enroll", Some(&token), None).await;
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    app.call("POST", "/auth/mfa/totp/confirm", Some(&token), Some(json!({"code": totp_code(&secret, 0)}))).await;
    let (_, step1) = login(&app, "ada@example.com", PASSWORD).await;
    for guess in 0..5 {
        let code = format!("{:06}", 111_111 * (guess + 1) % 1_000_000);
        let (status, _) = app
            .call("POST", "/auth/login/mfa", None, Some(json!({"challenge": step1["challenge"], "code": code})))
            .await;
        assert_eq!(status, 401);
    }
    let (status, _) = app
        .call(
            "POST",
            "/auth/login/mfa",
            None,
            Some(json!({"challenge": step1["challenge"], "code": totp_code(&secret, 30)})),
        )
        .await;
    assert_eq!(status, 429, "locked out after five wrong codes, even with the right one");
    app.stack.stop().await;
}
