//! The local binary's command line (clap; `cargo run -- --help` prints it): serving the
//! local stack (the default), dead letters, DNS records, a signing key, billing operations.
//! Commands use the same configuration as the stack, so with `GROUNDWORK_QUEUES=sqs` and the
//! queue URLs set, `dead-letters` works on a deployed environment's queues.

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use shared::config::{Config, QueueName};
use shared::jobs::{Envelope, JobState};
use shared::mail::dns;
use shared::services::Services;

/// The local binary: serves the whole system by default; the subcommands operate on the same
/// configuration (environment variables, see the README).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "groundwork", version, about = "Groundwork: the whole system locally, and operator commands")]
pub struct Cli {
    /// What to do (default: serve the local stack).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the local stack (the default).
    Serve,
    /// List or redrive dead-lettered jobs.
    DeadLetters {
        /// `list` (the default) or `redrive`.
        #[command(subcommand)]
        action: Option<DeadLetterAction>,
        /// One queue (email, mail-events, jobs, billing), or all.
        #[arg(long, global = true, value_parser = parse_queue)]
        queue: Option<QueueName>,
    },
    /// Print the DNS records (SPF, DKIM, DMARC, MAIL FROM) a sending domain needs.
    DnsRecords {
        /// The sending domain.
        #[arg(value_parser = parse_domain)]
        domain: String,
        /// The SES region (for the MAIL FROM MX record).
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1", value_parser = parse_region)]
        region: String,
        /// Read the DKIM tokens from SES (AWS credentials needed).
        #[arg(long)]
        from_ses: bool,
    },
    /// Print a new access-token signing key (base64 PKCS#8).
    JwtKey,
    /// Print the OpenAPI document of every route (what `GET /openapi.json` serves).
    Openapi,
    /// Scaffold something of the product's own.
    New {
        /// What to scaffold.
        #[command(subcommand)]
        what: New,
    },
    /// Billing operations against Stripe.
    Billing {
        /// What to do.
        #[command(subcommand)]
        action: BillingAction,
    },
    /// Run one schedule's job now, once, on the local data (what its EventBridge rule does
    /// on AWS). With `--at`, the job runs as if it were that time, to simulate days ahead.
    RunSchedule {
        /// The schedule's name, as in template.yaml (`account-health-rollup`...).
        name: String,
        /// The time the job sees (RFC 3339, such as 2027-01-31T09:00:00Z); default now.
        #[arg(long, value_parser = parse_time)]
        at: Option<i64>,
    },
}

/// What `new` scaffolds.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum New {
    /// A product function: `functions/<name>/` with a tenant-scoped route and a test,
    /// registered in `products/` and `template.yaml`.
    Function {
        /// Its name: lower-case letters and digits, words joined by hyphens (`projects`).
        name: String,
        /// The repository to scaffold in (default: the one this binary was built from).
        #[arg(long)]
        root: Option<std::path::PathBuf>,
    },
}

/// What to do with dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum DeadLetterAction {
    /// List them, with their job state.
    List,
    /// Move them back to their queue.
    Redrive,
}

/// A billing operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum BillingAction {
    /// Repair every account's subscription state from Stripe now.
    Reconcile,
    /// Queue the Stripe events that failed again.
    Replay,
}

/// A domain name: dot-separated labels of letters, digits and hyphens (RFC 1035 §2.3.1,
/// with RFC 1123's leading digits), at least two labels.
fn parse_domain(domain: &str) -> Result<String, String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if domain.len() <= 253 && domain.split('.').count() >= 2 && domain.split('.').all(label_ok) {
        Ok(domain)
    } else {
        Err(format!("{domain:?} is not a domain name such as example.com"))
    }
}

/// An AWS region name such as `eu-west-1`.
fn parse_region(region: &str) -> Result<String, String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts.last().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if ok { Ok(region.to_owned()) } else { Err(format!("{region:?} is not an AWS region such as eu-west-1")) }
}

/// An RFC 3339 time as Unix milliseconds.
fn parse_time(time: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{time:?} is not an RFC 3339 time such as 2027-01-31T09:00:00Z"))
}

