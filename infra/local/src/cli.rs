//! The local binary's commands besides serving:
//!
//! ```text
//! groundwork                                   serve the local stack (the default)
//! groundwork dead-letters [list|redrive] [--queue NAME]
//! groundwork dns-records DOMAIN [--region REGION] [--from-ses]
//! groundwork billing reconcile|replay
//! ```
//!
//! Commands use the same configuration as the stack, so with `GROUNDWORK_QUEUES=sqs` and the
//! queue URLs set, `dead-letters` works on a deployed environment's queues.

use anyhow::{Context as _, bail};
use shared::config::{Config, QueueName};
use shared::jobs::{Envelope, JobState};
use shared::mail::dns;
use shared::services::Services;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve the local stack.
    Serve,
    /// List dead letters.
    DeadLettersList {
        /// One queue, or all.
        queue: Option<QueueName>,
    },
    /// Redrive dead letters.
    DeadLettersRedrive {
        /// One queue, or all.
        queue: Option<QueueName>,
    },
    /// Print a sending domain's DNS records.
    DnsRecords {
        /// The domain.
        domain: String,
        /// The SES region (for the MAIL FROM MX record).
        region: String,
        /// Read the DKIM tokens from SES.
        from_ses: bool,
    },
    /// Print a fresh token signing key.
    JwtKey,
    /// Repair billing drift from Stripe now.
    BillingReconcile,
    /// Queue failed Stripe events again.
    BillingReplay,
    /// Print usage.
    Help,
}

/// The usage text.
pub const USAGE: &str = "usage:
  groundwork                                            serve the local stack
  groundwork dead-letters [list|redrive] [--queue NAME] list or redrive dead-lettered jobs
  groundwork dns-records DOMAIN [--region R] [--from-ses] print the DNS records for sending mail
  groundwork jwt-key                                    print a new access-token signing key (base64 PKCS#8)
  groundwork billing reconcile                          repair every account's subscription state from Stripe
  groundwork billing replay                             queue the Stripe events that failed again
queues: email, mail-events, jobs, billing";

/// Parses the arguments after the program name.
///
/// # Errors
/// For unknown commands, options or queue names.
pub fn parse(args: &[String]) -> anyhow::Result<Command> {
    let mut queue = None;
    let mut region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let mut from_ses = false;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--queue" => {
                let name = it.next().context("--queue needs a queue name")?;
                queue = Some(QueueName::parse(name).with_context(|| format!("no queue named {name:?}"))?);
            }
            "--region" => region = it.next().context("--region needs a region")?.clone(),
            "--from-ses" => from_ses = true,
            "-h" | "--help" | "help" => return Ok(Command::Help),
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => words.push(s.to_owned()),
        }
    }
    Ok(match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => Command::Serve,
        ["dead-letters"] | ["dead-letters", "list"] => Command::DeadLettersList { queue },
        ["dead-letters", "redrive"] => Command::DeadLettersRedrive { queue },
        ["dns-records", domain] => Command::DnsRecords { domain: (*domain).to_owned(), region, from_ses },
        ["jwt-key"] => Command::JwtKey,
        ["billing", "reconcile"] => Command::BillingReconcile,
        ["billing", "replay"] => Command::BillingReplay,
        other => bail!("unknown command {:?}\n{USAGE}", other.join(" ")),
    })
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
        Command::Help => out.push_str(USAGE),
        Command::BillingReconcile => {
            let services = Services::from_config(config).await?;
            let plans = shared::billing::Plans::load(&services.config)?;
            let stripe = shared::billing::stripe::StripeClient::from_config(&services.config)
                .context("STRIPE_SECRET_KEY is not set")?;
            let repairs = shared::billing::events::reconcile(&services, plans, &stripe).await?;
            for r in &repairs {
                out.push_str(&format!(
                    "{}: status {:?} -> {:?}, plan {:?} -> {:?}\n",
                    r.account, r.status.0, r.status.1, r.plan.0, r.plan.1
                ));
            }
            out.push_str(&format!("{} account(s) repaired\n", repairs.len()));
        }
        Command::BillingReplay => {
            let services = Services::from_config(config).await?;
            let n = shared::billing::events::replay_failed(&services).await?;
            out.push_str(&format!("{n} failed Stripe event(s) queued again\n"));
        }
        Command::JwtKey => {
            use base64::Engine as _;
            let der = shared::auth::keys::generate_pkcs8()?;
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(der));
            out.push('\n');
        }
        Command::DeadLettersList { queue } => {
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
        Command::DeadLettersRedrive { queue } => {
            let services = Services::from_config(config).await?;
            for name in selected(queue) {
                let moved = services.queues.get(name).redrive(1000).await?;
                out.push_str(&format!("{}: {moved} redriven\n", name.as_str()));
            }
        }
        Command::DnsRecords { domain, region, from_ses } => {
            let tokens = if from_ses {
                let sdk = shared::aws::sdk_config(&config).await;
                let identity = aws_sdk_sesv2::Client::new(&sdk)
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
        assert_eq!(parse(&args("dead-letters")).unwrap(), Command::DeadLettersList { queue: None });
        assert_eq!(
            parse(&args("dead-letters redrive --queue email")).unwrap(),
            Command::DeadLettersRedrive { queue: Some(QueueName::Email) }
        );
        assert!(matches!(parse(&args("dns-records acme.com --region eu-west-1")).unwrap(),
            Command::DnsRecords { ref domain, ref region, from_ses: false } if domain == "acme.com" && region == "eu-west-1"));
        assert!(parse(&args("dead-letters --queue nope")).is_err());
        assert!(parse(&args("launch")).is_err());
        assert!(parse(&args("--frobnicate")).is_err());
    }
}
