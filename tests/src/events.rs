//! Real Lambda event payloads (from `tests/data/`), with a few fields filled in per test.

use serde_json::Value;

fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// An API Gateway HTTP API (payload v2.0) event for `method path`, with an optional body.
pub fn api_gateway_v2(method: &str, path: &str, body: Option<&str>, content_type: Option<&str>) -> Value {
    let mut e = load("apigw-v2-request.json");
    e["rawPath"] = path.into();
    e["routeKey"] = format!("{method} {path}").into();
    e["requestContext"]["http"]["method"] = method.into();
    e["requestContext"]["http"]["path"] = path.into();
    match body {
        Some(b) => e["body"] = b.into(),
        None => {
            if let Some(o) = e.as_object_mut() {
                o.remove("body");
            }
        }
    }
    if let Some(ct) = content_type {
        e["headers"]["content-type"] = ct.into();
    }
    e
}

/// An SQS event holding `bodies`, one record each, from the queue `queue_arn`.
pub fn sqs(queue_arn: &str, bodies: &[(&str, &str)]) -> Value {
    let template = load("sqs-event.json");
    let record = template["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| {
            let mut r = record.clone();
            r["messageId"] = (*id).into();
            r["body"] = (*body).into();
            r["eventSourceARN"] = queue_arn.into();
            r
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// An EventBridge scheduled event.
pub fn eventbridge_scheduled() -> Value {
    load("eventbridge-scheduled.json")
}

/// A "CloudWatch Alarm State Change" event of alarm `alarm`: from `from` (its state value
/// and timestamp) to `to`. Timestamps as CloudWatch writes them (`2027-01-15T08:12:40.985+0000`).
pub fn alarm_state_change(alarm: &str, from: (&str, &str), to: (&str, &str)) -> Value {
    let mut e = load("cloudwatch-alarm-state-change.json");
    e["detail"]["alarmName"] = alarm.into();
    e["resources"] = serde_json::json!([format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}")]);
    e["detail"]["previousState"]["value"] = from.0.into();
    e["detail"]["previousState"]["timestamp"] = from.1.into();
    e["detail"]["state"]["value"] = to.0.into();
    e["detail"]["state"]["timestamp"] = to.1.into();
    e
}
