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
    // This server issues no tokens in this mode: it publishes no keys or issuer metadata.
    assert_eq!(app.call("GET", "/.well-known/openid-configuration", None, None).await.0, 404);
    assert_eq!(app.call("GET", "/.well-known/jwks.json", None, None).await.0, 404);
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

/// A rent-auth stack for `provider`, with its issuer, JWKS and audience setting.
async fn rent_auth_app(provider: &str, issuer: &str, jwks: &str, audience: Option<&str>) -> TestApp {
    let mut vars = vec![
        ("GROUNDWORK_EXTERNAL_PROVIDER", provider),
        ("GROUNDWORK_EXTERNAL_ISSUER", issuer),
        ("GROUNDWORK_EXTERNAL_JWKS_URL", jwks),
    ];
    if let Some(audience) = audience {
        vars.push(("GROUNDWORK_EXTERNAL_AUDIENCE", audience));
    }
    TestApp::spawn(&vars).await
}

/// `GET /me` with `token`: the status and the answer.
async fn me(app: &TestApp, token: &str) -> (u16, Value) {
    app.call("GET", "/me", Some(token), None).await
}

#[tokio::test]
async fn cognito_id_and_access_tokens_are_accepted_for_our_app_client_only() {
    let pool = testkit::issuers::CognitoPool::create().await;
    let app = rent_auth_app("cognito", &pool.issuer(), &pool.jwks_url(), Some(&pool.client_id)).await;

    // Cognito writes email_verified as the string "true".
    let erin = pool.sign_in("erin", "erin@acme.test", true).await;
    let (status, by_id) = me(&app, &erin.id_token).await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["email"], "erin@acme.test", "a verified Cognito address is the user's: {by_id}");
    let (status, by_access) = me(&app, &erin.access_token).await;
    assert_eq!(status, 200, "{by_access}");
    assert_eq!(by_access["id"], by_id["id"], "both tokens name one subject, one user");

    // "false" is not verified: the user exists, without the address.
    let (status, unverified) = me(&app, &pool.sign_in("zed", "zed@acme.test", false).await.id_token).await;
    assert_eq!(status, 200, "{unverified}");
    assert!(unverified["email"].as_str().unwrap().ends_with(".invalid"), "{unverified}");

    // The same pool's other app client is another application: neither token is for us.
    let other = pool.other_client().await;
    let elsewhere = pool.sign_in_through(&other, "erin", "erin@acme.test", true).await;
    assert_eq!(me(&app, &elsewhere.id_token).await.0, 401, "an ID token for another app client");
    assert_eq!(me(&app, &elsewhere.access_token).await.0, 401, "an access token for another app client");
    app.stack.stop().await;
}

/// Claims valid for the next ten minutes, on top of `extra`.
fn fresh(extra: Value) -> Value {
    let now = shared::clock::SystemClock.now_secs();
    let mut claims = json!({"iat": now, "nbf": now, "exp": now + 600});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    claims
}

