//! `template.yaml` resolved as CloudFormation would resolve it for one stack: parameters
//! (defaults, then overrides), pseudo parameters, conditions, and the intrinsic functions
//! the template uses (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::If`, `Fn::Select`,
//! `Fn::Split`, `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`), in short form
//! (`!Ref`) or long form (`Fn::Sub:`). A resource's `Ref` and attributes are the physical
//! values the harness gave it when it created it on the loopback server.
//!
//! Source: AWS CloudFormation User Guide, "Intrinsic function reference" and "Pseudo
//! parameters reference".

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value as Json;
use serde_yaml_ng::Value;

/// The account id, region and partition the harness's stack lives in.
pub const ACCOUNT: &str = "123456789012";
/// The region (the loopback server's default).
pub const REGION: &str = "us-east-1";

/// A resolved value: a string, a list, or nothing (`AWS::NoValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// A scalar, as CloudFormation passes every scalar: text.
    Text(String),
    /// A list (`CommaDelimitedList` parameters, `!Split`...).
    List(Vec<Resolved>),
    /// A mapping (resolved properties).
    Map(Vec<(String, Resolved)>),
    /// `AWS::NoValue`: the property is removed.
    None,
}

impl Resolved {
    /// The text of a scalar.
    ///
    /// # Errors
    /// When it is a list, a mapping or no value.
    pub fn text(&self) -> Result<String> {
        match self {
            Self::Text(t) => Ok(t.clone()),
            other => Err(anyhow!("expected a scalar, got {other:?}")),
        }
    }

    /// As JSON (for properties handed to an API).
    pub fn json(&self) -> Json {
        match self {
            Self::Text(t) => Json::String(t.clone()),
            Self::List(items) => Json::Array(items.iter().map(Self::json).collect()),
            Self::Map(entries) => Json::Object(entries.iter().map(|(k, v)| (k.clone(), v.json())).collect()),
            Self::None => Json::Null,
        }
    }
}

/// One stack: the template and what its names resolve to.
pub struct Stack {
    /// The template (possibly changed by a test).
    pub template: Value,
    /// The stack's name (`AWS::StackName`).
    pub name: String,
    parameters: HashMap<String, Resolved>,
    /// Each created resource's `Ref` value and attributes (`Arn`, `QueueName`...).
    physical: HashMap<String, (String, HashMap<String, String>)>,
}

/// A scalar as CloudFormation reads it: text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn tag_name(tag: &serde_yaml_ng::value::Tag) -> String {
    tag.to_string().trim_start_matches('!').to_owned()
}

impl Stack {
    /// The stack of `template` named `name`, with `overrides` on top of the parameters'
    /// defaults.
    ///
    /// # Errors
    /// When a parameter has neither a default nor an override, or a value is not allowed.
    pub fn new(template: Value, name: &str, overrides: &[(&str, String)]) -> Result<Self> {
        let mut parameters = HashMap::new();
        if let Some(declared) = template.get("Parameters").and_then(Value::as_mapping) {
            for (key, spec) in declared {
                let key = key.as_str().context("a parameter name")?.to_owned();
                let given = overrides.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
                let default = spec.get("Default").map(|d| scalar(d).unwrap_or_default());
                let value = given.or(default).with_context(|| format!("parameter {key} has no value"))?;
                if let Some(allowed) = spec.get("AllowedValues").and_then(Value::as_sequence)
                    && !allowed.iter().any(|a| scalar(a).as_deref() == Some(value.as_str()))
                {
                    bail!("parameter {key}: {value:?} is not one of its allowed values");
                }
                let resolved = if spec.get("Type").and_then(Value::as_str) == Some("CommaDelimitedList") {
                    if value.is_empty() {
                        Resolved::List(vec![Resolved::Text(String::new())])
                    } else {
                        Resolved::List(value.split(',').map(|s| Resolved::Text(s.trim().to_owned())).collect())
                    }
                } else {
                    Resolved::Text(value)
                };
                parameters.insert(key, resolved);
            }
        }
        for (key, _) in overrides {
            if !parameters.contains_key(*key) {
                bail!("override of {key}, which the template does not declare");
            }
        }
        Ok(Self { template, name: name.to_owned(), parameters, physical: HashMap::new() })
    }

