//! External issuers for rent-auth tests. Amazon Cognito is the loopback AWS server's own user
//! pools ([`CognitoPool`]), so its tokens are the shapes its implementation emits. Clerk,
//! WorkOS, Auth0 and Entra ID are paid services with no local server: [`StandInIssuer`]
//! publishes a JWKS on loopback and signs whatever claims a test gives it, so each test
//! writes the token shape that vendor documents.

use serde_json::{Value, json};
use shared::auth::keys::SigningKeys;

/// A JWKS on loopback and the private key behind it.
pub struct StandInIssuer {
    keys: SigningKeys,
    /// Where its JWKS is served.
    pub jwks_url: String,
}

impl StandInIssuer {
    /// A fresh RSA key, its JWKS served on a free loopback port for the life of the runtime.
    ///
    /// # Panics
    /// If the key cannot be made or the port bound.
    pub async fn start() -> Self {
        let keys = SigningKeys::from_pkcs8(&[shared::auth::keys::generate_pkcs8().unwrap()]).unwrap();
        let jwks = keys.jwks().clone();
        let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { keys, jwks_url }
    }

    /// `claims`, signed (RS256, the key's `kid`).
    ///
    /// # Panics
    /// If signing fails.
    pub fn sign(&self, claims: &Value) -> String {
        shared::auth::tokens::sign(&self.keys, claims).unwrap()
    }
}

/// A Cognito user pool on the loopback AWS server, with one app client that may read
/// `email` and `email_verified`.
pub struct CognitoPool {
    /// The pool id (`us-east-1_...`).
    pub id: String,
    /// The app client id.
    pub client_id: String,
}

/// ID and access tokens from a sign-in.
pub struct CognitoTokens {
    /// `token_use: id`, the app client in `aud`.
    pub id_token: String,
    /// `token_use: access`, the app client in `client_id`.
    pub access_token: String,
}

async fn cognito(action: &str, body: Value) -> Value {
    let (ok, text) = try_cognito(action, body).await;
    assert!(ok, "Cognito {action}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn try_cognito(action: &str, body: Value) -> (bool, String) {
    let res = reqwest::Client::new()
        .post(crate::moto::url())
        .header("x-amz-target", format!("AWSCognitoIdentityProviderService.{action}"))
        .header("content-type", "application/x-amz-json-1.1")
        // The server routes by the credential scope; it does not check the signature.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cognito-idp/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let ok = res.status().is_success();
    (ok, res.text().await.unwrap())
}

impl CognitoPool {
    /// A fresh pool and app client.
    ///
    /// # Panics
    /// If the loopback AWS server refuses.
    pub async fn create() -> Self {
        let pool = cognito("CreateUserPool", json!({"PoolName": crate::moto::unique_name("pool")})).await;
        let id = pool["UserPool"]["Id"].as_str().unwrap().to_owned();
        let client = cognito(
            "CreateUserPoolClient",
            json!({"UserPoolId": id, "ClientName": "api", "ReadAttributes": ["email", "email_verified"]}),
        )
        .await;
        let client_id = client["UserPoolClient"]["ClientId"].as_str().unwrap().to_owned();
        Self { id, client_id }
    }

    /// The issuer its tokens carry.
    pub fn issuer(&self) -> String {
        format!("https://cognito-idp.us-east-1.amazonaws.com/{}", self.id)
    }

    /// Where the loopback server publishes its keys.
    pub fn jwks_url(&self) -> String {
        format!("{}/{}/.well-known/jwks.json", crate::moto::url(), self.id)
    }

    /// Creates `username` (unless it exists) with `email` (`email_verified` as Cognito stores it: a string),
    /// signs in as it, and returns the tokens.
    ///
    /// # Panics
    /// If the loopback AWS server refuses.
    pub async fn sign_in(&self, username: &str, email: &str, verified: bool) -> CognitoTokens {
        self.sign_in_through(&self.client_id.clone(), username, email, verified).await
    }

    /// Another app client of the same pool (another application).
    ///
    /// # Panics
    /// If the loopback AWS server refuses.
    pub async fn other_client(&self) -> String {
        let client = cognito(
            "CreateUserPoolClient",
            json!({"UserPoolId": self.id, "ClientName": "other", "ReadAttributes": ["email", "email_verified"]}),
        )
        .await;
        client["UserPoolClient"]["ClientId"].as_str().unwrap().to_owned()
    }

    /// [`Self::sign_in`] through the app client `client_id`.
    ///
    /// # Panics
    /// If the loopback AWS server refuses.
    pub async fn sign_in_through(&self, client_id: &str, username: &str, email: &str, verified: bool) -> CognitoTokens {
        let password = "Correct-Horse-Battery-9";
        let attributes =
            json!([{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": verified.to_string()}]);
        let (created, text) = try_cognito(
            "AdminCreateUser",
            json!({"UserPoolId": self.id, "Username": username, "UserAttributes": attributes, "MessageAction": "SUPPRESS"}),
        )
        .await;
        assert!(created || text.contains("UsernameExists"), "Cognito AdminCreateUser: {text}");
        cognito(
            "AdminSetUserPassword",
            json!({"UserPoolId": self.id, "Username": username, "Password": password, "Permanent": true}),
        )
        .await;
        let auth = cognito(
            "AdminInitiateAuth",
            json!({"UserPoolId": self.id, "ClientId": client_id, "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                   "AuthParameters": {"USERNAME": username, "PASSWORD": password}}),
        )
        .await;
        let result = &auth["AuthenticationResult"];
        CognitoTokens {
            id_token: result["IdToken"].as_str().unwrap().to_owned(),
            access_token: result["AccessToken"].as_str().unwrap().to_owned(),
        }
    }
}
