//! `PATCH` (RFC 7644 section 3.5.2): `add`, `replace` and `remove` operations applied to a
//! stored resource, which [`super::schema::normalize`] checks again afterwards.
//!
//! Besides the RFC's forms, the variants identity providers send are taken:
//! - operation names in any case (`"Replace"`, Entra ID);
//! - a path-less `add`/`replace` whose value names attributes by path
//!   (`{"name.givenName": "Ada", "active": false}`, Entra ID) or by URN;
//! - booleans as strings (`"False"`, Entra ID), read by the schema check;
//! - `remove` of `members` with a value listing the members to remove (Entra ID);
//! - `add`/`replace` through a filter that matches nothing (`emails[type eq "work"].value`,
//!   Entra ID and Okta) adds the element the filter describes, when it is made of `eq`
//!   comparisons joined by `and`.
//!
//! A `remove` whose filter matches nothing succeeds: the provider retries operations, and the
//! second removal of a member must not fail the sync. An attribute the schema does not keep
//! (an extension's, another schema's URN, `phoneNumbers` or `addresses` that an identity
//! provider's default mapping sends) is ignored, as [`super::schema::normalize`] drops it on
//! `POST` and `PUT`; so are `id`, `meta` and `schemas` in a path-less value (Okta repeats the
//! group's `id` there). Naming `id` or `meta` as a path is refused (`mutability`).

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::filter::val_filter;
use super::schema::{Attribute, Kind, Mutability, ResourceType};
use super::{ScimError, ScimType};

/// The most operations one `PATCH` carries.
pub const MAX_OPERATIONS: usize = 1000;

/// An operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Add values (append to lists, merge complex values).
    Add,
    /// Replace values.
    Replace,
    /// Remove values.
    Remove,
}

/// One operation of a `PATCH` body.
#[derive(Debug, Clone)]
pub struct Operation {
    /// What it does.
    pub op: Op,
    /// Where; `None` for a path-less `add` or `replace`.
    pub path: Option<PatchPath>,
    /// With what.
    pub value: Value,
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// The operations of a `PatchOp` body.
///
/// # Errors
/// 400 `invalidSyntax` when the body is not a `PatchOp` message, or an operation's `op` is not
/// one of the three; 400 `invalidPath` when a path does not parse; 400 `noTarget` for a
/// `remove` without a path; 400 `tooMany` past [`MAX_OPERATIONS`].
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let syntax = |d: &str| ScimError::bad(ScimType::InvalidSyntax, d);
    let body = body.as_object().ok_or_else(|| syntax("the body must be a PatchOp object"))?;
    let schemas = field(body, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|s| s.as_str() == Some(super::PATCH_OP_SCHEMA))) {
        return Err(syntax("`schemas` must list urn:ietf:params:scim:api:messages:2.0:PatchOp"));
    }
    let operations =
        field(body, "Operations").and_then(Value::as_array).ok_or_else(|| syntax("`Operations` must be a list"))?;
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(ScimType::TooMany, format!("at most {MAX_OPERATIONS} operations per PATCH")));
    }
    let mut out = Vec::with_capacity(operations.len());
    for operation in operations {
        let operation = operation.as_object().ok_or_else(|| syntax("each operation must be an object"))?;
        let op = match field(operation, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("add") => Op::Add,
            Some("replace") => Op::Replace,
            Some("remove") => Op::Remove,
            _ => return Err(syntax("`op` must be add, replace or remove")),
        };
        let path = match field(operation, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(parse_path(p)?),
            Some(_) => return Err(ScimError::bad(ScimType::InvalidPath, "`path` must be a string")),
        };
        let value = field(operation, "value").cloned().unwrap_or(Value::Null);
        match (op, &path) {
            (Op::Remove, None) => return Err(ScimError::bad(ScimType::NoTarget, "a remove needs a path")),
            (Op::Add | Op::Replace, None) if !value.is_object() => {
                return Err(ScimError::bad(ScimType::InvalidValue, "an add or replace without a path takes an object"));
            }
            (Op::Add | Op::Replace, _) if value.is_null() => {
                return Err(ScimError::bad(ScimType::InvalidValue, "an add or replace needs a value"));
            }
            _ => {}
        }
        out.push(Operation { op, path, value });
    }
    Ok(out)
}

fn parse_path(path: &str) -> Result<PatchPath, ScimError> {
    path.trim().parse().map_err(|e| ScimError::bad(ScimType::InvalidPath, format!("`{path}` is not a path: {e}")))
}

