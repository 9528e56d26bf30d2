//! Filters (RFC 7644 section 3.4.2.2), evaluated over a rendered resource.
//!
//! A comparison on a multi-valued attribute matches when any value does; on a complex
//! attribute without a sub-attribute (`emails co "@example.com"`) it compares the `value`
//! sub-attribute. Strings compare case-insensitively unless the attribute is `caseExact`
//! (`id`, `externalId`, `meta` are); `gt`/`ge`/`lt`/`le` compare strings in code-point order,
//! which orders `meta.lastModified` (RFC 3339, UTC, fixed precision) by time. Booleans take
//! only `eq`, `ne` and `pr`.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

use super::schema::{Kind, ResourceType};
use super::{ScimError, ScimType};

/// Parses a `filter` parameter.
///
/// # Errors
/// 400 `invalidFilter` when it does not parse (or nests too deeply).
pub fn parse(filter: &str) -> Result<Filter, ScimError> {
    filter.parse().map_err(|e| ScimError::bad(ScimType::InvalidFilter, format!("the filter does not parse: {e}")))
}

/// Whether `resource` (as rendered, with `id` and `meta`) matches `filter`.
///
/// # Errors
/// 400 `invalidFilter` for an ordering operator on a boolean, or a comparison with a
/// complex attribute that has no `value`.
pub fn matches(resource_type: &ResourceType, resource: &Value, filter: &Filter) -> Result<bool, ScimError> {
    Ok(match filter {
        Filter::Attr(exp) => attr_exp(resource_type, resource, exp, None)?,
        Filter::ValuePath(vp) => {
            let parent = strip_uri(resource_type, &vp.attr)?;
            let mut any = false;
            for element in values(resource, parent.as_deref()) {
                if val_filter(resource_type, element, &vp.filter, &vp.attr.name)? {
                    any = true;
                    break;
                }
            }
            any
        }
        Filter::Not(inner) => !matches(resource_type, resource, inner)?,
        Filter::And(a, b) => matches(resource_type, resource, a)? && matches(resource_type, resource, b)?,
        Filter::Or(a, b) => matches(resource_type, resource, a)? || matches(resource_type, resource, b)?,
    })
}

/// Whether one element of a multi-valued complex attribute (`parent`) matches the filter in
/// brackets; also what a `PATCH` path's filter (`emails[type eq "work"]`) selects with.
///
/// # Errors
/// As [`matches`].
pub fn val_filter(
    resource_type: &ResourceType,
    element: &Value,
    filter: &ValFilter,
    parent: &str,
) -> Result<bool, ScimError> {
    Ok(match filter {
        ValFilter::Attr(exp) => attr_exp(resource_type, element, exp, Some(parent))?,
        ValFilter::Not(inner) => !val_filter(resource_type, element, inner, parent)?,
        ValFilter::And(a, b) => {
            val_filter(resource_type, element, a, parent)? && val_filter(resource_type, element, b, parent)?
        }
        ValFilter::Or(a, b) => {
            val_filter(resource_type, element, a, parent)? || val_filter(resource_type, element, b, parent)?
        }
    })
}

/// The path without its schema URN; `None` for an extension's attribute, which no resource
/// here holds.
fn strip_uri(resource_type: &ResourceType, path: &AttrPath) -> Result<Option<String>, ScimError> {
    match &path.uri {
        Some(uri) if !uri.eq_ignore_ascii_case(resource_type.schema) => Ok(None),
        _ => Ok(Some(path.name.clone())),
    }
}

fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Every value at `name` in `object`, lists flattened.
fn values<'a>(object: &'a Value, name: Option<&str>) -> Vec<&'a Value> {
    match name.and_then(|n| field(object, n)) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    }
}

/// Whether the compared attribute respects case, and whether it is a boolean.
fn traits(resource_type: &ResourceType, parent: Option<&str>, name: &str, sub: Option<&str>) -> (bool, bool) {
    let (top, leaf) = match parent {
        Some(p) => (p, Some(name)),
        None => (name, sub),
    };
    let Some(attribute) = resource_type.attribute(top) else {
        // `id` and `meta`: server-made values, compared exactly.
        return (true, false);
    };
    let attribute = match leaf {
        Some(leaf) => match attribute.sub_attributes.iter().find(|s| s.name.eq_ignore_ascii_case(leaf)) {
            Some(s) => s,
            None => return (true, false),
        },
        None if attribute.kind == Kind::Complex => match attribute.sub_attributes.iter().find(|s| s.name == "value") {
            Some(s) => s,
            None => return (true, false),
        },
        None => attribute,
    };
    (attribute.case_exact, attribute.kind == Kind::Boolean)
}

