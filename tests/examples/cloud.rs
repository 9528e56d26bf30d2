//! Cloud in a box, by hand: the whole system as `template.yaml` deploys it (every function
//! as its Lambda bootstrap binary behind its own Runtime API, the HTTP API, the SQS event
//! source mappings, the schedules on their rates, SES events through SNS), on loopback,
//! without AWS or Docker. `infra/cloud.sh` builds the binaries and runs it.
//!
//! `serve` (the default) prints the API's URL and runs until Ctrl-C, then prints each
//! function's latencies, what failed, and the calls the template's policies do not allow.
//! `journey` runs the critical journey on the local stack and on the harness, back to back,
//! and prints each request's latency on both. `init` starts every function cold, many
//! times, on the Lambda configuration (release builds, DynamoDB, SQS, SES, S3 and Secrets
//! Manager at the loopback server) next to a hello-world bootstrap. `keys` drives tenants'
//! traffic through the harness and prints the load on each DynamoDB partition, projected
//! to a peak rate against DynamoDB's per-partition limits.

use std::collections::BTreeMap;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use testkit::cloud::functions::Invocation;
use testkit::cloud::{Cloud, Options, PartitionLoad};
use testkit::journeys::Client;

#[derive(Parser)]
#[command(about = "Run Groundwork as template.yaml deploys it, on loopback")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API until Ctrl-C (schedules fire on their rates).
    Serve,
    /// Run the critical journey on the local stack and on the harness, and compare.
    Journey {
        /// How many times to run it on each (the first run on the harness is the cold one).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Start every function cold `runs` times on the Lambda configuration and report init,
    /// first invocation and peak memory next to a hello-world bootstrap.
    Init {
        /// Cold starts per function.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// The directory of the built binaries and of `examples/hello_lambda` (by default
        /// `target/release` when this harness is a release build: `cargo build --release
        /// --workspace --bins --examples`).
        #[arg(long)]
        binaries: Option<PathBuf>,
        /// Only these functions (logical ids), hello-world always.
        #[arg(long = "only")]
        only: Vec<String>,
        /// Run `PATH` instead of a function's own binary (`AuthFunction=PATH`): a candidate
        /// build, or a wrapper that traces it (it must `exec` the binary, or the memory
        /// measured is the wrapper's).
        #[arg(long = "binary", value_parser = parse_override)]
        overrides: Vec<(String, PathBuf)>,
    },
    /// Onboard tenants, drive their members' requests, and print each DynamoDB partition's
    /// load projected to `peak` requests a second.
    Keys {
        /// Tenants (accounts), each with an owner and invited members.
        #[arg(long, default_value_t = 6)]
        accounts: usize,
        /// People per account, the owner included (1 to 3: a new account's free plan has
        /// three seats).
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// Requests each person makes in the measured phase.
        #[arg(long, default_value_t = 16)]
        requests: usize,
        /// The peak rate the projection is for (requests a second, all tenants).
        #[arg(long, default_value_t = 2000.0)]
        peak: f64,
        /// The largest tenant's share of the peak (an account's partitions are projected
        /// at it).
        #[arg(long, default_value_t = 0.05)]
        largest_share: f64,
    },
}

async fn finish(cloud: &Cloud) -> bool {
    println!("\n{}", cloud.report());
    no_faults(cloud).await
}