/// Applies `operations`, in order, to `resource` (the stored attributes, canonical names).
///
/// # Errors
/// 400 `invalidPath` for an attribute the type does not have; 400 `mutability` for `id`,
/// `meta` or a read-only attribute; 400 `noTarget` when a `replace` filter matches nothing and
/// describes no element to add; 400 `invalidValue` for a value of the wrong shape.
pub fn apply(
    resource_type: &ResourceType,
    resource: &mut Map<String, Value>,
    operations: &[Operation],
) -> Result<(), ScimError> {
    for operation in operations {
        match &operation.path {
            Some(path) => apply_at(resource_type, resource, operation.op, path, &operation.value)?,
            None => {
                let Value::Object(fields) = &operation.value else { unreachable!("checked by parse") };
                for (key, value) in fields {
                    // A key is an attribute path (Entra ID), or an extension's URN holding an
                    // object of its attributes (dropped: no extension is kept).
                    if key.starts_with("urn:") && !key.starts_with(resource_type.schema) {
                        continue;
                    }
                    if ["id", "meta", "schemas"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
                        continue;
                    }
                    let path = parse_path(key)?;
                    apply_at(resource_type, resource, operation.op, &path, value)?;
                }
            }
        }
    }
    Ok(())
}

/// The attribute a path names, or `None` for one the schema does not keep (ignored).
fn resolve(resource_type: &ResourceType, attr: &AttrPath) -> Result<Option<&'static Attribute>, ScimError> {
    if attr.uri.as_deref().is_some_and(|u| !u.eq_ignore_ascii_case(resource_type.schema)) {
        return Ok(None);
    }
    if ["id", "meta", "schemas"].iter().any(|n| n.eq_ignore_ascii_case(&attr.name)) {
        return Err(ScimError::bad(ScimType::Mutability, format!("`{}` is set by the server", attr.name)));
    }
    let Some(attribute) = resource_type.attribute(&attr.name) else { return Ok(None) };
    if attribute.mutability == Mutability::ReadOnly {
        return Err(ScimError::bad(ScimType::Mutability, format!("`{}` is read-only", attribute.name)));
    }
    Ok(Some(attribute))
}

/// A sub-attribute's canonical name; `None` for one the schema does not keep (ignored).
fn sub_name(attribute: &Attribute, sub: &str) -> Option<&'static str> {
    attribute.sub_attributes.iter().find(|s| s.name.eq_ignore_ascii_case(sub)).map(|s| s.name)
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

fn apply_at(
    resource_type: &ResourceType,
    resource: &mut Map<String, Value>,
    op: Op,
    path: &PatchPath,
    value: &Value,
) -> Result<(), ScimError> {
    match path {
        PatchPath::Attr(attr) => {
            let Some(attribute) = resolve(resource_type, attr)? else { return Ok(()) };
            match &attr.sub_attr {
                None => whole(attribute, resource, op, value),
                Some(sub) => {
                    let Some(sub) = sub_name(attribute, sub) else { return Ok(()) };
                    every_element(attribute, resource, op, sub, value)
                }
            }
        }
        PatchPath::Value(vp) => {
            let Some(attribute) = resolve(resource_type, &vp.attr)? else { return Ok(()) };
            if !attribute.multi_valued || attribute.kind != Kind::Complex {
                return Err(ScimError::bad(
                    ScimType::InvalidPath,
                    format!("`{}` is not a multi-valued complex attribute", attribute.name),
                ));
            }
            let sub = match vp.sub_attr.as_deref() {
                None => None,
                Some(s) => match sub_name(attribute, s) {
                    Some(s) => Some(s),
                    None => return Ok(()),
                },
            };
            filtered(resource_type, attribute, resource, op, &vp.filter, sub, value)
        }
    }
}

/// An operation on a whole attribute (`emails`, `name`, `active`).
fn whole(attribute: &Attribute, resource: &mut Map<String, Value>, op: Op, value: &Value) -> Result<(), ScimError> {
    let name = attribute.name.to_owned();
    match op {
        Op::Remove if attribute.multi_valued && !value.is_null() => {
            // Entra ID: remove these values (`members` with `[{"value": id}]`).
            let gone = as_list(value);
            let key_of = |v: &Value| v.get("value").cloned().unwrap_or_else(|| v.clone());
            let gone: Vec<Value> = gone.iter().map(key_of).collect();
            if let Some(Value::Array(items)) = resource.get_mut(&name) {
                items.retain(|i| !gone.contains(&key_of(i)));
            }
        }
        Op::Remove => {
            resource.remove(&name);
        }
        Op::Add if attribute.multi_valued => {
            let mut items = resource.get(&name).map(as_list).unwrap_or_default();
            for v in as_list(value) {
                if !items.contains(&v) {
                    items.push(v);
                }
            }
            resource.insert(name, Value::Array(items));
        }
        Op::Add | Op::Replace if !attribute.multi_valued && attribute.kind == Kind::Complex => {
            let Value::Object(parts) = value else {
                return Err(ScimError::bad(ScimType::InvalidValue, format!("`{name}` takes an object")));
            };
            let mut merged = resource.get(&name).and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, v) in parts {
                let canonical = sub_name(attribute, k).map_or_else(|| k.clone(), str::to_owned);
                merged.insert(canonical, v.clone());
            }
            resource.insert(name, Value::Object(merged));
        }
        Op::Add | Op::Replace => {
            resource.insert(name, value.clone());
        }
    }
    Ok(())
}

