//! The local stack as a developer runs it: a real server on a free port, over the embedded
//! adapters in a temporary data directory.

use serde_json::Value;
use shared::config::Config;
use shared::store::{Item, Key, Put};

fn config(dir: &std::path::Path) -> Config {
    testkit::services::config(dir, &[("GROUNDWORK_PORT", "0")])
}

#[tokio::test]
async fn serves_health_and_the_api_description() {
    let dir = tempfile::tempdir().unwrap();
    let stack = local::start(config(dir.path())).await.unwrap();
    let base = format!("http://{}", stack.addr);
    let health: Value = reqwest::get(format!("{base}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["environment"], "local");
    let res = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["paths"]["/health"].is_object());
    stack.stop().await;
}

#[tokio::test]
async fn every_documented_route_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let stack = local::start(config(dir.path())).await.unwrap();
    let base = format!("http://{}", stack.addr);
    let client = reqwest::Client::new();
    let doc = platform::api_description();
    let mut checked = 0;
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, present) in methods {
            if !present {
                continue;
            }
            // Path parameters get a syntactically valid placeholder.
            let concrete: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "01ARZ3NDEKTSV4RRFFQ69G5FAV" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let res = client.request(method.parse().unwrap(), format!("{base}{concrete}")).send().await.unwrap();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert!(
                !(body["code"] == "not_found" && body["detail"] == "no route matches this path")
                    && body["code"] != "method_not_allowed",
                "{method} {path} is documented but not mounted"
            );
            checked += 1;
        }
    }
    // Every route the template wires (a test holds the template and the document equal).
    assert_eq!(checked, testkit::template::http_routes().len(), "every documented operation was tried");
    stack.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let stack = local::start(config(dir.path())).await.unwrap();
    stack.services.store.put(Put::new(Item::new(Key::new("KEEP", "1")).with("v", 7))).await.unwrap();
    stack.stop().await;
    let stack = local::start(config(dir.path())).await.unwrap();
    let item = stack.services.store.get(&Key::new("KEEP", "1")).await.unwrap().expect("kept across restarts");
    assert_eq!(item.data["v"], 7);
    stack.stop().await;
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = local::start(config(dir.path())).await.unwrap();
    let mut taken = config(dir.path());
    taken.server.port = first.addr.port();
    let err = local::start(taken).await.err().expect("the port is taken");
    assert!(format!("{err:#}").contains("binding 127.0.0.1:"), "{err:#}");
    first.stop().await;
}
