//! `template.yaml`, read with a YAML parser (CloudFormation's short-form tags such as `!Ref`
//! are kept as tagged values), for tests that hold the code and the template to each other.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

/// The template's path.
pub const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

/// The parsed template.
///
/// # Panics
/// When it cannot be read or is not YAML.
pub fn template() -> Value {
    let text = std::fs::read_to_string(PATH).expect("template.yaml is readable");
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

/// One HTTP API route the template wires to a function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HttpRoute {
    /// Upper-case method.
    pub method: String,
    /// The path, with `{param}` placeholders as in OpenAPI.
    pub path: String,
    /// The logical id of the function it reaches.
    pub function: String,
}

/// The properties of every event of type `kind` (`HttpApi`, `Schedule`, `SQS`...) of every
/// function, with the function's logical id.
///
/// # Panics
/// When such an event has no properties.
pub fn events(template: &Value, kind: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let Some(resources) = template.get("Resources").and_then(Value::as_mapping) else { return out };
    for (name, resource) in resources {
        let events = resource.get("Properties").and_then(|p| p.get("Events")).and_then(Value::as_mapping);
        for event in events.into_iter().flat_map(|e| e.values()) {
            if event.get("Type").and_then(Value::as_str) == Some(kind) {
                let props = event.get("Properties").unwrap_or_else(|| panic!("a {kind} event has properties"));
                out.push((name.as_str().unwrap_or_default().to_owned(), props.clone()));
            }
        }
    }
    out
}

/// Every `HttpApi` event of every function in the template.
///
/// # Panics
/// When an `HttpApi` event lacks its method or path.
pub fn http_routes() -> BTreeSet<HttpRoute> {
    events(&template(), "HttpApi")
        .into_iter()
        .map(|(function, props)| {
            let field =
                |k: &str| props.get(k).and_then(Value::as_str).unwrap_or_else(|| panic!("HttpApi event without {k}"));
            HttpRoute { method: field("Method").to_uppercase(), path: field("Path").to_owned(), function }
        })
        .collect()
}

/// One EventBridge schedule the template deploys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScheduleRule {
    /// The rule's name after `groundwork-${Environment}-` (the job it runs).
    pub name: String,
    /// Its `rate(...)` or `cron(...)` expression.
    pub expression: String,
    /// The logical id of the function it fires.
    pub function: String,
}

/// A string scalar, or the string under a short-form tag (`!Sub "..."`).
fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Tagged(tagged) => tagged.value.as_str(),
        _ => None,
    }
}

/// Every `Schedule` event of every function in the template.
///
/// # Panics
/// When a schedule lacks its expression or its `groundwork-${Environment}-<job>` name.
pub fn schedules() -> BTreeSet<ScheduleRule> {
    events(&template(), "Schedule")
        .into_iter()
        .map(|(function, props)| {
            let name = props.get("Name").and_then(text).expect("a Schedule event has a name");
            let name = name.strip_prefix("groundwork-${Environment}-").expect("named groundwork-${Environment}-<job>");
            let expression = props.get("Schedule").and_then(Value::as_str).expect("an expression").to_owned();
            ScheduleRule { name: name.to_owned(), expression, function }
        })
        .collect()
}
