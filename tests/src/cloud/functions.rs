//! Each function of the template as Lambda runs it: its own bootstrap binary behind its own
//! Runtime API, started on first invocation (a cold start) with exactly the environment the
//! template resolves to plus the variables Lambda itself sets, one invocation at a time, the
//! template's timeout enforced (a timed-out or crashed instance is replaced, as Lambda does).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::stack::{ACCOUNT, REGION, Resolved, Stack};
use crate::runtime_api::{Outcome, RuntimeApi};

/// How long an instance may take to start before the invocation fails (Lambda's init
/// phase limit is 10 seconds; debug builds get more).
const INIT_LIMIT: Duration = Duration::from_secs(20);

/// How one invocation ended.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// The handler answered.
    Answered(Value),
    /// The handler reported an error (`Runtime.*` or its own).
    Failed(Value),
    /// The instance exited during the invocation.
    Crashed(String),
    /// No answer within the function's timeout.
    TimedOut,
    /// The instance could not start: init error or exit, with its log's tail.
    InitFailed(String),
}

/// Latencies observed for one function, in milliseconds.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    /// Each instance's init (process start to its first request for an event).
    pub inits: Vec<f64>,
    /// The first invocation of each instance.
    pub first: Vec<f64>,
    /// Every later invocation.
    pub warm: Vec<f64>,
}

struct Instance {
    child: tokio::process::Child,
    invoked: bool,
}

/// One function of the template.
pub struct Function {
    /// Its logical id (`AuthFunction`).
    pub logical: String,
    /// Its physical name (`<stack>-AuthFunction`).
    pub name: String,
    /// The bootstrap binary.
    pub binary: PathBuf,
    /// The environment it runs with (template's, then Lambda's).
    pub env: Vec<(String, String)>,
    /// Its timeout.
    pub timeout: Duration,
    /// The access key id its calls to the AWS server are signed with.
    pub access_key: String,
    runtime: RuntimeApi,
    log: PathBuf,
    instance: tokio::sync::Mutex<Option<Instance>>,
    timings: Mutex<Timings>,
}

fn setting(stack: &Stack, function: &serde_yaml_ng::Value, key: &str) -> Option<String> {
    let globals = stack.template.get("Globals").and_then(|g| g.get("Function"));
    let value = function.get("Properties").and_then(|p| p.get(key)).or_else(|| globals.and_then(|g| g.get(key)))?;
    stack.resolve(value).ok()?.text().ok()
}

/// The environment the template gives `function`: `Globals.Function.Environment`, then the
/// function's own variables on top, resolved; a variable resolving to `AWS::NoValue` is
/// absent.
///
/// # Errors
/// When a value does not resolve; the message names the function and the variable.
pub fn template_environment(
    stack: &Stack,
    logical: &str,
    function: &serde_yaml_ng::Value,
) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();
    let globals = stack.template.get("Globals").and_then(|g| g.get("Function"));
    let sources = [globals, function.get("Properties")];
    for source in sources.into_iter().flatten() {
        let Some(vars) = source.get("Environment").and_then(|e| e.get("Variables")).and_then(|v| v.as_mapping()) else {
            continue;
        };
        for (key, value) in vars {
            let key = key.as_str().unwrap_or_default().to_owned();
            let resolved = stack.resolve(value).with_context(|| format!("{logical}: environment variable {key}"))?;
            env.retain(|(k, _)| *k != key);
            match resolved {
                Resolved::None => {}
                other => env.push((key.clone(), other.text().with_context(|| format!("{logical}: {key}"))?)),
            }
        }
    }
    Ok(env)
}