#[tokio::test]
async fn each_vendors_token_shape_is_accepted_and_tokens_for_other_apps_are_refused() {
    let vendor = testkit::issuers::StandInIssuer::start().await;
    let jwks = vendor.jwks_url.clone();
    // (provider, issuer, audience setting, tokens that must pass, tokens that must not)
    struct Case {
        provider: &'static str,
        issuer: &'static str,
        audience: Option<&'static str>,
        accepted: Vec<Value>,
        refused: Vec<(&'static str, Value)>,
    }
    let tenant = "9188040d-6c67-4c5b-b112-36a304b66dad";
    let api = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
    let cases = vec![
        Case {
            provider: "auth0",
            issuer: "https://acme.eu.auth0.com/",
            audience: Some("https://api.acme.test"),
            accepted: vec![
                // An access token for the API, alone and beside /userinfo (`openid` scope).
                json!({"iss": "https://acme.eu.auth0.com/", "sub": "auth0|ada", "aud": "https://api.acme.test",
                       "azp": "spa-client", "scope": "openid"}),
                json!({"iss": "https://acme.eu.auth0.com/", "sub": "auth0|ada",
                       "aud": ["https://api.acme.test", "https://acme.eu.auth0.com/userinfo"], "azp": "spa-client"}),
            ],
            refused: vec![
                (
                    "an ID token (aud: the client)",
                    json!({"iss": "https://acme.eu.auth0.com/", "sub": "auth0|ada", "aud": "spa-client"}),
                ),
                (
                    "another API's token",
                    json!({"iss": "https://acme.eu.auth0.com/", "sub": "auth0|ada", "aud": ["https://billing.other.test"]}),
                ),
            ],
        },
        Case {
            provider: "clerk",
            issuer: "https://clerk.acme.test",
            audience: Some("https://app.acme.test"),
            accepted: vec![
                json!({"iss": "https://clerk.acme.test", "sub": "user_2abc", "azp": "https://app.acme.test",
                                   "sid": "sess_2abc", "v": 2, "fva": [3, -1]}),
            ],
            refused: vec![
                (
                    "obtained by another origin",
                    json!({"iss": "https://clerk.acme.test", "sub": "user_2abc", "azp": "https://evil.test"}),
                ),
                ("no authorized party", json!({"iss": "https://clerk.acme.test", "sub": "user_2abc"})),
            ],
        },
        Case {
            provider: "entra",
            issuer: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            audience: Some(api),
            accepted: vec![
                // v2.0: the client id as aud.
                json!({"iss": format!("https://login.microsoftonline.com/{tenant}/v2.0"), "sub": "AAAA-v2", "aud": api,
                       "tid": tenant, "ver": "2.0", "amr": ["pwd", "mfa"]}),
                // v1.0: the other issuer form, the app ID URI as aud.
                json!({"iss": format!("https://sts.windows.net/{tenant}/"), "sub": "AAAA-v1", "aud": format!("api://{api}"),
                       "tid": tenant, "ver": "1.0"}),
            ],
            refused: vec![
                (
                    "another tenant",
                    json!({"iss": format!("https://login.microsoftonline.com/{tenant}/v2.0"), "sub": "B",
                                          "aud": api, "tid": "00000000-0000-0000-0000-000000000001"}),
                ),
                (
                    "Microsoft Graph's token",
                    json!({"iss": format!("https://sts.windows.net/{tenant}/"), "sub": "B",
                                                   "aud": "https://graph.microsoft.com", "tid": tenant}),
                ),
            ],
        },
        Case {
            provider: "workos",
            issuer: "https://api.workos.com",
            audience: None,
            accepted: vec![json!({"iss": "https://api.workos.com", "sub": "user_01HBEQKA6K", "sid": "session_01HQ",
                                   "org_id": "org_01HR", "role": "member", "jti": "01HQSX"})],
            refused: vec![("another issuer", json!({"iss": "https://api.workos.com/evil", "sub": "user_01HBEQKA6K"}))],
        },
        Case {
            provider: "generic",
            issuer: "https://idp.acme.test",
            audience: Some("groundwork-api"),
            accepted: vec![json!({"iss": "https://idp.acme.test", "sub": "s1", "aud": ["other", "groundwork-api"]})],
            refused: vec![("no audience", json!({"iss": "https://idp.acme.test", "sub": "s1"}))],
        },
    ];
    for case in cases {
        let app = rent_auth_app(case.provider, case.issuer, &jwks, case.audience).await;
        for claims in &case.accepted {
            let (status, body) = me(&app, &vendor.sign(&fresh(claims.clone()))).await;
            assert_eq!(status, 200, "{}: {claims} refused: {body}", case.provider);
        }
        for (what, claims) in &case.refused {
            assert_eq!(
                me(&app, &vendor.sign(&fresh(claims.clone()))).await.0,
                401,
                "{}: {what} accepted",
                case.provider
            );
        }
        app.stack.stop().await;
    }
}

#[tokio::test]
async fn an_address_counts_only_when_the_vendor_vouches_for_it() {
    let vendor = testkit::issuers::StandInIssuer::start().await;
    let tenant = "9188040d-6c67-4c5b-b112-36a304b66dad";
    let issuer = format!("https://login.microsoftonline.com/{tenant}/v2.0");
    let app = rent_auth_app("entra", &issuer, &vendor.jwks_url, Some("api-client")).await;
    let token = |sub: &str, extra: Value| {
        let mut claims = json!({"iss": issuer, "sub": sub, "aud": "api-client", "tid": tenant});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        vendor.sign(&fresh(claims))
    };
    // Entra's `email` is whatever the tenant's admin typed (the "nOAuth" flaw): without
    // `xms_edov` it proves nothing, and must not become the user's address.
    let (_, unproven) = me(&app, &token("mallory", json!({"email": "ceo@victim.test"}))).await;
    assert!(unproven["email"].as_str().unwrap().ends_with(".invalid"), "{unproven}");
    let (_, proven) = me(&app, &token("grace", json!({"email": "grace@acme.test", "xms_edov": true}))).await;
    assert_eq!(proven["email"], "grace@acme.test", "{proven}");
    app.stack.stop().await;

    // Any vendor: booleans spelled as strings are read as such, and nothing else vouches.
    let app = rent_auth_app("generic", "https://idp.acme.test", &vendor.jwks_url, Some("api")).await;
    let token = |sub: &str, verified: Value| {
        vendor.sign(&fresh(json!({"iss": "https://idp.acme.test", "sub": sub, "aud": "api",
                                  "email": format!("{sub}@acme.test"), "email_verified": verified})))
    };
    for (sub, verified, vouched) in [
        ("s-true", json!("true"), true),
        ("s-false", json!("false"), false),
        ("b-true", json!(true), true),
        ("b-false", json!(false), false),
        ("odd", json!("yes please"), false),
    ] {
        let (status, body) = me(&app, &token(sub, verified.clone())).await;
        assert_eq!(status, 200, "{verified}: {body}");
        assert_eq!(body["email"] == format!("{sub}@acme.test"), vouched, "{verified}: {body}");
    }
    app.stack.stop().await;
}
