//! Sign-up defence: breached passwords (a loopback stand-in for Pwned Passwords' range API),
//! the bot check (a stand-in for Turnstile's siteverify), the email domain policy, and the
//! caps and suppressions that keep verification mail from being abused.

use serde_json::json;
use sha1::{Digest as _, Sha1};
use testkit::app::{PASSWORD, TestApp};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const BREACHED: &str = "correct-horse-battery-staple-1";

fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes()).iter().map(|b| format!("{b:02X}")).collect()
}

/// A range answer holding `password`'s suffix (seen `count` times, 0: padding only) among
/// padding entries, as the service answers with `Add-Padding: true`.
fn range_with(password: &str, count: u64) -> String {
    let suffix = &sha1_hex(password)[5..];
    format!("0018A45C4D1DEF81644B54AB7F969B88D65:0\r\n{suffix}:{count}\r\n00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0\r\n")
}

async fn pwned_stand_in(breached: &str) -> MockServer {
    let server = MockServer::start().await;
    mount_breached(&server, breached).await;
    server
}

/// Answers as Pwned Passwords would with `breached` in a breach (and nothing else).
async fn mount_breached(server: &MockServer, breached: &str) {
    let prefix = sha1_hex(breached)[..5].to_owned();
    Mock::given(method("GET"))
        .and(path(format!("/range/{prefix}")))
        .and(header("Add-Padding", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_string(range_with(breached, 52_256_179)))
        .mount(server)
        .await;
    // Any other prefix: only padding.
    Mock::given(method("GET"))
        .and(path_regex("^/range/[0-9A-F]{5}$"))
        .respond_with(ResponseTemplate::new(200).set_body_string(range_with("not this one", 0)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn breached_passwords_are_refused_when_chosen_and_flagged_when_used() {
    let pwned = pwned_stand_in(BREACHED).await;
    let app = TestApp::spawn(&[("GROUNDWORK_PWNED_PASSWORDS_URL", &pwned.uri())]).await;

    // Chosen at sign-up: refused, naming why.
    let signup = json!({"email": "breached@example.com", "password": BREACHED});
    let (status, problem) = app.call("POST", "/auth/signup", None, Some(signup)).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("breached_password")), "{problem}");
    // Only the first five characters of the SHA-1 left the process, with padding asked for.
    for request in pwned.received_requests().await.unwrap() {
        let prefix = request.url.path().trim_start_matches("/range/");
        assert_eq!(prefix.len(), 5, "{}", request.url);
        assert!(!request.url.as_str().contains(&sha1_hex(BREACHED)[5..]), "the suffix never leaves");
        assert!(request.body.is_empty());
        assert_eq!(request.headers.get("add-padding").unwrap(), "true");
    }

    // A password not in any breach goes through; changing to a breached one is refused.
    let (token, _) = app.user("clean@example.com").await;
    let change = json!({"current_password": PASSWORD, "new_password": BREACHED});
    let (status, problem) = app.call("POST", "/auth/password/change", Some(&token), Some(change)).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("breached_password")), "{problem}");
    let (status, _) =
        app.call("POST", "/auth/password/forgot", None, Some(json!({"email": "clean@example.com"}))).await;
    assert_eq!(status, 202);
    let reset = app.token_from_email("clean@example.com", "reset").await;
    let (status, problem) =
        app.call("POST", "/auth/password/reset", None, Some(json!({"token": reset, "password": BREACHED}))).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("breached_password")), "{problem}");
    let login = json!({"email": "clean@example.com", "password": PASSWORD});
    let (status, pair) = app.call("POST", "/auth/login", None, Some(login)).await;
    assert_eq!(status, 200);
    assert!(pair.get("password_breached").is_none(), "{pair}");
    app.stack.stop().await;
}

#[tokio::test]
async fn a_breached_password_in_use_logs_in_flagged_and_emailed_once_a_day() {
    // The user chose the password before it appeared in a breach.
    let pwned = pwned_stand_in("some other password").await;
    let app = TestApp::spawn(&[("GROUNDWORK_PWNED_PASSWORDS_URL", &pwned.uri())]).await;
    let email = "victim@example.com";
    let body = json!({"email": email, "password": BREACHED});
    assert_eq!(app.call("POST", "/auth/signup", None, Some(body.clone())).await.0, 202);
    let token = app.token_from_email(email, "Confirm your email address").await;
    assert_eq!(app.call("POST", "/auth/verify-email", None, Some(json!({"token": token}))).await.0, 200);
    let (_, pair) = app.call("POST", "/auth/login", None, Some(body.clone())).await;
    assert!(pair.get("password_breached").is_none(), "{pair}");

    // Then it leaked.
    pwned.reset().await;
    mount_breached(&pwned, BREACHED).await;
    for _ in 0..2 {
        let (status, pair) = app.call("POST", "/auth/login", None, Some(body.clone())).await;
        assert_eq!(status, 200, "{pair}");
        assert_eq!(pair["password_breached"], true, "{pair}");
    }
    app.drain().await;
    assert_eq!(app.emails(email, "appears in a data breach").len(), 1, "one notice a day");
    app.stack.stop().await;
}

#[tokio::test]
async fn an_unanswered_breach_check_never_blocks_sign_up() {
    let down = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).mount(&down).await;
    let app = TestApp::spawn(&[("GROUNDWORK_PWNED_PASSWORDS_URL", &down.uri())]).await;
    let body = json!({"email": "open@example.com", "password": BREACHED});
    assert_eq!(app.call("POST", "/auth/signup", None, Some(body)).await.0, 202, "fails open");
    app.stack.stop().await;
}

