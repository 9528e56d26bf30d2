//! OpenID Connect login against a real provider on loopback (npm `oidc-provider`, started
//! by the test command): enterprise SSO with just-in-time membership, a social provider
//! configured by env, and the attacks: a wrong nonce, a replayed state, a wrong issuer, an
//! expired ID token, an email domain the organization does not allow.

use std::sync::Arc;

use serde_json::{Value, json};
use shared::clock::{Clock, ManualClock};
use testkit::app::{TestApp, idp, register};

/// A browser: follows the login from our `/start` through the provider's login page, as
/// `login`, and returns the URL the provider sends back to our callback.
async fn browser_login(app: &TestApp, provider: &str, login: &str) -> String {
    let browser = testkit::app::browser();
    let res = browser.get(format!("{}/auth/oidc/{provider}/start", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
    let url = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(url.contains("code_challenge_method=S256") && url.contains("nonce=") && url.contains("state="), "{url}");
    testkit::app::follow_login(&browser, url, login, &app.base).await
}

async fn callback(app: &TestApp, url: &str) -> (u16, Value) {
    let path = url.strip_prefix(&app.base).unwrap();
    app.call("GET", path, None, None).await
}

fn param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    let raw = query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap();
    raw.replace("%3A", ":").replace("%2F", "/")
}

const LOOPBACK: (&str, &str) = ("GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK", "true");

/// An organization with SSO through the loopback provider, just-in-time membership of Acme.
async fn sso_org(app: &TestApp, admin: &str, issuer: &str) -> (String, String) {
    let (org_id, acme) = crate::domains::org_with_account(app, admin).await;
    let (client_id, secret) = register(&format!("{}/auth/oidc/org-{org_id}/callback", app.base)).await;
    let sso = json!({"issuer": issuer, "client_id": client_id, "client_secret": secret,
                     "allowed_domains": ["acme.test"], "jit_account_id": acme, "jit_role": "member"});
    let (status, body) = app.call("PUT", &format!("/organizations/{org_id}/sso"), Some(admin), Some(sso)).await;
    assert_eq!(status, 200, "{body}");
    (org_id, acme)
}

#[tokio::test]
async fn enterprise_sso_signs_in_creates_the_user_and_joins_the_account() {
    // The loopback provider is an organization's: tenant-configured URLs reach loopback only
    // with the test switch.
    let app = TestApp::spawn(&[LOOPBACK]).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, acme) = sso_org(&app, &admin, &idp()).await;
    let provider = format!("org-{org}");

    let back = browser_login(&app, &provider, "carol@acme.test").await;
    let (status, tokens) = callback(&app, &back).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let (_, me) = app.call("GET", "/me", Some(access), None).await;
    assert_eq!(me["email"], "carol@acme.test");
    assert_eq!(me["email_verified"], true);
    let (_, accounts) = app.call("GET", "/accounts", Some(access), None).await;
    assert_eq!(accounts["accounts"][0]["id"], acme.as_str());
    assert_eq!(accounts["accounts"][0]["role"], "member");
    // A second login is the same person.
    let (_, again) = callback(&app, &browser_login(&app, &provider, "carol@acme.test").await).await;
    let (_, me2) = app.call("GET", "/me", Some(again["access_token"].as_str().unwrap()), None).await;
    assert_eq!(me2["id"], me["id"]);
    // The callback works once: a replayed state is refused.
    let (status, _) = callback(&app, &back).await;
    assert_eq!(status, 401);
    // An address outside the organization's domains is refused, and no user is made.
    let (status, body) = callback(&app, &browser_login(&app, &provider, "mallory@evil.test").await).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("domain_not_allowed")));
    let email_key = shared::store::Key::new("EMAIL#mallory@evil.test", "EMAIL");
    assert!(app.stack.services.store.get(&email_key).await.unwrap().is_none());
    // An address someone holds already (the admin's, with a password) is not the IdP's to
    // sign in while the organization has not verified its domain.
    let (status, body) = callback(&app, &browser_login(&app, &provider, "admin@acme.test").await).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("domain_not_verified")), "{body}");
    // An unknown provider is a 404.
    assert_eq!(app.call("GET", "/auth/oidc/nobody/start", None, None).await.0, 404);
}

