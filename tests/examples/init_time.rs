//! Measures the init time of Lambda bootstrap binaries: from process start to the first
//! `GET /runtime/invocation/next` on a Runtime API stub, then the first invocation, over
//! several cold starts each, and prints a table. Build the binaries in release first;
//! `infra/bench.sh` does it all.
//!
//! Usage: `init_time NAME=PATH [NAME=PATH...]`

use std::time::{Duration, Instant};

use testkit::events::api_gateway_v2;
use testkit::runtime_api::{Outcome, RuntimeApi, lambda_env};

const RUNS: usize = 20;

#[tokio::main]
async fn main() {
    let targets: Vec<(String, String)> =
        std::env::args().skip(1).filter_map(|a| a.split_once('=').map(|(n, p)| (n.to_owned(), p.to_owned()))).collect();
    assert!(!targets.is_empty(), "usage: init_time NAME=PATH [NAME=PATH...]");
    println!(
        "{:<14} {:>6} {:>10} {:>10} {:>10} {:>12}",
        "binary", "runs", "init p50", "init p90", "init max", "first call"
    );
    for (name, path) in targets {
        let mut inits = Vec::new();
        let mut firsts = Vec::new();
        for _ in 0..RUNS {
            let dir = tempfile::tempdir().unwrap();
            let api = RuntimeApi::start().await;
            let started = Instant::now();
            let mut child = tokio::process::Command::new(&path)
                .env_clear()
                .envs(lambda_env(&api, &name))
                .env("GROUNDWORK_DATA_DIR", dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("binary starts");
            api.wait_for_init(Duration::from_secs(10)).await;
            inits.push(started.elapsed());
            let t = Instant::now();
            let out = api.invoke(api_gateway_v2("GET", "/health", None, None)).await;
            firsts.push(t.elapsed());
            assert!(matches!(out, Outcome::Response(_)), "{name}: {out:?}");
            child.kill().await.ok();
        }
        inits.sort();
        firsts.sort();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "{:<14} {:>6} {:>10} {:>10} {:>10} {:>12}",
            name,
            RUNS,
            ms(inits[RUNS / 2]),
            ms(inits[RUNS * 9 / 10]),
            ms(inits[RUNS - 1]),
            ms(firsts[RUNS / 2])
        );
    }
}
