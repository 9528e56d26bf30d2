//! The IAM check: every AWS action a function's code called (recorded per access key id by
//! the loopback server; each function signs with its own) must be allowed by a statement of
//! its template `Policies`, or by what SAM grants with its events (an SQS event's poller
//! role). Actions, not resources, are compared: the harness's resources have other names
//! than a deployed stack's, and a missing action is the mistake this catches.
//!
//! Source: AWS Serverless Application Model Developer Guide, `AWS::Serverless::Function`
//! `Policies` and `SQS` event; IAM User Guide, "IAM JSON policy elements: Action" (wildcards).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};

use super::stack::{Resolved, Stack};

/// The actions SAM's `AWSLambdaSQSQueueExecutionRole` grants a function with an SQS event.
const SQS_POLLER: &[&str] = &["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"];

/// A function's action patterns: allowed, denied.
pub type Policy = (Vec<String>, Vec<String>);

/// An IAM action pattern match (`dynamodb:*`, `s3:Get*`), case-insensitive as IAM's is.
pub fn matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// The allowed and denied action patterns of `function`'s template policies.
///
/// # Errors
/// When a policy is of a form the check does not read (a SAM policy template or a managed
/// policy): it names it, rather than letting it pass unchecked.
pub fn policies(stack: &Stack, logical: &str, function: &serde_yaml_ng::Value) -> Result<Policy> {
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    let properties = function.get("Properties");
    let has_sqs_event = properties
        .and_then(|p| p.get("Events"))
        .and_then(|e| e.as_mapping())
        .is_some_and(|events| events.values().any(|e| e.get("Type").and_then(|t| t.as_str()) == Some("SQS")));
    if has_sqs_event {
        allowed.extend(SQS_POLLER.iter().map(|a| (*a).to_owned()));
    }
    let Some(list) = properties.and_then(|p| p.get("Policies")) else { return Ok((allowed, denied)) };
    let Resolved::List(list) = stack.resolve(list).with_context(|| format!("{logical}'s policies"))? else {
        bail!("{logical}: Policies is not a list");
    };
    for policy in list {
        let statements = match &policy {
            Resolved::Map(entries) => match entries.iter().find(|(k, _)| k == "Statement") {
                Some((_, Resolved::List(statements))) => statements.clone(),
                _ => bail!("{logical}: a policy the IAM check cannot read: {:?}", policy.json()),
            },
            other => bail!("{logical}: a policy the IAM check cannot read: {:?}", other.json()),
        };
        for statement in statements {
            let json = statement.json();
            if json.get("NotAction").is_some() {
                bail!("{logical}: a statement with NotAction, which the IAM check does not read: {json}");
            }
            let actions: Vec<String> = match &json["Action"] {
                serde_json::Value::String(a) => vec![a.clone()],
                serde_json::Value::Array(a) => a.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            };
            if json["Effect"] == "Deny" {
                denied.extend(actions);
            } else {
                allowed.extend(actions);
            }
        }
    }
    Ok((allowed, denied))
}

/// The calls outside the policies: for each function, `called` (its recorded actions)
/// checked against `policy` (allowed, denied patterns). Each violation names the function
/// and the action.
pub fn violations(checked: &BTreeMap<String, (Policy, BTreeSet<String>)>) -> Vec<String> {
    let mut out = Vec::new();
    for (function, ((allowed, denied), called)) in checked {
        for action in called {
            let allow = allowed.iter().any(|p| matches(p, action));
            let deny = denied.iter().any(|p| matches(p, action));
            if !allow || deny {
                out.push(format!(
                    "{function} called {action}, which its template policies do not allow (add it to a statement of {function}'s Policies)"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(matches("dynamodb:*", "dynamodb:PutItem"));
        assert!(matches("s3:Get*", "s3:GetObject"));
        assert!(matches("SQS:sendmessage", "sqs:SendMessage"));
        assert!(matches("sqs:?endMessage", "sqs:SendMessage"));
        assert!(!matches("s3:Get*", "s3:PutObject"));
        assert!(!matches("dynamodb:GetItem", "dynamodb:GetItems"));
    }

    #[test]
    fn a_call_outside_the_statements_is_named() {
        let stack = Stack::new(serde_yaml_ng::from_str("Parameters: {}").unwrap(), "s", &[]).unwrap();
        let function: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "Properties:\n  Events: {Q: {Type: SQS, Properties: {}}}\n  Policies:\n    - Statement:\n        - {Effect: Allow, Action: [dynamodb:GetItem, 'sqs:Send*'], Resource: '*'}\n        - {Effect: Deny, Action: sqs:SendMessageBatch, Resource: '*'}\n",
        )
        .unwrap();
        let policy = policies(&stack, "F", &function).unwrap();
        let called: BTreeSet<String> =
            ["dynamodb:GetItem", "sqs:SendMessage", "sqs:ReceiveMessage", "dynamodb:Scan", "sqs:SendMessageBatch"]
                .into_iter()
                .map(str::to_owned)
                .collect();
        let found = violations(&[("F".to_owned(), (policy, called))].into());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("F called dynamodb:Scan"), "{found:?}");
        assert!(found[1].contains("F called sqs:SendMessageBatch"), "{found:?}");
    }
}
