//! Jobs of the product's own functions, defined outside `shared`: a product crate declares a
//! job type ([`ProductJob`]: a serializable struct with a stable [`ProductJob::NAME`]),
//! enqueues it like any job ([`Job::product`], then [`Jobs::enqueue`](super::Jobs::enqueue)
//! or [`Jobs::stage`](super::Jobs::stage)), and registers its handler at start-up in a
//! [`ProductJobs`] (the worker function builds one from every product function's, through
//! the `products` crate).
//!
//! Product jobs run on the `jobs` queue, in the worker function, under the same
//! [`JobRunner`](super::JobRunner) as Groundwork's own: idempotency key, visible state,
//! exponential backoff, dead letter and redrive apply unchanged. A job whose name no handler
//! registered (a handler removed, or a deploy that has not reached the worker yet) fails
//! permanently and waits in the dead-letter queue for a redrive.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Envelope, Job, JobError, JobOutcome};

/// A job type of the product's.
pub trait ProductJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Its stable name, `<function>.<job>` (`projects.recount`): what the queue carries, so
    /// it outlives renames of the Rust type. Lower-case ASCII letters, digits, `_` and `.`.
    const NAME: &'static str;
}

impl Job {
    /// `job` as a [`Job`] to enqueue.
    ///
    /// # Errors
    /// When `job` does not serialize (a map with non-string keys...).
    pub fn product<J: ProductJob>(job: &J) -> Result<Self, serde_json::Error> {
        Ok(Self::Product { name: J::NAME.to_owned(), payload: serde_json::to_value(job)? })
    }
}

type BoxedRun = Pin<Box<dyn Future<Output = Result<JobOutcome, JobError>> + Send>>;
type Handler = Arc<dyn Fn(serde_json::Value, Envelope) -> BoxedRun + Send + Sync>;

/// The handlers of product jobs, by name.
#[derive(Clone, Default)]
pub struct ProductJobs {
    handlers: BTreeMap<&'static str, Handler>,
}

impl std::fmt::Debug for ProductJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.contains('.')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

impl ProductJobs {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for the jobs of type `J`. The handler must tolerate running a job
    /// more than once (at-least-once delivery; see [`super`]).
    ///
    /// # Panics
    /// When `J::NAME` is not a valid name or is registered already: a programming error that
    /// stops the function at its first start, as overlapping routes do in axum.
    #[must_use]
    pub fn register<J, F, Fut>(mut self, handler: F) -> Self
    where
        J: ProductJob,
        F: Fn(J, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<JobOutcome, JobError>> + Send + 'static,
    {
        assert!(valid_name(J::NAME), "product job name {:?}: use <function>.<job>, lower case", J::NAME);
        let handler = Arc::new(handler);
        let run: Handler = Arc::new(move |payload, envelope| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let job: J = serde_json::from_value(payload)
                    .map_err(|e| JobError::Permanent(anyhow::anyhow!("{} payload does not decode: {e}", J::NAME)))?;
                handler(job, envelope).await
            })
        });
        let previous = self.handlers.insert(J::NAME, run);
        assert!(previous.is_none(), "product job {:?} registered twice", J::NAME);
        self
    }

    /// Every handler of `self` and `other`.
    ///
    /// # Panics
    /// When both register one name.
    #[must_use]
    pub fn merge(mut self, other: Self) -> Self {
        for (name, handler) in other.handlers {
            let previous = self.handlers.insert(name, handler);
            assert!(previous.is_none(), "product job {name:?} registered by two functions");
        }
        self
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// Runs the product job `name` of `envelope`.
    ///
    /// # Errors
    /// The handler's; a permanent failure for an unknown name or a payload that does not
    /// decode.
    pub async fn run(
        &self,
        name: &str,
        payload: &serde_json::Value,
        envelope: &Envelope,
    ) -> Result<JobOutcome, JobError> {
        let Some(handler) = self.handlers.get(name) else {
            return Err(JobError::Permanent(anyhow::anyhow!(
                "no handler is registered for the product job {name:?}: redrive it once one is deployed"
            )));
        };
        handler(payload.clone(), envelope.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobId;

    #[derive(Serialize, serde::Deserialize)]
    struct Recount {
        account: String,
    }

    impl ProductJob for Recount {
        const NAME: &'static str = "projects.recount";
    }

    fn envelope(job: Job) -> Envelope {
        let id = JobId::new();
        Envelope { id, idempotency_key: id.to_string(), enqueued_at_ms: 0, job }
    }

    #[tokio::test]
    async fn a_registered_job_runs_with_its_decoded_payload() {
        let jobs = ProductJobs::new()
            .register(|job: Recount, _| async move { Ok(JobOutcome::Skipped(format!("recounted {}", job.account))) });
        let job = Job::product(&Recount { account: "a1".into() }).unwrap();
        assert_eq!(job.kind(), "projects.recount");
        let envelope = envelope(job);
        let Job::Product { name, payload } = &envelope.job else { unreachable!() };
        let outcome = jobs.run(name, payload, &envelope).await.unwrap();
        assert_eq!(outcome, JobOutcome::Skipped("recounted a1".into()));
        // The queue carries the name and the fields, whatever the Rust type is called.
        let wire = serde_json::to_value(&envelope.job).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"kind": "product", "name": "projects.recount", "payload": {"account": "a1"}})
        );
    }

    #[tokio::test]
    async fn unknown_names_and_bad_payloads_fail_permanently() {
        let jobs = ProductJobs::new().register(|_: Recount, _| async { Ok(JobOutcome::Done) });
        let env = envelope(Job::Product { name: "projects.gone".into(), payload: serde_json::json!({}) });
        assert!(matches!(jobs.run("projects.gone", &serde_json::json!({}), &env).await, Err(JobError::Permanent(_))));
        let bad = serde_json::json!({"account": 5});
        assert!(matches!(jobs.run("projects.recount", &bad, &env).await, Err(JobError::Permanent(_))));
    }

    #[test]
    #[should_panic(expected = "registered by two functions")]
    fn one_name_cannot_be_registered_twice() {
        let one = ProductJobs::new().register(|_: Recount, _| async { Ok(JobOutcome::Done) });
        let two = ProductJobs::new().register(|_: Recount, _| async { Ok(JobOutcome::Done) });
        let _ = one.merge(two);
    }
}