/// A stack with the loopback provider configured as the social provider `loopback` (its
/// client registered for the stack's port, chosen first), and `extra` settings.
async fn with_social_provider(extra: &[(&str, &str)]) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let (client_id, secret) = register(&format!("{base}/auth/oidc/loopback/callback")).await;
    let (issuer, port) = (idp(), port.to_string());
    let mut settings = vec![
        ("GROUNDWORK_PORT", port.as_str()),
        ("GROUNDWORK_OIDC_PROVIDERS", "loopback"),
        ("GROUNDWORK_OIDC_LOOPBACK_ISSUER", issuer.as_str()),
        ("GROUNDWORK_OIDC_LOOPBACK_CLIENT_ID", client_id.as_str()),
        ("GROUNDWORK_OIDC_LOOPBACK_CLIENT_SECRET", secret.as_str()),
    ];
    settings.extend_from_slice(extra);
    TestApp::spawn(&settings).await
}

#[tokio::test]
async fn a_social_provider_from_env_links_to_the_existing_verified_user() {
    let app = with_social_provider(&[]).await;
    let (password_token, ada_id) = app.user("ada@example.com").await;
    let (status, tokens) = callback(&app, &browser_login(&app, "loopback", "ada@example.com").await).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, me) = app.call("GET", "/me", Some(tokens["access_token"].as_str().unwrap()), None).await;
    assert_eq!(me["id"], ada_id.as_str(), "the verified address links to the same user");
    assert_eq!(app.call("GET", "/me", Some(&password_token), None).await.0, 200, "her other session lives on");
    let (_, audit) = app.call("GET", "/me/audit", Some(&password_token), None).await;
    assert!(audit.to_string().contains("user.identity_linked"));
    // A provider that does not vouch for the address gets no account.
    let (status, body) = callback(&app, &browser_login(&app, "loopback", "unverified@example.com").await).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("email_not_verified")));
}

#[tokio::test]
async fn a_wrong_nonce_a_wrong_issuer_and_an_expired_id_token_are_refused() {
    let clock = ManualClock::at(shared::clock::SystemClock.now_ms());
    let app = TestApp::spawn_with_clock(&[LOOPBACK], Arc::new(clock.clone())).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, _) = sso_org(&app, &admin, &idp()).await;
    let provider = format!("org-{org}");
    let store = app.stack.services.store.as_ref();

    // The control: untouched, the same login works (so each refusal below is the attack's).
    let back = browser_login(&app, &provider, "dan@acme.test").await;
    assert_eq!(callback(&app, &back).await.0, 200);

    // Wrong nonce: the ID token carries the nonce of the request, not the one we expect.
    let back = browser_login(&app, &provider, "carol@acme.test").await;
    let key = shared::store::Key::new(format!("OIDC#{}", shared::auth::hash_secret(&param(&back, "state"))), "STATE");
    store.update(shared::store::Update::new(key).set("nonce", "not-the-nonce-we-sent")).await.unwrap();
    assert_eq!(callback(&app, &back).await.0, 401);

    // Wrong issuer in the answer (RFC 9207 `iss`).
    let back = browser_login(&app, &provider, "carol@acme.test").await;
    let forged = back.replace("iss=http%3A%2F%2F127.0.0.1", "iss=https%3A%2F%2Fevil.test");
    assert_ne!(forged, back);
    assert_eq!(callback(&app, &forged).await.0, 401);

    // Expired ID token: the provider's tokens live 60 s; five minutes pass on our clock.
    let back = browser_login(&app, &provider, "carol@acme.test").await;
    clock.advance_ms(5 * 60_000);
    assert_eq!(callback(&app, &back).await.0, 401);
    assert!(
        store.get(&shared::store::Key::new("EMAIL#carol@acme.test", "EMAIL")).await.unwrap().is_none(),
        "no refused login made a user"
    );

    // An organization configured with an issuer the provider does not claim to be.
    let wrong = idp().replace("127.0.0.1", "localhost");
    let (admin2, _) = app.user("admin2@acme.test").await;
    let (org2, _) = sso_org(&app, &admin2, &wrong).await;
    let (status, _) = app.call("GET", &format!("/auth/oidc/org-{org2}/start"), None, None).await;
    assert_eq!(status, 401, "discovery names another issuer");
}

