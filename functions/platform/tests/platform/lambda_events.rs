//! The platform function as Lambda runs it: real API Gateway v2 events, first through
//! `lambda_http`'s adapter in-process, then through the real bootstrap binary talking to a
//! Lambda Runtime API stub, on the embedded store and on DynamoDB (the loopback API server).

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use serde_json::Value;
use shared::services::Services;
use testkit::events::api_gateway_v2;
use testkit::runtime_api::{Outcome, RuntimeApi, lambda_env};

async fn embedded_services(dir: &std::path::Path) -> Services {
    testkit::services::services(dir, &[]).await
}

/// Feeds one event through the same adapter `lambda_http::run` uses.
async fn invoke_in_process(services: Services, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).expect("a valid API Gateway event");
    let mut adapter = Adapter::from(platform::app(services));
    let response = adapter.call(LambdaEvent::new(request, Context::default())).await.expect("a response");
    serde_json::to_value(response).unwrap()
}

fn body_json(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a body")).expect("a JSON body")
}

#[tokio::test]
async fn health_answers_an_api_gateway_event() {
    let dir = tempfile::tempdir().unwrap();
    let res =
        invoke_in_process(embedded_services(dir.path()).await, api_gateway_v2("GET", "/health", None, None)).await;
    assert_eq!(res["statusCode"], 200);
    assert_eq!(res["headers"]["content-type"], "application/json");
    // The request id on the response is API Gateway's, for correlation with its access log.
    assert_eq!(res["headers"]["x-request-id"], "RqA1bC2dIAMEVxw=");
    let body = body_json(&res);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"], "reachable");
    assert_eq!(body["version"], shared::VERSION);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_through_lambda_too() {
    let dir = tempfile::tempdir().unwrap();
    let services = embedded_services(dir.path()).await;
    let res = invoke_in_process(services.clone(), api_gateway_v2("GET", "/missing", None, None)).await;
    assert_eq!(res["statusCode"], 404);
    assert_eq!(res["headers"]["content-type"], "application/problem+json");
    assert_eq!(body_json(&res)["request_id"], "RqA1bC2dIAMEVxw=");
    let res =
        invoke_in_process(services, api_gateway_v2("POST", "/health", Some("{}"), Some("application/json"))).await;
    assert_eq!(res["statusCode"], 405);
}

#[tokio::test]
async fn openapi_document_lists_the_platform_routes() {
    let dir = tempfile::tempdir().unwrap();
    let res =
        invoke_in_process(embedded_services(dir.path()).await, api_gateway_v2("GET", "/openapi.json", None, None))
            .await;
    assert_eq!(res["statusCode"], 200);
    let doc = body_json(&res);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/health"]["get"].is_object());
    assert!(doc["paths"]["/openapi.json"]["get"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

/// Starts the real bootstrap binary against a runtime API stub.
async fn start_binary(extra_env: &[(String, String)]) -> (RuntimeApi, tokio::process::Child) {
    let api = RuntimeApi::start().await;
    let child = api.spawn(env!("CARGO_BIN_EXE_platform"), "platform", extra_env).await;
    (api, child)
}

/// The settings of a function deployed on `table`, with the AWS API at the loopback server.
fn dynamodb_env(table: &str) -> Vec<(String, String)> {
    [
        ("GROUNDWORK_STORE", "dynamodb"),
        ("GROUNDWORK_TABLE", table),
        ("AWS_ENDPOINT_URL", &testkit::moto::url()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn health_through(api: &RuntimeApi) -> Value {
    match api.invoke(api_gateway_v2("GET", "/health", None, None)).await {
        Outcome::Response(r) => r,
        Outcome::Error(e) => panic!("invocation error: {e}"),
    }
}

#[tokio::test]
async fn the_bootstrap_binary_serves_events_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let (api, mut child) = start_binary(&[("GROUNDWORK_DATA_DIR".into(), dir.path().display().to_string())]).await;
    for _ in 0..3 {
        let res = health_through(&api).await;
        assert_eq!(res["statusCode"], 200, "{res}");
        assert_eq!(body_json(&res)["store"], "reachable");
    }
    child.kill().await.ok();
}

#[tokio::test]
async fn the_bootstrap_binary_serves_events_on_dynamodb() {
    let client = testkit::moto::dynamodb().await;
    let table = testkit::moto::fresh_table(&client).await;
    let (api, mut child) = start_binary(&dynamodb_env(&table)).await;
    let res = health_through(&api).await;
    assert_eq!(res["statusCode"], 200, "{res}");
    assert_eq!(body_json(&res)["store"], "reachable");
    child.kill().await.ok();
}

#[tokio::test]
async fn health_is_503_when_the_table_is_gone() {
    let (api, mut child) = start_binary(&dynamodb_env("no-such-table")).await;
    let res = health_through(&api).await;
    assert_eq!(res["statusCode"], 503, "{res}");
    assert_eq!(res["headers"]["content-type"], "application/problem+json");
    assert_eq!(res["headers"]["retry-after"], "2");
    let body = body_json(&res);
    assert_eq!(body["store"], "unreachable");
    assert_eq!(body["code"], "unavailable");
    child.kill().await.ok();
}

#[tokio::test]
async fn a_missing_setting_fails_init_naming_the_variable() {
    let api = RuntimeApi::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_platform"))
        .env_clear()
        .envs(lambda_env(&api, "platform"))
        .env("GROUNDWORK_STORE", "dynamodb")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("GROUNDWORK_TABLE"), "{text}");
}

#[tokio::test]
async fn deep_health_names_the_dependency_that_is_down() {
    let (api, mut child) = start_binary(&dynamodb_env("no-such-table")).await;
    let res = match api.invoke(api_gateway_v2("GET", "/health/deep", None, None)).await {
        Outcome::Response(r) => r,
        Outcome::Error(e) => panic!("invocation error: {e}"),
    };
    assert_eq!(res["statusCode"], 503, "{res}");
    assert_eq!(res["headers"]["content-type"], "application/problem+json");
    let checks = &body_json(&res)["checks"];
    assert_eq!(checks["status"], "unavailable", "{checks}");
    assert_eq!(checks["store"]["status"], "unavailable", "{checks}");
    // Without the operator token: no error text, no backlogs.
    assert!(checks["store"]["error"].is_null() && checks["queues"]["jobs"]["backlog"].is_null(), "{checks}");
    // What does answer says so: the queues and the keys.
    assert_eq!(checks["queues"]["jobs"]["status"], "ok", "{checks}");
    assert_eq!(checks["signing_keys"]["status"], "ok", "{checks}");
    child.kill().await.ok();
}