    /// Records what a created resource's `Ref` and attributes resolve to.
    pub fn set_physical(&mut self, logical: &str, reference: String, attributes: HashMap<String, String>) {
        self.physical.insert(logical.to_owned(), (reference, attributes));
    }

    /// The resources of type `kind` (`AWS::SQS::Queue`...), with their logical ids, whose
    /// condition (if any) holds.
    ///
    /// # Errors
    /// When a condition cannot be evaluated.
    pub fn resources(&self, kind: &str) -> Result<Vec<(String, Value)>> {
        let mut out = Vec::new();
        for (name, resource) in self.template.get("Resources").and_then(Value::as_mapping).into_iter().flatten() {
            if resource.get("Type").and_then(Value::as_str) != Some(kind) {
                continue;
            }
            if let Some(condition) = resource.get("Condition").and_then(Value::as_str)
                && !self.condition(condition)?
            {
                continue;
            }
            out.push((name.as_str().unwrap_or_default().to_owned(), resource.clone()));
        }
        Ok(out)
    }

    /// A named condition's value.
    ///
    /// # Errors
    /// When it is not declared or cannot be evaluated.
    pub fn condition(&self, name: &str) -> Result<bool> {
        let expr = self
            .template
            .get("Conditions")
            .and_then(|c| c.get(name))
            .with_context(|| format!("condition {name} is not declared"))?;
        self.boolean(expr)
    }

    fn boolean(&self, expr: &Value) -> Result<bool> {
        let (function, args) = intrinsic(expr).with_context(|| format!("not a condition: {expr:?}"))?;
        let list = |args: &Value| args.as_sequence().cloned().unwrap_or_default();
        match function.as_str() {
            "Fn::Equals" | "Equals" => {
                let items = list(args);
                Ok(self.resolve(&items[0])? == self.resolve(&items[1])?)
            }
            "Fn::Not" | "Not" => Ok(!self.boolean(&list(args)[0])?),
            "Fn::And" | "And" => list(args).iter().try_fold(true, |acc, a| Ok(acc && self.boolean(a)?)),
            "Fn::Or" | "Or" => list(args).iter().try_fold(false, |acc, a| Ok(acc || self.boolean(a)?)),
            "Condition" => self.condition(args.as_str().context("a condition name")?),
            other => bail!("{other} is not a condition function"),
        }
    }

