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
    // Every route the template wires (a test holds the template and the document equal),
    // but SCIM's catch-all, which the SCIM endpoints behind it answer.
    let scim = tenancy::scim::protocol::TEMPLATE_ROUTE;
    let wired = testkit::template::http_routes().iter().filter(|r| r.path != scim).count();
    assert_eq!(checked, wired, "every documented operation was tried");
    let res = client.get(format!("{base}/scim/v2/ServiceProviderConfig")).send().await.unwrap();
    assert_eq!(res.status(), 401, "the SCIM endpoints are mounted (and want the directory token)");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/scim+json"));
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

/// A `groundwork` process serving `data` on `port`, with `plans` as its catalogue.
fn process(data: &std::path::Path, port: u16, plans: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_groundwork"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GROUNDWORK_DATA_DIR", data)
        .env("GROUNDWORK_PORT", port.to_string())
        .env("GROUNDWORK_PLANS_FILE", plans)
        .env("GROUNDWORK_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the groundwork binary starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{base} did not become healthy");
}

async fn json_call(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

/// The load test of the rate limits: one API key sent from many clients to two
/// `groundwork` processes over one data directory (one SQLite store) is admitted at its
/// plan's rate, never more, with the IETF draft's fields on every answer, and the account's
/// monthly count is exactly what was admitted. Prints a report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_over_one_store_hold_an_api_key_to_its_plans_rate() {
    const RATE: f64 = 20.0;
    const BURST: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rates = "api_requests_per_second = 20, api_burst = 10, api_requests_per_month = 1000000 }";
    let plans = std::path::PathBuf::from(testkit::services::plans_file_with(
        dir.path(),
        testkit::services::FREE_API_LIMITS,
        rates,
    ));
    let client = reqwest::Client::new();
    // One after the other: the first writes the signing keys the second reads.
    let (port_a, port_b) = (free_port(), free_port());
    let _a = process(&data, port_a, &plans);
    let (a, b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    wait_healthy(&client, &a).await;
    let _b = process(&data, port_b, &plans);
    wait_healthy(&client, &b).await;

    // A user, an account and an API key, through the first process.
    let credentials = serde_json::json!({"email": "ada@example.com", "password": "violet-anchor-trombone-47"});
    json_call(&client, format!("{a}/auth/signup"), None, credentials.clone()).await;
    let mut link = None;
    for _ in 0..300 {
        let mails = std::fs::read_dir(data.join("outbox")).into_iter().flatten().flatten();
        link = mails.filter_map(|m| std::fs::read_to_string(m.path()).ok()).find(|t| t.contains("token="));
        if link.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let token = testkit::app::token_in(&link.expect("the verification email"));
    json_call(&client, format!("{a}/auth/verify-email"), None, serde_json::json!({"token": token})).await;
    let session = json_call(&client, format!("{a}/auth/login"), None, credentials).await;
    let user = session["access_token"].as_str().unwrap().to_owned();
    let account = json_call(&client, format!("{a}/accounts"), Some(&user), serde_json::json!({"name": "Acme"})).await;
    let account = account["id"].as_str().unwrap().to_owned();
    let key = serde_json::json!({"name": "load", "role": "admin"});
    let key = json_call(&client, format!("{a}/accounts/{account}/api-keys"), Some(&user), key).await;
    let key = key["secret"].as_str().unwrap().to_owned();

    let month_at_start =
        shared::auth::rate_limit::month_of(shared::clock::Clock::now_ms(&shared::clock::SystemClock)).0;
    // Eight clients, each alternating between the two processes, for three seconds.
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (client, key) = (client.clone(), key.clone());
            let urls = [format!("{a}/accounts/{account}/members"), format!("{b}/accounts/{account}/members")];
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut i = c;
                while started.elapsed() < std::time::Duration::from_secs(3) {
                    let res = client.get(&urls[i % 2]).bearer_auth(&key).send().await.unwrap();
                    i += 1;
                    let field = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let (policy, state, retry) = (field("ratelimit-policy"), field("ratelimit"), field("retry-after"));
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.unwrap_or(Value::Null);
                    seen.push((status, policy, state, retry, body));
                }
                seen
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();

    let admitted = answers.iter().filter(|a| a.0 == 200).count();
    let refused = answers.iter().filter(|a| a.0 == 429).count();
    assert_eq!(
        admitted + refused,
        answers.len(),
        "only 200 and 429: {:?}",
        answers.iter().find(|a| a.0 != 200 && a.0 != 429)
    );
    for (status, policy, state, retry, body) in &answers {
        assert!(policy.starts_with("\"api-key\";q=20;w=1"), "{policy}");
        assert!(state.starts_with("\"api-key\";r="), "{state}");
        if *status == 429 {
            assert_eq!((retry.as_str(), body["limit"].as_str()), ("1", Some("api_requests_per_second")), "{body}");
        } else {
            assert!(policy.contains(", \"api-month\";q=1000000;w="), "{policy}");
        }
    }
    // GCRA admits at most the burst plus one request per interval elapsed.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let allowance = BURST + (RATE * elapsed).floor() as u64;
    println!(
        "rate limits across two processes: {} requests in {elapsed:.2} s from 8 clients, {admitted} admitted \
         (allowance at 20/s with a burst of 10: {allowance}), {refused} refused with 429",
        answers.len()
    );
    assert!(u64::try_from(admitted).unwrap() <= allowance, "over-admitted: {admitted} > {allowance}");
    assert!(admitted >= usize::try_from(BURST).unwrap().min(answers.len()), "the burst is admitted");
    assert!(refused > 0, "the clients sent faster than the rate: {} requests", answers.len());

    // The account's month counts exactly what ran, setup included (none of it used the key).
    let store = shared::store::sqlite::SqliteStore::open(
        &data.join("groundwork.sqlite3"),
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .unwrap();
    let (month, _, _) = shared::auth::rate_limit::month_of(shared::clock::Clock::now_ms(&shared::clock::SystemClock));
    let account_id: shared::id::AccountId = account.parse().unwrap();
    if month == month_at_start {
        let usage = shared::store::Store::get(&store, &shared::keys::api_usage(account_id, &month)).await.unwrap();
        assert_eq!(usage.map(|u| u.data["n"].clone()), Some(serde_json::json!(admitted)));
    }
}