/// An operation on one sub-attribute of a complex attribute (`name.givenName`), or of every
/// element of a multi-valued one (`emails.type`).
fn every_element(
    attribute: &Attribute,
    resource: &mut Map<String, Value>,
    op: Op,
    sub: &str,
    value: &Value,
) -> Result<(), ScimError> {
    let name = attribute.name.to_owned();
    if attribute.kind != Kind::Complex {
        return Err(ScimError::bad(ScimType::InvalidPath, format!("`{name}` has no sub-attributes")));
    }
    let set = |object: &mut Map<String, Value>| match op {
        Op::Remove => {
            object.remove(sub);
        }
        Op::Add | Op::Replace => {
            object.insert(sub.to_owned(), value.clone());
        }
    };
    if attribute.multi_valued {
        match resource.get_mut(&name) {
            Some(Value::Array(items)) if !items.is_empty() => {
                items.iter_mut().filter_map(Value::as_object_mut).for_each(set)
            }
            _ if op != Op::Remove => {
                let mut element = Map::new();
                set(&mut element);
                resource.insert(name, Value::Array(vec![Value::Object(element)]));
            }
            _ => {}
        }
    } else {
        let entry = resource.entry(name).or_insert_with(|| Value::Object(Map::new()));
        match entry.as_object_mut() {
            Some(object) => set(object),
            None => {
                let mut object = Map::new();
                set(&mut object);
                *entry = Value::Object(object);
            }
        }
    }
    Ok(())
}

/// The element a filter of `eq` comparisons joined by `and` describes (`type eq "work"`).
fn described_element(filter: &ValFilter, into: &mut Map<String, Value>) -> bool {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value)) if path.sub_attr.is_none() => {
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::True => Value::Bool(true),
                CompValue::False => Value::Bool(false),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return false,
            };
            into.insert(path.name.clone(), v);
            true
        }
        ValFilter::And(a, b) => described_element(a, into) && described_element(b, into),
        _ => false,
    }
}