    /// What `!Ref name` resolves to: a parameter, a pseudo parameter, or a created
    /// resource's physical id.
    ///
    /// # Errors
    /// When there is no such name.
    pub fn reference(&self, name: &str) -> Result<Resolved> {
        let pseudo = match name {
            "AWS::Region" => Some(REGION.to_owned()),
            "AWS::AccountId" => Some(ACCOUNT.to_owned()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::StackName" => Some(self.name.clone()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            "AWS::NoValue" => return Ok(Resolved::None),
            _ => None,
        };
        if let Some(value) = pseudo {
            return Ok(Resolved::Text(value));
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        let (reference, _) =
            self.physical.get(name).with_context(|| format!("!Ref {name}: no such parameter or created resource"))?;
        Ok(Resolved::Text(reference.clone()))
    }

    fn attribute(&self, logical: &str, attribute: &str) -> Result<String> {
        let (_, attributes) =
            self.physical.get(logical).with_context(|| format!("!GetAtt {logical}.{attribute}: no such resource"))?;
        attributes.get(attribute).cloned().with_context(|| format!("!GetAtt {logical}.{attribute}: no such attribute"))
    }

    fn substitute(&self, text: &str, variables: &HashMap<String, Resolved>) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            // `${!Literal}` writes `${Literal}`.
            if let Some(literal) = after.strip_prefix('!') {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let end = after.find('}').with_context(|| format!("unclosed ${{ in {text:?}"))?;
            let name = &after[..end];
            let value = if let Some(v) = variables.get(name) {
                v.text()?
            } else if let Some((logical, attribute)) = name.split_once('.') {
                self.attribute(logical, attribute)?
            } else {
                self.reference(name)?.text()?
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `value` with every intrinsic function resolved.
    ///
    /// # Errors
    /// When a name is unknown or a function is not supported; the message names it.
    pub fn resolve(&self, value: &Value) -> Result<Resolved> {
        if let Some((function, args)) = intrinsic(value) {
            return self.function(&function, args);
        }
        Ok(match value {
            Value::Null => Resolved::Text(String::new()),
            Value::Bool(b) => Resolved::Text(b.to_string()),
            Value::Number(n) => Resolved::Text(n.to_string()),
            Value::String(s) => Resolved::Text(s.clone()),
            Value::Sequence(items) => Resolved::List(
                items
                    .iter()
                    .map(|i| self.resolve(i))
                    .filter(|r| !matches!(r, Ok(Resolved::None)))
                    .collect::<Result<_>>()?,
            ),
            Value::Mapping(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    let resolved = self.resolve(v)?;
                    if resolved != Resolved::None {
                        out.push((k.as_str().unwrap_or_default().to_owned(), resolved));
                    }
                }
                Resolved::Map(out)
            }
            Value::Tagged(t) => bail!("unsupported tag !{}", tag_name(&t.tag)),
        })
    }

    fn function(&self, function: &str, args: &Value) -> Result<Resolved> {
        let list = || args.as_sequence().cloned().with_context(|| format!("{function} takes a list"));
        match function {
            "Ref" => self.reference(args.as_str().context("!Ref takes a name")?),
            "Fn::GetAtt" | "GetAtt" => {
                let (logical, attribute) = match args {
                    Value::String(s) => s.split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())),
                    Value::Sequence(s) => Some((
                        s[0].as_str().unwrap_or_default().to_owned(),
                        s[1].as_str().unwrap_or_default().to_owned(),
                    )),
                    _ => None,
                }
                .context("!GetAtt takes Resource.Attribute")?;
                Ok(Resolved::Text(self.attribute(&logical, &attribute)?))
            }
            "Fn::Sub" | "Sub" => match args {
                Value::String(s) => Ok(Resolved::Text(self.substitute(s, &HashMap::new())?)),
                Value::Sequence(s) => {
                    let mut variables = HashMap::new();
                    for (k, v) in s.get(1).and_then(Value::as_mapping).into_iter().flatten() {
                        variables.insert(k.as_str().unwrap_or_default().to_owned(), self.resolve(v)?);
                    }
                    Ok(Resolved::Text(self.substitute(s[0].as_str().context("!Sub's text")?, &variables)?))
                }
                _ => bail!("!Sub takes a string or a list"),
            },
            "Fn::Join" | "Join" => {
                let items = list()?;
                let separator = items[0].as_str().unwrap_or_default();
                let parts = match self.resolve(&items[1])? {
                    Resolved::List(parts) => parts,
                    other => bail!("!Join takes a list, got {other:?}"),
                };
                Ok(Resolved::Text(parts.iter().map(Resolved::text).collect::<Result<Vec<_>>>()?.join(separator)))
            }
            "Fn::If" | "If" => {
                let items = list()?;
                let branch = if self.condition(items[0].as_str().context("!If's condition")?)? { 1 } else { 2 };
                self.resolve(&items[branch])
            }
            "Fn::Select" | "Select" => {
                let items = list()?;
                let index: usize = self.resolve(&items[0])?.text()?.parse()?;
                match self.resolve(&items[1])? {
                    Resolved::List(parts) => parts.get(index).cloned().context("!Select index out of range"),
                    other => bail!("!Select takes a list, got {other:?}"),
                }
            }
            "Fn::Split" | "Split" => {
                let items = list()?;
                let separator = items[0].as_str().unwrap_or_default();
                let text = self.resolve(&items[1])?.text()?;
                Ok(Resolved::List(text.split(separator).map(|s| Resolved::Text(s.to_owned())).collect()))
            }
            "Fn::Equals" | "Equals" | "Fn::Not" | "Not" | "Fn::And" | "And" | "Fn::Or" | "Or" | "Condition" => {
                let mut mapping = serde_yaml_ng::Mapping::new();
                mapping.insert(Value::String(function.to_owned()), args.clone());
                Ok(Resolved::Text(self.boolean(&Value::Mapping(mapping))?.to_string()))
            }
            other => bail!("intrinsic function {other} is not supported by the harness"),
        }
    }
}

/// The function and arguments of an intrinsic call: `!Name args` or `{"Fn::Name": args}`
/// (`{"Ref": name}`, `{"Condition": name}`).
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((
            match tag_name(&t.tag).as_str() {
                "Ref" => "Ref".to_owned(),
                "Condition" => "Condition".to_owned(),
                other => format!("Fn::{other}"),
            },
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = k.as_str()?;
            (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then(|| (k.to_owned(), v))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(yaml: &str, overrides: &[(&str, String)]) -> Stack {
        Stack::new(serde_yaml_ng::from_str(yaml).unwrap(), "gw-test", overrides).unwrap()
    }

    const TEMPLATE: &str = r#"
Parameters:
  Environment: {Type: String, Default: staging}
  Origins: {Type: CommaDelimitedList, Default: "a,b"}
  Empty: {Type: String, Default: ""}
Conditions:
  IsProduction: !Equals [!Ref Environment, production]
  HasEmpty: !Not [!Equals [!Ref Empty, ""]]
  Either: !Or [!Condition IsProduction, {"Fn::Equals": ["x", "x"]}]
"#;

    #[test]
    fn intrinsics_resolve_in_short_and_long_form() {
        let mut s = stack(TEMPLATE, &[("Environment", "production".into())]);
        s.set_physical("Queue", "http://q/1/jobs".into(), [("Arn".into(), "arn:aws:sqs:r:1:jobs".into())].into());
        let v = |y: &str| s.resolve(&serde_yaml_ng::from_str(y).unwrap()).unwrap();
        assert_eq!(v("!Ref Environment"), Resolved::Text("production".into()));
        assert_eq!(v("!Ref Queue"), Resolved::Text("http://q/1/jobs".into()));
        assert_eq!(v("!GetAtt Queue.Arn"), Resolved::Text("arn:aws:sqs:r:1:jobs".into()));
        assert_eq!(v("{'Fn::GetAtt': [Queue, Arn]}"), Resolved::Text("arn:aws:sqs:r:1:jobs".into()));
        assert_eq!(
            v("!Sub '${Queue.Arn}/x-${Environment}-${AWS::Region}-${!Literal}'"),
            Resolved::Text("arn:aws:sqs:r:1:jobs/x-production-us-east-1-${Literal}".into())
        );
        assert_eq!(
            v("!Sub ['${A}-${AWS::AccountId}', {A: !Ref Environment}]"),
            Resolved::Text("production-123456789012".into())
        );
        assert_eq!(v("!Join [',', !Ref Origins]"), Resolved::Text("a,b".into()));
        assert_eq!(v("!If [IsProduction, yes, !Ref AWS::NoValue]"), Resolved::Text("yes".into()));
        assert_eq!(v("!Select [1, !Split ['/', 'a/b/c']]"), Resolved::Text("b".into()));
        assert_eq!(
            v("[a, !Ref AWS::NoValue, b]"),
            Resolved::List(vec![Resolved::Text("a".into()), Resolved::Text("b".into())])
        );
        assert!(s.condition("IsProduction").unwrap());
        assert!(!s.condition("HasEmpty").unwrap());
        assert!(s.condition("Either").unwrap());
    }

    #[test]
    fn unknown_names_and_values_are_named_in_the_error() {
        let s = stack(TEMPLATE, &[]);
        let err = s.resolve(&serde_yaml_ng::from_str("!GetAtt Missing.Arn").unwrap()).unwrap_err();
        assert!(err.to_string().contains("Missing.Arn"), "{err}");
        let err = s.resolve(&serde_yaml_ng::from_str("!Sub '${Nope}'").unwrap()).unwrap_err();
        assert!(err.to_string().contains("Nope"), "{err}");
        let err = Stack::new(serde_yaml_ng::from_str(TEMPLATE).unwrap(), "x", &[("Unknown", "1".into())]);
        assert!(err.err().unwrap().to_string().contains("Unknown"));
    }
}