impl Function {
    /// The function `logical` of `stack`, its binary found in `binaries` (a directory of
    /// built binaries) under the name its `Metadata.BuildProperties.Binary` gives, or at
    /// `binary` when given. `extra` is what the harness adds on purpose (the endpoint of the
    /// loopback AWS server), applied last.
    ///
    /// # Errors
    /// When its environment does not resolve.
    pub async fn new(
        stack: &Stack,
        logical: &str,
        resource: &serde_yaml_ng::Value,
        binaries: &Path,
        binary: Option<PathBuf>,
        logs: &Path,
        extra: &[(String, String)],
    ) -> Result<Self> {
        let name = format!("{}-{logical}", stack.name);
        let built = resource
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(|b| b.as_str())
            .with_context(|| format!("{logical} has no Metadata.BuildProperties.Binary"))?;
        let binary = binary.unwrap_or_else(|| binaries.join(built));
        anyhow::ensure!(
            binary.exists(),
            "{logical}'s binary {} is not built: run `cargo build --workspace --bins` first",
            binary.display()
        );
        let timeout: u64 = setting(stack, resource, "Timeout").unwrap_or_else(|| "3".into()).parse()?;
        let memory = setting(stack, resource, "MemorySize").unwrap_or_else(|| "128".into());
        let runtime = RuntimeApi::start().await;
        runtime.set_function(&format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:live"), timeout * 1000);
        let access_key = format!("ASIA{}", logical.to_uppercase());
        let mut env = template_environment(stack, logical, resource)?;
        // What Lambda sets in every function's environment (AWS Lambda Developer Guide,
        // "Defined runtime environment variables"), the execution role's credentials among them.
        for (key, value) in [
            ("AWS_LAMBDA_RUNTIME_API", runtime.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/02/[1]cloud-in-a-box".into()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
            ("_HANDLER", "bootstrap".into()),
            ("LAMBDA_TASK_ROOT", "/var/task".into()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
            ("TZ", ":UTC".into()),
            ("LANG", "en_US.UTF-8".into()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
            ("AWS_ACCESS_KEY_ID", access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", "cloud-in-a-box".into()),
            ("AWS_SESSION_TOKEN", "cloud-in-a-box".into()),
        ] {
            env.push((key.to_owned(), value));
        }
        env.extend(extra.iter().cloned());
        Ok(Self {
            logical: logical.to_owned(),
            name,
            binary,
            env,
            timeout: Duration::from_secs(timeout),
            access_key,
            runtime,
            log: logs.join(format!("{logical}.log")),
            instance: tokio::sync::Mutex::new(None),
            timings: Mutex::default(),
        })
    }

    /// The last lines of the function's log (its stdout and stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// What was observed so far.
    pub fn timings(&self) -> Timings {
        self.timings.lock().unwrap().clone()
    }

    async fn start(&self) -> Result<Instance, String> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let poll = self.runtime.next_poll();
        tokio::pin!(poll);
        poll.as_mut().enable();
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&self.binary)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{} could not start {}: {e}", self.logical, self.binary.display()))?;
        let failure = tokio::select! {
            () = &mut poll => None,
            status = child.wait() => Some(format!("exited during init ({status:?})")),
            () = tokio::time::sleep(INIT_LIMIT) => Some(format!("did not finish init within {INIT_LIMIT:?}")),
        };
        if let Some(failure) = failure {
            let _ = child.kill().await;
            let reported = self.runtime.init_error().map(|e| format!("; init error: {e}")).unwrap_or_default();
            return Err(format!("{} {failure}{reported}; its log ends:\n{}", self.logical, self.log_tail(15)));
        }
        self.timings.lock().unwrap().inits.push(started.elapsed().as_secs_f64() * 1000.0);
        Ok(Instance { child, invoked: false })
    }

    /// The running instance's peak resident memory (`VmHWM`, KiB), as Lambda's `REPORT`
    /// line gives `Max Memory Used`; `None` when no instance runs.
    pub async fn peak_memory_kib(&self) -> Option<u64> {
        let pid = self.instance.lock().await.as_ref()?.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Invokes the function with `event`, starting an instance first when none is running.
    pub async fn invoke(&self, event: Value) -> Invocation {
        let mut slot = self.instance.lock().await;
        if slot.is_none() {
            match self.start().await {
                Ok(instance) => *slot = Some(instance),
                Err(message) => return Invocation::InitFailed(message),
            }
        }
        let instance = slot.as_mut().expect("an instance");
        let started = Instant::now();
        let outcome = tokio::select! {
            answer = self.runtime.try_invoke(event, self.timeout) => answer.map(|o| match o {
                Outcome::Response(v) => Invocation::Answered(v),
                Outcome::Error(v) => Invocation::Failed(v),
            }).unwrap_or(Invocation::TimedOut),
            status = instance.child.wait() => Invocation::Crashed(format!(
                "{} exited during an invocation ({status:?}); its log ends:\n{}", self.logical, self.log_tail(15)
            )),
        };
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Invocation::Answered(_) | Invocation::Failed(_) => {
                let mut timings = self.timings.lock().unwrap();
                if instance.invoked {
                    timings.warm.push(elapsed)
                } else {
                    timings.first.push(elapsed)
                }
                instance.invoked = true;
            }
            // Lambda replaces an instance that timed out or crashed.
            Invocation::TimedOut | Invocation::Crashed(_) | Invocation::InitFailed(_) => {
                let _ = instance.child.kill().await;
                *slot = None;
            }
        }
        outcome
    }
}