/// An operation through a filter (`emails[type eq "work"].value`, `members[value eq "id"]`).
fn filtered(
    resource_type: &ResourceType,
    attribute: &Attribute,
    resource: &mut Map<String, Value>,
    op: Op,
    filter: &ValFilter,
    sub: Option<&str>,
    value: &Value,
) -> Result<(), ScimError> {
    let name = attribute.name.to_owned();
    let mut items = resource.get(&name).map(as_list).unwrap_or_default();
    let mut matched = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if val_filter(resource_type, item, filter, attribute.name)? {
            matched.push(i);
        }
    }
    match op {
        Op::Remove => {
            for &i in matched.iter().rev() {
                match sub {
                    Some(sub) => {
                        if let Some(o) = items[i].as_object_mut() {
                            o.remove(sub);
                        }
                    }
                    None => {
                        items.remove(i);
                    }
                }
            }
        }
        Op::Add | Op::Replace if matched.is_empty() => {
            let mut element = Map::new();
            if !described_element(filter, &mut element) {
                return Err(ScimError::bad(ScimType::NoTarget, format!("the filter on `{name}` matched nothing")));
            }
            match (sub, value) {
                (Some(sub), v) => {
                    element.insert(sub.to_owned(), v.clone());
                }
                (None, Value::Object(parts)) => element.extend(parts.clone()),
                (None, _) => return Err(ScimError::bad(ScimType::InvalidValue, format!("`{name}` takes objects"))),
            }
            items.push(Value::Object(element));
        }
        Op::Add | Op::Replace => {
            for &i in &matched {
                match (sub, &mut items[i]) {
                    (Some(sub), Value::Object(o)) => {
                        o.insert(sub.to_owned(), value.clone());
                    }
                    (None, Value::Object(o)) if op == Op::Add => {
                        if let Value::Object(parts) = value {
                            o.extend(parts.clone());
                        }
                    }
                    (None, slot) => *slot = value.clone(),
                    (Some(_), _) => {}
                }
            }
        }
    }
    if items.is_empty() {
        resource.remove(&name);
    } else {
        resource.insert(name, Value::Array(items));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::schema::{GROUP, USER, normalize};

    fn patched(resource_type: &ResourceType, start: Value, body: Value) -> Result<Value, ScimError> {
        let mut resource = normalize(resource_type, &start).unwrap();
        apply(resource_type, &mut resource, &parse(&body)?)?;
        Ok(Value::Object(normalize(resource_type, &Value::Object(resource))?))
    }

    fn ops(operations: Value) -> Value {
        json!({"schemas": [crate::scim::PATCH_OP_SCHEMA], "Operations": operations})
    }

    #[test]
    fn entra_id_deactivation_and_path_less_replace() {
        let start = json!({"userName": "ada@example.com", "active": true, "name": {"familyName": "Byron"}});
        let body = ops(json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "value": {"name.givenName": "Ada", "name.familyName": "Lovelace",
              "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "R&D"}},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ada@example.com"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "7"},
        ]));
        let user = patched(&USER, start, body).unwrap();
        assert_eq!(user["active"], false);
        assert_eq!(user["name"], json!({"givenName": "Ada", "familyName": "Lovelace"}));
        assert_eq!(user["emails"], json!([{"type": "work", "value": "ada@example.com"}]));
    }

    #[test]
    fn okta_deactivation_and_email_replace() {
        let start = json!({"userName": "ada@example.com", "active": true,
                           "emails": [{"value": "old@example.com", "type": "work", "primary": true}]});
        let body = ops(json!([
            {"op": "replace", "value": {"active": false}},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"},
        ]));
        let user = patched(&USER, start, body).unwrap();
        assert_eq!(user["active"], false);
        assert_eq!(user["emails"], json!([{"value": "new@example.com", "type": "work", "primary": true}]));
    }

    #[test]
    fn group_members_added_and_removed_in_every_providers_form() {
        let start = json!({"displayName": "Eng", "members": [{"value": "a"}, {"value": "b"}]});
        let body = ops(json!([
            {"op": "add", "path": "members", "value": [{"value": "c"}, {"value": "a"}]},
            {"op": "remove", "path": "members[value eq \"b\"]"},
            {"op": "Remove", "path": "members", "value": [{"value": "c"}]},
            {"op": "remove", "path": "members[value eq \"gone-already\"]"},
        ]));
        let group = patched(&GROUP, start.clone(), body).unwrap();
        assert_eq!(group["members"], json!([{"value": "a"}]));
        let replaced =
            patched(&GROUP, start.clone(), ops(json!([{"op": "replace", "path": "members", "value": []}]))).unwrap();
        assert!(replaced.get("members").is_none());
        let renamed =
            patched(&GROUP, start, ops(json!([{"op": "replace", "value": {"displayName": "Engineering"}}]))).unwrap();
        assert_eq!(renamed["displayName"], "Engineering");
    }

    #[test]
    fn attributes_the_schema_does_not_keep_are_ignored_as_on_create() {
        let start = json!({"userName": "ada@example.com", "name": {"givenName": "Ada"}});
        let body = ops(json!([
            {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555"},
            {"op": "replace", "path": "addresses[type eq \"work\"].postalCode", "value": "12345"},
            {"op": "add", "value": {"roles": [{"value": "x"}], "name.nickname": "A"}},
            {"op": "remove", "path": "name.unknownPart"},
        ]));
        let user = patched(&USER, start.clone(), body).unwrap();
        assert_eq!(user, json!({"userName": "ada@example.com", "name": {"givenName": "Ada"}}));
        // Okta's group rename repeats the group's id in the value.
        let group = json!({"displayName": "Eng"});
        let body = ops(json!([{"op": "replace", "value": {"id": "01ABC", "displayName": "Sales"}}]));
        assert_eq!(patched(&GROUP, group, body).unwrap(), json!({"displayName": "Sales"}));
    }

    #[test]
    fn bad_operations_get_the_rfc_scim_types() {
        let user = json!({"userName": "ada@example.com"});
        let cases = [
            (ops(json!([{"op": "remove"}])), ScimType::NoTarget),
            (ops(json!([{"op": "move", "path": "userName"}])), ScimType::InvalidSyntax),
            (ops(json!([{"op": "add", "path": "emails[", "value": 1}])), ScimType::InvalidPath),
            (ops(json!([{"op": "replace", "path": "id", "value": "x"}])), ScimType::Mutability),
            (
                ops(json!([{"op": "replace", "path": "emails[value co \"x\"].type", "value": "work"}])),
                ScimType::NoTarget,
            ),
            (ops(json!([{"op": "replace", "path": "userName", "value": 5}])), ScimType::InvalidValue),
            (ops(json!([{"op": "remove", "path": "userName"}])), ScimType::InvalidValue),
            (json!({"Operations": []}), ScimType::InvalidSyntax),
        ];
        for (body, want) in cases {
            let err = patched(&USER, user.clone(), body.clone()).unwrap_err();
            assert_eq!(err.scim_type, Some(want), "{body}");
        }
    }
}
