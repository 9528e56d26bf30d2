//! A browser app on another origin calling the local stack (CORS).

use testkit::app::TestApp;

#[tokio::test]
async fn a_spa_on_an_allowed_origin_passes_the_preflight_of_every_function() {
    let app = TestApp::spawn(&[("GROUNDWORK_CORS_ORIGINS", "http://localhost:5173")]).await;
    for (method, path) in [("POST", "/auth/login"), ("GET", "/me"), ("POST", "/accounts"), ("GET", "/plans")] {
        let res = app
            .client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base))
            .header("origin", "http://localhost:5173")
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 204, "{method} {path}");
        assert_eq!(res.headers()["access-control-allow-origin"], "http://localhost:5173");
        assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    }
    let res = app
        .client
        .post(format!("{}/auth/login", app.base))
        .header("origin", "http://localhost:5173")
        .json(&serde_json::json!({"email": "nobody@example.com", "password": "wrong-password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401, "the request itself is served as usual");
    assert_eq!(res.headers()["access-control-allow-origin"], "http://localhost:5173");
    let exposed = res.headers()["access-control-expose-headers"].to_str().unwrap().to_owned();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/auth/login", app.base))
        .header("origin", "http://localhost:5174")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none(), "another origin: no CORS headers");
    app.stack.stop().await;
}