/// Prints what failed, the calls the template's policies do not allow and the unrouted
/// sends; returns whether there were none.
async fn no_faults(cloud: &Cloud) -> bool {
    let faults = cloud.faults();
    for fault in &faults {
        println!("fault: {fault}");
    }
    let violations = cloud.iam_violations().await.unwrap_or_else(|e| vec![format!("the IAM check failed: {e:#}")]);
    for violation in &violations {
        println!("IAM: {violation}");
    }
    let unrouted = cloud.unrouted_sends().await.unwrap_or_else(|e| vec![format!("the send check failed: {e:#}")]);
    for send in &unrouted {
        println!("SES: {send}");
    }
    faults.is_empty() && violations.is_empty() && unrouted.is_empty()
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let cloud = Cloud::start(Options { timers: true, ..Options::default() }).await.unwrap_or_else(|e| {
                eprintln!("cloud-in-a-box did not start: {e:#}");
                std::process::exit(1)
            });
            println!("Groundwork, as template.yaml deploys it: {}", cloud.url);
            println!(
                "{} functions, {} routes, {} queue consumers, {} schedules; the AWS API server at {}; logs in {}",
                cloud.functions.len(),
                cloud.routes.len(),
                cloud.mappings.len(),
                cloud.schedules.len(),
                cloud.aws_url,
                cloud.dir.path().display()
            );
            println!("Ctrl-C (or SIGTERM) stops it and prints each function's latencies.");
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            let clean = finish(&cloud).await;
            // Exiting skips destructors: stop the server and the functions first.
            drop(cloud);
            std::process::exit(i32::from(!clean));
        }
        Command::Journey { runs } => {
            let mut table: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
            let mut clean = true;
            let mut order = Vec::new();
            let local = testkit::app::TestApp::spawn(&[]).await;
            let cloud = Cloud::start(Options::default()).await.expect("the harness starts");
            for run in 0..runs {
                // Each run signs up the same people: a fresh deployment per run after the first.
                let (local_run, cloud_run) = if run == 0 {
                    (testkit::journeys::critical_path(&local).await, testkit::journeys::critical_path(&cloud).await)
                } else {
                    let local = testkit::app::TestApp::spawn(&[]).await;
                    let fresh = Cloud::start(Options::default()).await.expect("the harness starts");
                    let runs = (
                        testkit::journeys::critical_path(&local).await,
                        testkit::journeys::critical_path(&fresh).await,
                    );
                    clean &= fresh.faults().is_empty() && fresh.iam_violations().await.is_ok_and(|v| v.is_empty());
                    runs
                };
                for (route, ms) in local_run {
                    if !order.contains(&route) {
                        order.push(route.clone());
                    }
                    table.entry(route).or_default().0.push(ms);
                }
                for (route, ms) in cloud_run {
                    table.entry(route).or_default().1.push(ms);
                }
            }
            println!("| request | local stack ms (median) | cloud-in-a-box ms (median) | ratio |\n|---|---|---|---|");
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            };
            for route in order {
                let (mut l, mut c) = table.remove(&route).unwrap_or_default();
                let (l, c) = (median(&mut l), median(&mut c));
                println!("| {route} | {l:.1} | {c:.1} | {:.1}× |", c / l);
            }
            // The first harness's latencies (its functions' cold starts included).
            let clean = finish(&cloud).await && clean;
            drop((cloud, local));
            std::process::exit(i32::from(!clean));
        }
        Command::Init { runs, binaries, only, overrides } => {
            let binaries = binaries.unwrap_or_else(testkit::cloud::binaries_dir);
            let clean = init_report(runs, binaries, &only, &overrides.into_iter().collect()).await;
            std::process::exit(i32::from(!clean));
        }
        Command::Keys { accounts, members, requests, peak, largest_share } => {
            let clean = partition_report(accounts, members, requests, peak, largest_share).await;
            std::process::exit(i32::from(!clean));
        }
    }
}

fn parse_override(text: &str) -> Result<(String, PathBuf), String> {
    let (logical, path) = text.split_once('=').ok_or("expected LOGICAL=PATH")?;
    Ok((logical.to_owned(), PathBuf::from(path)))
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let at = ((values.len() - 1) as f64 * p).round() as usize;
    values[at]
}

/// The event a function's first invocation gets: an unauthenticated request to one of its
/// routes (a probe, or a client whose token expired), an empty SQS batch, or its schedule.
fn first_event(cloud: &Cloud, logical: &str) -> Option<(String, Value)> {
    let mut routes: Vec<_> = cloud.routes.iter().filter(|r| r.function == logical).collect();
    routes.sort_by_key(|r| (r.method != "GET", r.path.contains('{'), r.path.len()));
    if let Some(route) = routes.first() {
        let path: Vec<String> = route
            .path
            .split('/')
            .map(|s| if s.starts_with('{') { "01JCLOUDINABOX0000000000000".to_owned() } else { s.to_owned() })
            .collect();
        let method = if route.method == "ANY" { "GET" } else { route.method.as_str() };
        let path = path.join("/");
        return Some((format!("{method} {path}"), testkit::events::api_gateway_v2(method, &path, None, None)));
    }
    if let Some(mapping) = cloud.mappings.iter().find(|m| m.function == logical) {
        return Some(("an empty SQS batch".into(), testkit::events::sqs(&mapping.queue_arn, &[])));
    }
    let rule = cloud.schedules.iter().find(|r| r.function == logical)?;
    Some((format!("schedule {}", rule.name), rule.event()))
}

