//! Rent-auth mode: an external issuer's tokens (here, ID tokens of the loopback OpenID
//! Connect provider) are accepted instead of ours; each subject becomes a Groundwork user on
//! first sight, and the rest of the system cannot tell the difference.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use shared::clock::{Clock, ManualClock};
use testkit::app::{TestApp, idp, register};

const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// An ID token for `login` from the provider, for a client registered here.
async fn id_token(client: &(String, String), login: &str) -> String {
    let verifier = "rent-auth-test-verifier-0123456789-abcdefghijklmnop";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let url = format!(
        "{}/auth?client_id={}&response_type=code&scope=openid%20email&redirect_uri={REDIRECT}&state=s&nonce=n\
         &code_challenge={challenge}&code_challenge_method=S256",
        idp(),
        client.0
    );
    let browser = testkit::app::browser();
    let back = testkit::app::follow_login(&browser, url, login, REDIRECT).await;
    let code = back.split(['?', '&']).find_map(|kv| kv.strip_prefix("code=")).unwrap().to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    let res = reqwest::Client::new()
        .post(format!("{}/token", idp()))
        .basic_auth(&client.0, Some(&client.1))
        .form(&form)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    body["id_token"].as_str().unwrap_or_else(|| panic!("no ID token: {body}")).to_owned()
}

#[tokio::test]
async fn the_external_issuers_tokens_are_accepted_instead_of_ours() {
    let client = register(REDIRECT).await;
    let other = register(REDIRECT).await;
    let clock = ManualClock::at(shared::clock::SystemClock.now_ms());
    let issuer = idp();
    let jwks = format!("{issuer}/jwks");
    let app = TestApp::spawn_with_clock(
        &[
            ("GROUNDWORK_EXTERNAL_ISSUER", &issuer),
            ("GROUNDWORK_EXTERNAL_JWKS_URL", &jwks),
            ("GROUNDWORK_EXTERNAL_AUDIENCE", &client.0),
        ],
        Arc::new(clock.clone()),
    )
    .await;

    let token = id_token(&client, "erin@acme.test").await;
    let (status, me) = app.call("GET", "/me", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
    let (_, again) = app.call("GET", "/me", Some(&token), None).await;
    assert_eq!(again["id"], me["id"], "the subject maps to one user");
    // The rest of the system sees an ordinary user.
    let (status, account) = app.call("POST", "/accounts", Some(&token), Some(json!({"name": "Erin Co"}))).await;
    assert_eq!(status, 201, "{account}");
    let (status, list) = app.call("GET", "/accounts", Some(&token), None).await;
    assert_eq!((status, list["accounts"][0]["name"].as_str()), (200, Some("Erin Co")));

    // Another subject is another user.
    let (_, frank) = app.call("GET", "/me", Some(&id_token(&client, "frank@acme.test").await), None).await;
    assert_ne!(frank["id"], me["id"]);

    // Refused: a token for another audience, a tampered one, ours, and our sign-in routes.
    assert_eq!(app.call("GET", "/me", Some(&id_token(&other, "erin@acme.test").await), None).await.0, 401);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"iss":"x","sub":"erin@acme.test","aud":"y","exp":99999999999}"#);
    assert_eq!(app.call("GET", "/me", Some(&parts.join(".")), None).await.0, 401);
    let (status, body) = app
        .call("POST", "/auth/login", None, Some(json!({"email": "erin@acme.test", "password": "whatever-it-is-123"})))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("external_auth")));
    let ours = {
        let t = &app.stack.services.tokens;
        let now = clock.now_secs();
        let claims = shared::auth::tokens::AccessClaims {
            iss: t.issuer.clone(),
            aud: t.audience.clone(),
            sub: me["id"].as_str().unwrap().to_owned(),
            sid: "01J00000000000000000000000".into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "j".into(),
        };
        shared::auth::tokens::sign(t.signing_keys().await.unwrap(), &claims).unwrap()
    };
    assert_eq!(app.call("GET", "/me", Some(&ours), None).await.0, 401);

    // Expired: the provider's ID tokens live 60 s.
    clock.advance_ms(5 * 60_000);
    assert_eq!(app.call("GET", "/me", Some(&token), None).await.0, 401);
}
