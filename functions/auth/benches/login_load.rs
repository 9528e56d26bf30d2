//! Load harness: logins at saturation, through the auth router on the embedded store, with
//! the password hashing pool (`shared::auth::password::HashingPool`: one thread per core,
//! reused argon2 memory, a bounded queue).
//!
//! - `saturated`: `CLIENTS` (default 8) clients log in back to back for `SECONDS` (default
//!   10), the queue bound at its default (64): every login is admitted; the report gives the
//!   rate, p50 and p99 (arrival-order queueing keeps p99 close to p50), the process's CPU per
//!   login and its peak memory.
//! - `overloaded`: eight times the clients against a queue bound of `CLIENTS`: the logins past
//!   the bound are refused at once with 503 `overloaded`; the report gives how many, how
//!   fast the refusals come back, and the admitted logins' p99, which the bound keeps near
//!   the saturated one.
//!
//! CPU comes from `/proc/self/stat` (user + system, clock ticks of 10 ms), memory from
//! `VmHWM` in `/proc/self/status` (the process's peak resident set, never lowered).
//! Run: `cargo bench -p auth --bench login_load` (`CLIENTS`, `SECONDS`).

#![allow(clippy::cast_precision_loss)]

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use support::{PASSWORD, UNLIMITED_USER_RATE, send, signed_up};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User plus system CPU of this process so far, in seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3: utime is 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(14) + ticks(15)) as f64 / 100.0
}

/// A line of `/proc/self/status` in MB (`VmHWM`, `VmRSS`).
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Outcome {
    admitted: Vec<Duration>,
    refused: Vec<Duration>,
    cpu: f64,
    wall: Duration,
}

async fn run(clients: u64, queue: u64, seconds: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue.to_string();
    let mut settings = UNLIMITED_USER_RATE.to_vec();
    settings.push(("GROUNDWORK_PASSWORD_HASH_QUEUE", &queue));
    let services = testkit::services::services(dir.path(), &settings).await;
    let app = auth::app(services.clone());
    // A few users, shared by the clients (the per-address brute-force limit counts failures
    // only; sign-ups from one address are limited, so there are at most eight).
    let users = clients.min(8);
    for u in 0..users {
        signed_up(&app, &services, &format!("user{u}@example.com")).await;
    }
    let cpu_before = cpu_secs();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = json!({"email": format!("user{}@example.com", c % users), "password": PASSWORD});
                let (mut admitted, mut refused) = (Vec::new(), Vec::new());
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (status, answer) = send(&app, "POST", "/auth/login", None, Some(body.clone())).await;
                    match status {
                        StatusCode::OK => admitted.push(t.elapsed()),
                        StatusCode::SERVICE_UNAVAILABLE if answer["code"] == "overloaded" => {
                            refused.push(t.elapsed());
                            // A client honouring Retry-After would wait a second; a short
                            // pause keeps the pressure on without spinning.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => panic!("login answered {other}: {answer}"),
                    }
                }
                (admitted, refused)
            })
        })
        .collect();
    let (mut admitted, mut refused) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, r) = t.await.unwrap();
        admitted.extend(a);
        refused.extend(r);
    }
    let wall = started.elapsed();
    admitted.sort();
    refused.sort();
    Outcome { admitted, refused, cpu: cpu_secs() - cpu_before, wall }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients = env_or("CLIENTS", 8);
    let seconds = env_or("SECONDS", 10);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "login load: argon2id m=19456 KiB t=2 p=1, {cores} hashing threads, {seconds} s per scenario, embedded store"
    );
    println!("peak memory before: {:.0} MB (VmHWM), resident {:.0} MB", status_mb("VmHWM"), status_mb("VmRSS"));
    println!(
        "{:<12} {:>8} {:>10} {:>10} {:>10} {:>9} {:>9} {:>11} {:>13} {:>10}",
        "scenario",
        "clients",
        "logins/s",
        "p50",
        "p99",
        "p99/p50",
        "refused",
        "refusal p99",
        "CPU per login",
        "peak MB"
    );
    for (name, c, queue) in [("saturated", clients, 64), ("overloaded", clients * 8, clients)] {
        let o = rt.block_on(run(c, queue, seconds));
        let (p50, p99) = (percentile(&o.admitted, 0.50), percentile(&o.admitted, 0.99));
        let n = o.admitted.len().max(1) as f64;
        println!(
            "{:<12} {:>8} {:>10.1} {:>10} {:>10} {:>9.2} {:>9} {:>11} {:>13} {:>10.0}",
            name,
            c,
            o.admitted.len() as f64 / o.wall.as_secs_f64(),
            ms(p50),
            ms(p99),
            p99.as_secs_f64() / p50.as_secs_f64().max(f64::MIN_POSITIVE),
            o.refused.len(),
            ms(percentile(&o.refused, 0.99)),
            ms(Duration::from_secs_f64(o.cpu / n)),
            status_mb("VmHWM"),
        );
    }
}