/// Cold starts of every function (and of hello-world, as the platform function's
/// environment) on the Lambda configuration. Returns whether every one started and answered.
async fn init_report(
    runs: usize,
    binaries: PathBuf,
    only: &[String],
    overrides: &std::collections::HashMap<String, PathBuf>,
) -> bool {
    let cloud =
        Cloud::start(Options { binaries_dir: binaries.clone(), ..Options::default() }).await.unwrap_or_else(|e| {
            eprintln!("cloud-in-a-box did not start: {e:#}");
            std::process::exit(1)
        });
    // A misspelt name would otherwise measure nothing, or the function's own build.
    if let Some(unknown) = only.iter().chain(overrides.keys()).find(|n| !cloud.functions.contains_key(*n)) {
        let mut known: Vec<&String> = cloud.functions.keys().collect();
        known.sort();
        eprintln!("no function {unknown}; the template's: {known:?}");
        return false;
    }
    if let Some(skipped) = overrides.keys().find(|n| !only.is_empty() && !only.contains(n)) {
        eprintln!("--binary {skipped}=… names a function --only leaves out");
        return false;
    }
    if runs == 0 {
        eprintln!("--runs must be at least 1");
        return false;
    }
    let mut names: Vec<String> =
        cloud.functions.keys().filter(|n| only.is_empty() || only.contains(n)).cloned().collect();
    names.sort();
    let hello = binaries.join("examples/hello_lambda");
    let mut targets = vec![("hello-world".to_owned(), "PlatformFunction".to_owned(), Some(hello))];
    targets.extend(names.into_iter().map(|n| (n.clone(), n.clone(), overrides.get(&n).cloned())));
    println!(
        "cold starts on the Lambda configuration ({runs} each; binaries from {}; AWS at {})\n",
        binaries.display(),
        cloud.aws_url
    );
    println!(
        "| function | first event | init p50 ms | init p90 ms | init ÷ hello-world | first invocation p50 ms | peak memory MB |\n|---|---|---|---|---|---|---|"
    );
    let mut clean = true;
    let mut hello_p50 = f64::NAN;
    for (label, logical, binary) in targets {
        let Some((what, event)) = first_event(&cloud, &logical) else {
            println!("| {label} | no event source | | | | | |");
            continue;
        };
        let (mut inits, mut firsts, mut memory) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let environment = match cloud.new_environment(&logical, binary.clone()).await {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("{label}: {e:#}");
                    clean = false;
                    break;
                }
            };
            match environment.invoke(event.clone()).await {
                Invocation::Answered(_) | Invocation::Failed(_) => {}
                other => {
                    eprintln!("{label}: {other:?}");
                    clean = false;
                    break;
                }
            }
            #[expect(clippy::cast_precision_loss)]
            memory.push(environment.peak_memory_kib().await.unwrap_or_default() as f64 / 1024.0);
            let t = environment.timings();
            inits.extend(t.inits);
            firsts.extend(t.first);
        }
        let p50 = percentile(&mut inits, 0.5);
        if label == "hello-world" {
            hello_p50 = p50;
        }
        println!(
            "| {label} | {what} | {p50:.1} | {:.1} | {:.2} | {:.1} | {:.1} |",
            percentile(&mut inits, 0.9),
            p50 / hello_p50,
            percentile(&mut firsts, 0.5),
            percentile(&mut memory, 1.0)
        );
    }
    clean && no_faults(&cloud).await
}