#[tokio::test]
async fn a_verified_domain_that_requires_sso_refuses_passwords_and_social_sign_in_and_admits_through_the_idp() {
    let dns = testkit::dns::server();
    let app = with_social_provider(&[LOOPBACK, ("GROUNDWORK_DNS_RESOLVER", &dns)]).await;
    let domain = crate::domains::fresh_domain();
    let erin = format!("erin@{domain}");
    // Erin signed up with a password before her organization required SSO.
    let (_, erin_id) = app.user(&erin).await;

    // Requiring SSO needs SSO configured.
    let (admin, _) = app.user("admin@acme.test").await;
    let (_, bare) = app.call("POST", "/organizations", Some(&admin), Some(json!({"name": "No SSO"}))).await;
    let require = json!({"domain": domain, "require_sso": true});
    let path = format!("/organizations/{}/domains", bare["id"].as_str().unwrap());
    let (status, body) = app.call("POST", &path, Some(&admin), Some(require)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("sso_not_configured")), "{body}");

    // The organization's SSO allows only acme.test; its verified domain is let in too.
    let (org, acme) = sso_org(&app, &admin, &idp()).await;
    crate::domains::verified(&app, &admin, &org, &domain, json!({})).await;

    // No other organization's IdP may speak for the verified domain, nor for free mail.
    let (_, other) = app.call("POST", "/organizations", Some(&admin), Some(json!({"name": "Other"}))).await;
    let other_sso = format!("/organizations/{}/sso", other["id"].as_str().unwrap());
    for (domains, status, code) in
        [(json!([domain]), 409, "domain_claimed"), (json!(["gmail.com"]), 422, "shared_mail_domain")]
    {
        let sso = json!({"issuer": idp(), "client_id": "c", "client_secret": "s", "allowed_domains": domains});
        let (got, body) = app.call("PUT", &other_sso, Some(&admin), Some(sso)).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    }

    // Erin is one of the organization's admins, signed in with her password. Requiring SSO
    // for her own domain from a session that did not prove the SSO works could lock her
    // out: refused. Another admin may.
    let (_, erin_tokens) =
        app.call("POST", "/auth/login", None, Some(json!({"email": erin, "password": testkit::app::PASSWORD}))).await;
    let erin_access = erin_tokens["access_token"].as_str().unwrap();
    let erin_refresh = erin_tokens["refresh_token"].as_str().unwrap();
    let add = json!({"user_id": erin_id});
    assert_eq!(app.call("POST", &format!("/organizations/{org}/admins"), Some(&admin), Some(add)).await.0, 200);
    let domain_path = format!("/organizations/{org}/domains/{domain}");
    let require = json!({"require_sso": true});
    let (status, body) = app.call("PATCH", &domain_path, Some(erin_access), Some(require.clone())).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("sso_session_required")), "{body}");
    assert_eq!(app.call("PATCH", &domain_path, Some(&admin), Some(require)).await.0, 200);
    // Her password session ends at its next refresh.
    let (status, body) = app.call("POST", "/auth/refresh", None, Some(json!({"refresh_token": erin_refresh}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("sso_required")), "{body}");

    // A password is refused for any address there, existing or not, before it is checked.
    let login = json!({"email": erin, "password": testkit::app::PASSWORD});
    let (status, body) = app.call("POST", "/auth/login", None, Some(login)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("sso_required")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains(&format!("/auth/oidc/org-{org}/start")), "{body}");
    let signup = json!({"email": format!("new@{domain}"), "password": "a long unguessable passphrase 42"});
    let (status, body) = app.call("POST", "/auth/signup", None, Some(signup)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("sso_required")), "{body}");
    // So is a social provider, even one that vouches for the address.
    let (status, body) = callback(&app, &browser_login(&app, "loopback", &erin).await).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("sso_required")), "{body}");

    // The organization's IdP signs her in as the same user, and adds her to the account.
    let (status, tokens) = callback(&app, &browser_login(&app, &format!("org-{org}"), &erin).await).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.call("GET", "/me", Some(access), None).await.1["id"], erin_id.as_str());
    assert_eq!(app.call("GET", "/accounts", Some(access), None).await.1["accounts"][0]["id"], acme.as_str());

    // Signed in through the SSO, she may turn the requirement on herself.
    let lift = json!({"require_sso": false});
    assert_eq!(app.call("PATCH", &domain_path, Some(&admin), Some(lift.clone())).await.0, 200);
    assert_eq!(app.call("PATCH", &domain_path, Some(access), Some(json!({"require_sso": true}))).await.0, 200);

    // Lifted, passwords work again.
    assert_eq!(app.call("PATCH", &domain_path, Some(&admin), Some(lift)).await.0, 200);
    let login = json!({"email": erin, "password": testkit::app::PASSWORD});
    assert_eq!(app.call("POST", "/auth/login", None, Some(login)).await.0, 200);
}
