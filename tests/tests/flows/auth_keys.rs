//! Where access-token keys come from on AWS: the auth function reads its signing keys from
//! Secrets Manager at first use (here, the loopback AWS API server's); every other function
//! verifies with the public keys auth publishes at `/.well-known/jwks.json`, holding no
//! private key.

use base64::Engine as _;
use shared::config::Config;
use shared::error::ApiError;
use shared::services::Services;
use testkit::app::TestApp;
use testkit::moto;

fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).unwrap()
}

#[tokio::test]
async fn signing_keys_are_read_from_secrets_manager_at_first_use() {
    let client = aws_sdk_secretsmanager::Client::new(&moto::sdk_config().await);
    let name = moto::unique_name("jwt-keys");
    let der = shared::auth::keys::generate_pkcs8().unwrap();
    let value = base64::engine::general_purpose::STANDARD.encode(&der);
    client.create_secret().name(&name).secret_string(&value).send().await.expect("secret created");
    let expected = shared::auth::keys::SigningKeys::from_env_value(&value).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let url = moto::url();
    let services = Services::from_config(config(&[
        ("GROUNDWORK_DATA_DIR", &data),
        ("GROUNDWORK_JWT_KEYS_SECRET", &name),
        ("AWS_ENDPOINT_URL", &url),
    ]))
    .await
    .unwrap();
    let keys = services.tokens.signing_keys().await.unwrap();
    assert_eq!(keys.active_kid(), expected.active_kid());
    assert!(!dir.path().join("keys").exists(), "nothing generated locally");

    // A missing secret is a 503 (retry), not a crash, and nothing is cached.
    let services = Services::from_config(config(&[
        ("GROUNDWORK_DATA_DIR", &data),
        ("GROUNDWORK_JWT_KEYS_SECRET", "no-such-secret"),
        ("AWS_ENDPOINT_URL", &url),
    ]))
    .await
    .unwrap();
    assert!(matches!(services.tokens.signing_keys().await, Err(ApiError::Unavailable(_))));
}

#[tokio::test]
async fn other_functions_verify_with_the_published_jwks_only() {
    let app = TestApp::spawn(&[]).await;
    let (token, user_id) = app.user("ada@example.com").await;
    let data = app.dir.path().display().to_string();
    let jwks = format!("{}/.well-known/jwks.json", app.base);
    // Another function: same table, the API's issuer, the JWKS URL, no keys of its own.
    let verifier = Services::from_config(config(&[
        ("GROUNDWORK_DATA_DIR", &data),
        ("GROUNDWORK_API_URL", &app.base),
        ("GROUNDWORK_JWKS_URL", &jwks),
    ]))
    .await
    .unwrap();
    assert!(matches!(verifier.tokens.signing_keys().await, Err(ApiError::Unexpected(_))), "it cannot sign");
    let claims = verifier.tokens.verify(&token, verifier.clock.now_secs()).await.unwrap();
    assert_eq!(claims.sub, user_id);

    // A token signed with any other key is refused.
    let stranger =
        shared::auth::keys::SigningKeys::from_pkcs8(&[shared::auth::keys::generate_pkcs8().unwrap()]).unwrap();
    let mut forged = claims.clone();
    forged.jti = "forged".into();
    let forged = shared::auth::tokens::sign(&stranger, &forged).unwrap();
    assert!(matches!(verifier.tokens.verify(&forged, verifier.clock.now_secs()).await, Err(ApiError::Unauthenticated)));

    // Through a router: the request extractor verifies the same way (and checks the session).
    let router = auth::routes(verifier.clone());
    let req = axum::http::Request::builder()
        .uri("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(router, req).await.unwrap();
    assert_eq!(res.status(), 200);
}