/// A partition key's shape: the parts that name one entity (a ULID, an email, a hash, a
/// long number) become `<id>`, so `ACCOUNT#01J…` and `ACCOUNT#01K…` are one pattern; a
/// shard number (one or two digits: `OUTBOX#3`) becomes `<shard>`.
fn pattern(partition: &str) -> String {
    partition
        .split('#')
        .map(|part| {
            let digits = !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
            if digits && part.len() <= 2 {
                "<shard>"
            } else if digits || part.len() >= 16 || part.contains('@') {
                "<id>"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("#")
}

/// Sends a request as a client following the API's problem details would: a `conflict`
/// (the resource changed meanwhile: read it again and retry) is tried again, twice at most.
/// Each retry is printed (background jobs writing the same account cause them).
async fn retrying(client: &Client<'_>, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let mut attempt = 0;
    loop {
        let (status, answer) = client.call(method, path, Some(token), Some(body.clone())).await;
        if status != 409 || answer["code"] != "conflict" || attempt == 2 {
            return (status, answer);
        }
        attempt += 1;
        println!("{method} {path}: 409 conflict, retried");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Onboards `accounts` tenants of `members` people each; returns each tenant's id and its
/// people's access tokens, the owner's first.
async fn onboard(cloud: &Cloud, accounts: usize, members: usize) -> Vec<(String, Vec<String>)> {
    let mut tenants = Vec::new();
    for a in 0..accounts {
        // Each tenant signs up from its own network: sign-ups are limited per address.
        let network = u8::try_from(a % 250 + 1).expect("a byte");
        let client = Client::from_address(cloud, std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, network)));
        let owner = client.user(&format!("owner{a}@tenant{a}.example.com")).await;
        let (status, account) =
            client.call("POST", "/accounts", Some(&owner), Some(json!({"name": format!("Tenant {a}")}))).await;
        assert_eq!(status, 201, "account: {account}");
        let id = account["id"].as_str().expect("an account id").to_owned();
        let mut people = vec![owner.clone()];
        for m in 1..members {
            let email = format!("member{m}@tenant{a}.example.com");
            let path = format!("/accounts/{id}/invitations");
            let (status, invited) = retrying(&client, "POST", &path, &owner, json!({"email": email})).await;
            assert_eq!(status, 201, "invitation: {invited}");
            let invitation = testkit::app::token_in(&client.email(&email, "invited you to").await);
            let token = client.user(&email).await;
            let (status, joined) =
                retrying(&client, "POST", "/invitations/accept", &token, json!({"token": invitation})).await;
            assert_eq!(status, 200, "acceptance: {joined}");
            people.push(token);
        }
        println!("onboarded tenant {a} ({members} people)");
        tenants.push((id, people));
    }
    tenants
}

/// The request mix of the measured phase: the `i`-th request of a person of `account`.
fn request(i: usize, account: &str) -> (&'static str, String, Option<Value>) {
    match i % 8 {
        0 => ("GET", "/me".into(), None),
        1 => ("GET", "/accounts".into(), None),
        2 => ("GET", format!("/accounts/{account}"), None),
        3 => ("GET", format!("/accounts/{account}/members"), None),
        4 => ("GET", format!("/accounts/{account}/billing"), None),
        5 => ("POST", format!("/accounts/{account}/events"), Some(json!({"events": [{"name": "dashboard.viewed"}]}))),
        6 => ("GET", format!("/accounts/{account}/audit"), None),
        _ => ("GET", "/auth/sessions".into(), None),
    }
}

/// The simulation: onboarding, then every person's requests (the phase measured), then
/// every schedule fired once; prints each partition pattern's load and its projection.
async fn partition_report(accounts: usize, members: usize, requests: usize, peak: f64, largest_share: f64) -> bool {
    let cloud = Cloud::start(Options { record_keys: true, ..Options::default() }).await.unwrap_or_else(|e| {
        eprintln!("cloud-in-a-box did not start: {e:#}");
        std::process::exit(1)
    });
    if accounts == 0 || requests == 0 || !(1..=3).contains(&members) || !(0.0..=1.0).contains(&largest_share) {
        // Three seats: the plan every new account starts on (free) allows no more.
        eprintln!(
            "need --accounts and --requests of at least 1, --members from 1 to 3 (a new account's free plan \
             has three seats) and --largest-share from 0 to 1"
        );
        return false;
    }
    let tenants = onboard(&cloud, accounts, members).await;
    // The emails and jobs onboarding queued run before the measured phase starts.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    cloud.reset_partition_load().await.expect("the AWS server answers");
    let client = Client::new(&cloud);
    let mut sent = 0_usize;
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..requests {
        for (account, people) in &tenants {
            for token in people {
                let (method, path, body) = request(i, account);
                let (status, answer) = client.call(method, &path, Some(token), body).await;
                assert!(status < 500, "{method} {path}: {status} {answer}");
                if status >= 300 {
                    *refused.entry(format!("{method} {} → {status}", pattern(&path.replace('/', "#")))).or_default() +=
                        1;
                }
                sent += 1;
            }
        }
    }
    // Let the jobs the requests staged run before reading the load.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let load = cloud.partition_load().await.expect("the AWS server records partition load");
    #[expect(clippy::cast_precision_loss)]
    let (sent_f, accounts_f) = (sent as f64, accounts as f64);
    println!(
        "\n{sent} requests from {} people in {accounts} accounts; projected to {peak} requests/s, an account's \
         partitions at {:.0}% of it (DynamoDB: 3,000 read and 1,000 write units/s per partition)\n",
        accounts * members,
        largest_share * 100.0
    );
    for (what, count) in &refused {
        println!("answered with an error (part of the mix: a member's role): {what} ×{count}");
    }
    print_patterns(&load, |units, per_entity| {
        let per_request = units / sent_f;
        // An entity's partition carries its account's share of the simulation (1 in
        // `accounts`); projected at the largest account's share instead.
        if per_entity { per_request * accounts_f * largest_share * peak } else { per_request * peak }
    });

    cloud.reset_partition_load().await.expect("the AWS server answers");
    let mut clean = true;
    for rule in cloud.schedules.clone() {
        match cloud.fire(&rule.name).await {
            Ok(Invocation::Answered(_)) => {}
            other => {
                eprintln!("schedule {}: {other:?}", rule.name);
                clean = false;
            }
        }
    }
    let load = cloud.partition_load().await.expect("the AWS server records partition load");
    println!("\nevery schedule fired once ({} rules), with {accounts} accounts:\n", cloud.schedules.len());
    print_patterns(&load, |_, _| f64::NAN);
    clean && no_faults(&cloud).await
}

/// Prints one row per (kind, index, pattern): partitions, units, the hottest partition's
/// units and `project(units of the hottest, whether the pattern names an entity)`. A
/// sharded key (`<shard>`) is projected as one key: few tenants fill few shards, so its
/// hottest shard here carries more than its share.
fn print_patterns(load: &[PartitionLoad], project: impl Fn(f64, bool) -> f64) {
    // (kind, index, pattern) → (partitions, items, units, the hottest partition's units)
    type Row = (usize, u64, f64, f64);
    let mut rows: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    for entry in load {
        let row = rows
            .entry((entry.kind.clone(), entry.index.clone(), pattern(&entry.partition)))
            .or_insert((0, 0, 0.0, 0.0));
        row.0 += 1;
        row.1 += entry.ops;
        row.2 += entry.units;
        row.3 = row.3.max(entry.units);
    }
    println!(
        "| kind | index | partition key | partitions | items | units | hottest partition's units | projected units/s on it | limit |\n|---|---|---|---|---|---|---|---|---|"
    );
    for ((kind, index, pattern), (partitions, ops, units, hottest)) in rows {
        let limit = if kind == "write" { 1000.0 } else { 3000.0 };
        let projected = project(hottest, pattern.contains("<id>"));
        let verdict = if projected.is_nan() {
            String::new()
        } else if projected > limit {
            format!("**over {limit:.0}**")
        } else {
            format!("{:.0}%", projected / limit * 100.0)
        };
        println!(
            "| {kind} | {index} | `{pattern}` | {partitions} | {ops} | {units:.1} | {hottest:.1} | {projected:.0} | {verdict} |"
        );
    }
}
