//! CloudWatch Embedded Metric Format: a metric is one JSON log line on stdout with an `_aws`
//! member that tells CloudWatch which properties are metrics. No API call, no agent: Lambda
//! ships stdout to CloudWatch Logs, which extracts the metrics.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every Groundwork metric.
pub const NAMESPACE: &str = "Groundwork";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns emission on (Lambda) or off (local stack, tests).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
    /// No unit.
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::Seconds => "Seconds",
            Self::Bytes => "Bytes",
            Self::None => "None",
        }
    }
}

/// One EMF record: dimensions, metrics and extra searchable properties.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, f64, Unit)>,
    properties: Map<String, Value>,
}

impl Metrics {
    /// An empty record. The Lambda function name, when known, is added as the `Function`
    /// dimension.
    pub fn new() -> Self {
        // Read once per process: this runs on every request and every job outcome.
        static FUNCTION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let mut m = Self::default();
        if let Some(f) = FUNCTION.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok()) {
            m.dimensions.push(("Function".into(), f.clone()));
        }
        m
    }

    /// Adds a dimension.
    #[must_use]
    pub fn dimension(mut self, name: &str, value: impl Into<String>) -> Self {
        self.dimensions.push((name.to_owned(), value.into()));
        self
    }

    /// Adds a metric value.
    #[must_use]
    pub fn metric(mut self, name: &str, value: f64, unit: Unit) -> Self {
        self.metrics.push((name.to_owned(), value, unit));
        self
    }

    /// Adds a property that is logged but is not a metric (a request id, say).
    #[must_use]
    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    /// The EMF JSON document.
    pub fn to_json(&self, timestamp_ms: i64) -> Value {
        let mut doc = self.properties.clone();
        for (k, v) in &self.dimensions {
            doc.insert(k.clone(), Value::String(v.clone()));
        }
        for (k, v, _) in &self.metrics {
            doc.insert(k.clone(), json!(v));
        }
        doc.insert("Release".into(), Value::String(crate::RELEASE.to_owned()));
        let dims: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        // Twice: the series alarms watch, which a deploy does not change, and the same per
        // release, to compare a new release with the one before.
        let mut per_release = dims.clone();
        per_release.push("Release");
        let defs: Vec<Value> = self.metrics.iter().map(|(k, _, u)| json!({"Name": k, "Unit": u.as_str()})).collect();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{ "Namespace": NAMESPACE, "Dimensions": [dims, per_release], "Metrics": defs }]
            }),
        );
        Value::Object(doc)
    }

    /// Writes the record to stdout, if metrics are enabled.
    pub fn emit(&self) {
        if ENABLED.load(Ordering::Relaxed) && !self.metrics.is_empty() {
            let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
            println!("{}", self.to_json(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_has_the_documented_shape() {
        let doc = Metrics::default()
            .dimension("Route", "GET /health")
            .metric("Latency", 1.5, Unit::Milliseconds)
            .metric("Requests", 1.0, Unit::Count)
            .property("request_id", "r1")
            .to_json(1_700_000_000_000);
        assert_eq!(doc["Route"], "GET /health");
        assert_eq!(doc["Latency"], 1.5);
        assert_eq!(doc["request_id"], "r1");
        let aws = &doc["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000_i64);
        let cw = &aws["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Groundwork");
        assert_eq!(cw["Dimensions"], json!([["Route"], ["Route", "Release"]]));
        assert_eq!(doc["Release"], crate::RELEASE);
        assert_eq!(cw["Metrics"][0], json!({"Name": "Latency", "Unit": "Milliseconds"}));
    }
}