fn form_field(request: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(&request.body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn the_bot_check_guards_sign_up_and_password_forgot_when_configured() {
    let turnstile = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/siteverify"))
        .and(wiremock::matchers::body_string_contains("response=good-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true, "error-codes": []})))
        .mount(&turnstile)
        .await;
    Mock::given(method("POST"))
        .and(path("/siteverify"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": false, "error-codes": ["invalid-input-response"]})),
        )
        .mount(&turnstile)
        .await;
    let verify_url = format!("{}/siteverify", turnstile.uri());
    let app = TestApp::spawn(&[
        ("GROUNDWORK_CHALLENGE_PROVIDER", "turnstile"),
        ("GROUNDWORK_CHALLENGE_SECRET", "0x4AAAAAAA-test-secret"),
        ("GROUNDWORK_CHALLENGE_VERIFY_URL", &verify_url),
    ])
    .await;
    let signup = |token: Option<&str>| {
        let mut body = json!({"email": "human@example.com", "password": PASSWORD});
        if let Some(t) = token {
            body["challenge_token"] = json!(t);
        }
        body
    };
    let (status, problem) = app.call("POST", "/auth/signup", None, Some(signup(None))).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("challenge_required")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("challenge_token"), "names the field: {problem}");
    let (status, problem) = app.call("POST", "/auth/signup", None, Some(signup(Some("bot-token")))).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("challenge_failed")), "{problem}");
    assert_eq!(app.call("POST", "/auth/signup", None, Some(signup(Some("good-token")))).await.0, 202);
    let forgot = json!({"email": "human@example.com"});
    assert_eq!(app.call("POST", "/auth/password/forgot", None, Some(forgot)).await.0, 400);
    let forgot = json!({"email": "human@example.com", "challenge_token": "good-token"});
    assert_eq!(app.call("POST", "/auth/password/forgot", None, Some(forgot)).await.0, 202);

    // Verified server-side, with the secret and the client's address.
    let last = turnstile.received_requests().await.unwrap().pop().unwrap();
    assert_eq!(form_field(&last, "secret").as_deref(), Some("0x4AAAAAAA-test-secret"));
    assert_eq!(form_field(&last, "response").as_deref(), Some("good-token"));
    assert_eq!(form_field(&last, "remoteip").as_deref(), Some("127.0.0.1"));
    app.stack.stop().await;
}

#[tokio::test]
async fn the_domain_policy_refuses_disposable_and_free_mail_as_configured() {
    let app = TestApp::spawn(&[("GROUNDWORK_SIGNUP_EMAIL_POLICY", "business_only")]).await;
    for (email, expected) in [
        ("bot@mailinator.com", Some("disposable_email")),
        ("someone@inbox.mailinator.com", Some("disposable_email")),
        ("someone@gmail.com", Some("business_email_required")),
        ("buyer@acme-industries.com", None),
    ] {
        let (status, answer) =
            app.call("POST", "/auth/signup", None, Some(json!({"email": email, "password": PASSWORD}))).await;
        match expected {
            Some(code) => assert_eq!((status, answer["code"].as_str()), (422, Some(code)), "{email}: {answer}"),
            None => assert_eq!(status, 202, "{email}: {answer}"),
        }
    }
    app.stack.stop().await;
    let app = TestApp::spawn(&[("GROUNDWORK_SIGNUP_EMAIL_POLICY", "no_disposable")]).await;
    let body = json!({"email": "someone@gmail.com", "password": PASSWORD});
    assert_eq!(app.call("POST", "/auth/signup", None, Some(body)).await.0, 202);
    app.stack.stop().await;
}

#[tokio::test]
async fn verification_mail_is_capped_per_address_and_never_sent_to_suppressed_ones() {
    let app = TestApp::spawn(&[]).await;
    let target = "target@example.com";
    for _ in 0..6 {
        let body = json!({"email": target, "password": PASSWORD});
        assert_eq!(app.call("POST", "/auth/signup", None, Some(body)).await.0, 202, "the answer never changes");
    }
    app.drain().await;
    assert_eq!(app.emails(target, "Confirm your email address").len(), 3, "three links an hour at most");

    let bounced = shared::mail::EmailAddress::parse("bounced@example.com").unwrap();
    let suppression = shared::mail::suppression::Suppression {
        email: bounced.clone(),
        reason: shared::mail::suppression::Reason::Bounce,
        detail: "permanent".into(),
        at_ms: 0,
    };
    shared::mail::suppression::suppress(app.stack.services.store.as_ref(), &suppression).await.unwrap();
    let body = json!({"email": "bounced@example.com", "password": PASSWORD});
    assert_eq!(app.call("POST", "/auth/signup", None, Some(body)).await.0, 202);
    let body = json!({"email": "bounced@example.com"});
    assert_eq!(app.call("POST", "/auth/password/forgot", None, Some(body)).await.0, 202);
    app.drain().await;
    assert_eq!(app.emails_to("bounced@example.com"), 0, "nothing queued for a suppressed address");

    // An address no mail can reach is refused outright.
    let body = json!({"email": "someone@10.0.0.1", "password": PASSWORD});
    let (status, problem) = app.call("POST", "/auth/signup", None, Some(body)).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_email")), "{problem}");
    app.stack.stop().await;
}
