//! `cargo run`: the whole system on <http://127.0.0.1:3000>, data in `.groundwork/`.
//! `cargo run -- --help` lists the other commands (dead letters, DNS records, billing).

use anyhow::Context as _;
use local::cli::{self, Command};
use shared::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = cli::parse(&args).unwrap_or_else(|e| e.exit());
    if matches!(command, Command::JwtKey | Command::Openapi | Command::New { .. }) {
        // Needs no configuration: it prints a key or the API description, or writes files.
        return one_shot(command, Config::from_vars(std::iter::empty())?).await;
    }
    let config = Config::from_env().context("reading the configuration")?;
    shared::telemetry::init(&config.telemetry)?;
    if command != Command::Serve {
        return one_shot(command, config).await;
    }
    let data_dir = config.data_dir.clone();
    // Listening from the start: a stop during the data migrations pauses them at a
    // checkpoint and releases their lock, rather than leaving it to its lease.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        shared::migrations::request_stop();
        let _ = stop.send(true);
    });
    let stack = match local::start(config).await {
        Err(e) if *stopped.borrow() => {
            eprintln!("{e:#}");
            return Ok(());
        }
        started => started?,
    };
    tracing::info!(
        "Groundwork is listening on http://{} (data in {}, outbox in {}); Ctrl-C stops it",
        stack.addr,
        data_dir.display(),
        data_dir.join("outbox").display()
    );
    let mut stopped = stopped;
    stack
        .run_until(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await;
    Ok(())
}

/// Runs a command other than `serve`: its output on stdout, or its error (with its causes, no
/// backtrace: these are answers to the user, not crashes) on stderr and exit status 1.
async fn one_shot(command: Command, config: Config) -> anyhow::Result<()> {
    match cli::run(command, config).await {
        Ok(out) => {
            print!("{out}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Ctrl-C, or SIGTERM from a process manager.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