fn parse_queue(name: &str) -> Result<QueueName, String> {
    QueueName::parse(name).ok_or_else(|| {
        let all: Vec<&str> = QueueName::ALL.iter().map(|q| q.as_str()).collect();
        format!("no queue named {name:?} (queues: {})", all.join(", "))
    })
}

/// Parses the arguments after the program name.
///
/// # Errors
/// For unknown commands, options or queue names (and for `--help`, whose text is the error's).
pub fn parse(args: &[String]) -> Result<Command, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("groundwork".to_owned()).chain(args.iter().cloned()))?;
    Ok(cli.command.unwrap_or(Command::Serve))
}

fn selected(queue: Option<QueueName>) -> Vec<QueueName> {
    queue.map_or_else(|| QueueName::ALL.to_vec(), |q| vec![q])
}

/// Runs a command other than `Serve`; returns what to print.
///
/// # Errors
/// When the services cannot be built or a call fails.
pub async fn run(command: Command, config: Config) -> anyhow::Result<String> {
    let mut out = String::new();
    match command {
        Command::Serve => bail!("serve is not a one-shot command"),
        Command::Billing { action: BillingAction::Reconcile } => {
            let services = Services::from_config(config).await?;
            let stripe = services.stripe.clone().context("STRIPE_SECRET_KEY is not set")?;
            let repairs = shared::billing::reconcile::reconcile(&services.billing(), &stripe).await?;
            for r in &repairs {
                out.push_str(&format!(
                    "{}: status {:?} -> {:?}, plan {:?} -> {:?}\n",
                    r.account, r.status.0, r.status.1, r.plan.0, r.plan.1
                ));
            }
            out.push_str(&format!("{} account(s) repaired\n", repairs.len()));
        }
        Command::RunSchedule { name, at } => {
            let data_dir = config.data_dir.clone();
            let mut services = Services::from_config(config).await?;
            let at_ms = at.unwrap_or_else(|| services.clock.now_ms());
            // The job sees the simulated time; the store and queues keep the real one, so
            // what the job queues is delivered now by the running stack, not at `at`.
            services.clock = std::sync::Arc::new(shared::clock::ManualClock::at(at_ms));
            let schedules = crate::schedules(&services);
            let names: Vec<&str> = schedules.iter().map(|(s, _)| s.name).collect();
            let job = schedules
                .iter()
                .find(|(s, _)| s.name == name)
                .map(|(_, job)| std::sync::Arc::clone(job))
                .with_context(|| format!("no schedule named {name:?} (schedules: {})", names.join(", ")))?;
            job.run(at_ms).await.with_context(|| format!("running {name}"))?;
            out.push_str(&format!(
                "{name} ran at {} on the data in {}\n",
                shared::account_health::rfc3339(at_ms),
                data_dir.display()
            ));
        }
        Command::Billing { action: BillingAction::Replay } => {
            let services = Services::from_config(config).await?;
            let n = shared::billing::ledger::replay_failed(&services.billing()).await?;
            out.push_str(&format!("{n} failed Stripe event(s) queued again\n"));
        }
        Command::New { what: New::Function { name, root } } => {
            let root = root.unwrap_or_else(crate::scaffold::default_root);
            let paths: Vec<String> = platform::api_description().paths.paths.keys().cloned().collect();
            let done = crate::scaffold::new_function(&root, &name, &paths)?;
            out.push_str(&crate::scaffold::report(&name, &done));
        }
        Command::Openapi => {
            out.push_str(&serde_json::to_string_pretty(platform::api_description())?);
            out.push('\n');
        }
        Command::JwtKey => {
            use base64::Engine as _;
            let der = shared::auth::keys::generate_pkcs8()?;
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(der));
            out.push('\n');
        }
        Command::DeadLetters { action: None | Some(DeadLetterAction::List), queue } => {
            let services = Services::from_config(config).await?;
            for name in selected(queue) {
                let letters = services.queues.get(name).dead_letters(10).await?;
                out.push_str(&format!("{} ({} shown)\n", name.as_str(), letters.len()));
                for m in letters {
                    let envelope: Option<Envelope> = serde_json::from_str(&m.body).ok();
                    let id = envelope.as_ref().map_or_else(|| m.id.clone(), |e| e.id.to_string());
                    let state = JobState::load(services.store.as_ref(), &id).await?;
                    out.push_str(&format!(
                        "  {id}  {}  attempts={}  error={}\n",
                        envelope.as_ref().map_or("unknown", |e| e.job.kind()),
                        state.as_ref().map_or(0, |s| s.attempts),
                        state.and_then(|s| s.last_error).unwrap_or_default()
                    ));
                }
            }
        }
        Command::DeadLetters { action: Some(DeadLetterAction::Redrive), queue } => {
            let services = Services::from_config(config).await?;
            for name in selected(queue) {
                let moved = services.queues.get(name).redrive(1000).await?;
                out.push_str(&format!("{}: {moved} redriven\n", name.as_str()));
            }
        }
        Command::DnsRecords { domain, region, from_ses } => {
            let tokens = if from_ses {
                let sdk = shared::aws::sdk_config(&config.aws).await;
                // The identity lives in the region the records are for, whatever the default.
                let ses = aws_sdk_sesv2::config::Builder::from(&sdk)
                    .region(aws_sdk_sesv2::config::Region::new(region.clone()))
                    .build();
                let identity = aws_sdk_sesv2::Client::from_conf(ses)
                    .get_email_identity()
                    .email_identity(&domain)
                    .send()
                    .await
                    .with_context(|| format!("reading the SES identity {domain}"))?;
                identity.dkim_attributes.and_then(|d| d.tokens)
            } else {
                None
            };
            let records = dns::records(&domain, &region, tokens.as_deref());
            out.push_str(&format!("DNS records for sending mail from {domain} through SES ({region}):\n\n"));
            out.push_str(&dns::format_table(&records));
            if tokens.is_none() {
                out.push_str(
                    "The DKIM tokens come from SES once the stack has created the identity: rerun with --from-ses \
                     (AWS credentials needed), or read the MailDkimRecords output of the stack.\n",
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(&args("")).unwrap(), Command::Serve);
        assert_eq!(parse(&args("dead-letters")).unwrap(), Command::DeadLetters { action: None, queue: None });
        assert_eq!(
            parse(&args("dead-letters redrive --queue email")).unwrap(),
            Command::DeadLetters { action: Some(DeadLetterAction::Redrive), queue: Some(QueueName::Email) }
        );
        assert!(matches!(parse(&args("dns-records acme.com --region eu-west-1")).unwrap(),
            Command::DnsRecords { ref domain, ref region, from_ses: false } if domain == "acme.com" && region == "eu-west-1"));
        assert_eq!(parse(&args("billing replay")).unwrap(), Command::Billing { action: BillingAction::Replay });
        assert_eq!(parse(&args("openapi")).unwrap(), Command::Openapi);
        assert_eq!(
            parse(&args("run-schedule account-health-rollup --at 2027-01-31T09:00:00Z")).unwrap(),
            Command::RunSchedule { name: "account-health-rollup".into(), at: Some(1_801_386_000_000) }
        );
        assert!(parse(&args("run-schedule dormant-accounts --at tomorrow")).is_err());
        assert_eq!(
            parse(&args("new function demo")).unwrap(),
            Command::New { what: New::Function { name: "demo".into(), root: None } }
        );
        assert!(parse(&args("new function")).is_err());
        assert!(parse(&args("dns-records http://example.com/")).is_err());
        assert!(parse(&args("dns-records not_a_domain!")).is_err());
        assert!(parse(&args("dns-records example.com --region nowhere")).is_err());
        let err = parse(&args("dead-letters --queue nope")).unwrap_err().to_string();
        assert!(err.contains("no queue named") && err.contains("mail-events"), "{err}");
        assert!(parse(&args("launch")).is_err());
        assert!(parse(&args("--frobnicate")).is_err());
        assert_eq!(parse(&args("--help")).unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