fn attr_exp(
    resource_type: &ResourceType,
    object: &Value,
    exp: &AttrExp,
    parent: Option<&str>,
) -> Result<bool, ScimError> {
    let path = match exp {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    };
    let Some(name) = strip_uri(resource_type, path)? else { return Ok(false) };
    let (case_exact, boolean) = traits(resource_type, parent, &name, path.sub_attr.as_deref());
    let mut candidates = Vec::new();
    for v in values(object, Some(name.as_str())) {
        match (&path.sub_attr, v) {
            (Some(sub), _) => candidates.extend(values(v, Some(sub.as_str()))),
            (None, Value::Object(_)) => candidates.extend(values(v, Some("value"))),
            (None, v) => candidates.push(v),
        }
    }
    match exp {
        AttrExp::Present(_) => Ok(candidates.iter().any(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        })),
        AttrExp::Comparison(_, op, value) => {
            if boolean && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                return Err(ScimError::bad(ScimType::InvalidFilter, format!("`{name}` is a boolean: use eq or ne")));
            }
            let any_equal = |cs: &[&Value]| cs.iter().any(|c| compare(c, &CompareOp::Eq, value, case_exact));
            Ok(match op {
                CompareOp::Ne => !any_equal(&candidates),
                CompareOp::Eq if matches!(value, CompValue::Null) => candidates.is_empty(),
                op => candidates.iter().any(|c| compare(c, op, value, case_exact)),
            })
        }
    }
}

fn compare(candidate: &Value, op: &CompareOp, value: &CompValue, case_exact: bool) -> bool {
    match (candidate, value) {
        (Value::String(c), CompValue::Str(v)) => {
            let (c, v) = if case_exact { (c.clone(), v.clone()) } else { (c.to_lowercase(), v.to_lowercase()) };
            match op {
                CompareOp::Eq => c == v,
                CompareOp::Ne => c != v,
                CompareOp::Co => c.contains(&v),
                CompareOp::Sw => c.starts_with(&v),
                CompareOp::Ew => c.ends_with(&v),
                CompareOp::Gt => c > v,
                CompareOp::Ge => c >= v,
                CompareOp::Lt => c < v,
                CompareOp::Le => c <= v,
            }
        }
        (Value::Bool(c), CompValue::True | CompValue::False) => {
            let v = matches!(value, CompValue::True);
            match op {
                CompareOp::Eq => *c == v,
                CompareOp::Ne => *c != v,
                _ => false,
            }
        }
        (Value::Number(c), CompValue::Number(v)) => {
            let (Some(c), Some(v)) = (c.as_f64(), v.as_f64()) else { return false };
            match op {
                CompareOp::Eq => c == v,
                CompareOp::Ne => c != v,
                CompareOp::Gt => c > v,
                CompareOp::Ge => c >= v,
                CompareOp::Lt => c < v,
                CompareOp::Le => c <= v,
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::schema::{GROUP, USER};

    fn user() -> Value {
        json!({"schemas": [crate::scim::schema::USER_SCHEMA], "id": "01ABC", "externalId": "Ext-1",
               "userName": "Ada.Lovelace@Example.com", "active": true, "name": {"givenName": "Ada"},
               "emails": [{"value": "ada@example.com", "type": "work"}, {"value": "ada@home.test", "type": "home"}],
               "meta": {"lastModified": "2026-01-02T03:04:05.000Z"}})
    }

    fn check(filter: &str) -> bool {
        matches(&USER, &user(), &parse(filter).unwrap()).unwrap()
    }

    #[test]
    fn the_filters_identity_providers_send_match_as_the_rfc_says() {
        assert!(check(r#"userName eq "ada.lovelace@example.com""#), "userName is not caseExact");
        assert!(check(r#"externalId eq "Ext-1""#));
        assert!(!check(r#"externalId eq "ext-1""#), "externalId is caseExact");
        assert!(check(r#"emails[type eq "work" and value co "@EXAMPLE.com"]"#));
        assert!(!check(r#"emails[type eq "other"]"#));
        assert!(check(r#"emails co "home.test""#), "a complex attribute compares its value");
        assert!(check(r#"emails.type eq "home""#));
        assert!(check(r#"name.givenName sw "ad" and not (title pr)"#));
        assert!(check(r#"active eq true or userName eq "x""#));
        assert!(check(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(check(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName ew "example.com""#));
        assert!(!check(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "R&D""#));
        assert!(check(r#"title ne "Countess""#), "ne matches an absent attribute");
        assert!(check("title eq null"));
    }

    #[test]
    fn bad_filters_are_invalid_filter_errors() {
        for bad in [r#"userName eq"#, r#"userName xx "a""#, "((("] {
            assert_eq!(parse(bad).unwrap_err().scim_type, Some(ScimType::InvalidFilter), "{bad}");
        }
        let err = matches(&USER, &user(), &parse("active gt true").unwrap()).unwrap_err();
        assert_eq!(err.scim_type, Some(ScimType::InvalidFilter));
        let group = json!({"displayName": "Eng", "members": [{"value": "01ABC"}]});
        assert!(matches(&GROUP, &group, &parse(r#"members[value eq "01ABC"]"#).unwrap()).unwrap());
        assert!(!matches(&GROUP, &group, &parse(r#"members[value eq "01abc"]"#).unwrap()).unwrap());
    }
}
