//! Cloud in a box, by hand: the whole system as `template.yaml` deploys it (every function
//! as its Lambda bootstrap binary behind its own Runtime API, the HTTP API, the SQS event
//! source mappings, the schedules on their rates, SES events through SNS), on loopback,
//! without AWS or Docker. `infra/cloud.sh` builds the binaries and runs it.
//!
//! `serve` (the default) prints the API's URL and runs until Ctrl-C, then prints each
//! function's latencies, what failed, and the calls the template's policies do not allow.
//! `journey` runs the critical journey on the local stack and on the harness, back to back,
//! and prints each request's latency on both.

use std::collections::BTreeMap;

use clap::{Parser, Subcommand};
use testkit::cloud::{Cloud, Options};

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
}

async fn finish(cloud: &Cloud) -> bool {
    println!("\n{}", cloud.report());
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
    }
}
