//! The resource types Groundwork serves (`User` and `Group`, RFC 7643 sections 4.1 and 4.2,
//! the attributes a directory sync uses), one attribute table each, and what is derived from
//! it: the `/Schemas`, `/ResourceTypes` and `/ServiceProviderConfig` documents, the checks an
//! incoming resource passes ([`normalize`]), and the `attributes` / `excludedAttributes`
//! projection ([`project`]).
//!
//! Attribute names are case-insensitive (RFC 7643 section 2.1): what arrives is stored under
//! the canonical spelling. Attributes outside the table (an extension schema's, an
//! attribute an identity provider was mapped to send) are dropped, not refused, so a
//! provider's extra mapping never breaks provisioning; what is advertised is what is kept.

use serde_json::{Map, Value, json};

use super::{MAX_RESULTS, ScimError, ScimType};

/// The longest string value, in characters.
pub const MAX_STRING_CHARS: usize = 1024;
/// The longest `userName`, in characters (Entra ID's user principal names reach 113, Okta's
/// logins 100).
pub const MAX_USER_NAME_CHARS: usize = 256;

/// The core User schema (RFC 7643 section 4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema (RFC 7643 section 4.2).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// An attribute's type (RFC 7643 section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// `true` or `false`.
    Boolean,
    /// An object of sub-attributes.
    Complex,
    /// A URI.
    Reference,
}

/// When an attribute may be written (RFC 7643 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// By the client, any time.
    ReadWrite,
    /// Once, at creation.
    Immutable,
    /// Never by the client.
    ReadOnly,
}

/// One attribute of a resource type.
#[derive(Debug)]
pub struct Attribute {
    /// Its canonical name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether it holds a list.
    pub multi_valued: bool,
    /// Whether a resource must have it.
    pub required: bool,
    /// Whether string comparisons respect case.
    pub case_exact: bool,
    /// Who may write it.
    pub mutability: Mutability,
    /// Whether no two resources of the type share a value (`server` uniqueness).
    pub unique: bool,
    /// A complex attribute's sub-attributes.
    pub sub_attributes: &'static [Attribute],
    /// Suggested values (`canonicalValues`).
    pub canonical_values: &'static [&'static str],
    /// What a reference may point at (`referenceTypes`).
    pub reference_types: &'static [&'static str],
    /// What it is.
    pub description: &'static str,
}

const fn string(name: &'static str, description: &'static str) -> Attribute {
    Attribute {
        name,
        kind: Kind::String,
        multi_valued: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        unique: false,
        sub_attributes: &[],
        canonical_values: &[],
        reference_types: &[],
        description,
    }
}

const fn boolean(name: &'static str, description: &'static str) -> Attribute {
    Attribute { kind: Kind::Boolean, ..string(name, description) }
}

const NAME_PARTS: &[Attribute] = &[
    string("formatted", "The full name, as it is displayed."),
    string("familyName", "The family name."),
    string("givenName", "The given name."),
    string("middleName", "The middle name."),
    string("honorificPrefix", "A title before the name."),
    string("honorificSuffix", "A suffix after the name."),
];

const EMAIL_PARTS: &[Attribute] = &[
    string("value", "The address (RFC 5321)."),
    string("display", "A label for the address."),
    Attribute { canonical_values: &["work", "home", "other"], ..string("type", "Which address this is.") },
    boolean("primary", "Whether this is the preferred address; true at most once."),
];

const USER_ATTRIBUTES: &[Attribute] = &[
    Attribute {
        required: true,
        unique: true,
        ..string("userName", "The identifier the user signs in with, unique in the directory.")
    },
    Attribute { kind: Kind::Complex, sub_attributes: NAME_PARTS, ..string("name", "The user's name.") },
    string("displayName", "The name shown for the user."),
    string("nickName", "A casual name."),
    string("title", "The job title."),
    string("userType", "The relationship to the organization (Employee, Contractor...)."),
    string("preferredLanguage", "The preferred language (RFC 7231 Accept-Language)."),
    string("locale", "The locale (language and region)."),
    string("timezone", "The time zone (IANA name)."),
    boolean("active", "Whether the user may sign in; false deprovisions."),
    Attribute {
        kind: Kind::Complex,
        multi_valued: true,
        sub_attributes: EMAIL_PARTS,
        ..string("emails", "Email addresses.")
    },
];

const MEMBER_PARTS: &[Attribute] = &[
    Attribute { mutability: Mutability::Immutable, case_exact: true, ..string("value", "The member's id.") },
    Attribute {
        name: "$ref",
        kind: Kind::Reference,
        mutability: Mutability::Immutable,
        reference_types: &["User"],
        ..string("$ref", "The member's URI.")
    },
    Attribute { mutability: Mutability::Immutable, ..string("display", "The member's name.") },
    Attribute {
        mutability: Mutability::Immutable,
        canonical_values: &["User"],
        ..string("type", "The member's resource type; only users are members here.")
    },
];

const GROUP_ATTRIBUTES: &[Attribute] = &[
    Attribute { required: true, ..string("displayName", "The group's name, which role mappings refer to.") },
    Attribute {
        kind: Kind::Complex,
        multi_valued: true,
        sub_attributes: MEMBER_PARTS,
        ..string("members", "The users in the group.")
    },
];

/// `externalId`, common to every resource (RFC 7643 section 3.1): the provider's own id.
pub static EXTERNAL_ID: Attribute = Attribute { case_exact: true, ..string("externalId", "The provider's id.") };

/// A resource type Groundwork serves.
#[derive(Debug)]
pub struct ResourceType {
    /// `User` or `Group`.
    pub name: &'static str,
    /// Its endpoint, relative to the base URL (`/Users`).
    pub endpoint: &'static str,
    /// Its schema URN.
    pub schema: &'static str,
    /// Its attributes (without the common ones).
    pub attributes: &'static [Attribute],
    /// What it is.
    pub description: &'static str,
}

/// Users.
pub const USER: ResourceType = ResourceType {
    name: "User",
    endpoint: "/Users",
    schema: USER_SCHEMA,
    attributes: USER_ATTRIBUTES,
    description: "A person in the organization's directory.",
};

/// Groups.
pub const GROUP: ResourceType = ResourceType {
    name: "Group",
    endpoint: "/Groups",
    schema: GROUP_SCHEMA,
    attributes: GROUP_ATTRIBUTES,
    description: "A group of users; a group's name can map to a role in an account.",
};

/// Both resource types.
pub const RESOURCE_TYPES: [&ResourceType; 2] = [&USER, &GROUP];

impl ResourceType {
    /// The attribute called `name` (any case), `externalId` included.
    pub fn attribute(&self, name: &str) -> Option<&'static Attribute> {
        if name.eq_ignore_ascii_case(EXTERNAL_ID.name) {
            return Some(&EXTERNAL_ID);
        }
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The resource type's `/ResourceTypes` entry (RFC 7643 section 6).
    pub fn resource_type_document(&self, base_url: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/{}", self.name)},
        })
    }

    /// The schema's `/Schemas` entry (RFC 7643 section 7).
    pub fn schema_document(&self, base_url: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.schema,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(attribute_document).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{}", self.schema)},
        })
    }
}

fn attribute_document(a: &Attribute) -> Value {
    let mut doc = json!({
        "name": a.name,
        "type": match a.kind {
            Kind::String => "string",
            Kind::Boolean => "boolean",
            Kind::Complex => "complex",
            Kind::Reference => "reference",
        },
        "multiValued": a.multi_valued,
        "description": a.description,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": match a.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::ReadOnly => "readOnly",
        },
        "returned": "default",
        "uniqueness": if a.unique { "server" } else { "none" },
    });
    if !a.sub_attributes.is_empty() {
        doc["subAttributes"] = a.sub_attributes.iter().map(attribute_document).collect();
    }
    if !a.canonical_values.is_empty() {
        doc["canonicalValues"] = json!(a.canonical_values);
    }
    if !a.reference_types.is_empty() {
        doc["referenceTypes"] = json!(a.reference_types);
    }
    doc
}

/// The `/ServiceProviderConfig` document (RFC 7643 section 5): `PATCH`, filters (at most
/// [`MAX_RESULTS`] results) and ETags; no bulk, sorting or password changes.
pub fn service_provider_config(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The directory's token, from POST /organizations/{org_id}/scim/token (RFC 6750).",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base_url}/ServiceProviderConfig")},
    })
}

fn invalid(detail: String) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, detail)
}

/// One value of `attribute`, checked and with canonical sub-attribute names; `None` when it
/// is null or an empty complex value (unassigned, RFC 7644 section 3.5.2). Booleans sent as
/// the strings `"True"` / `"False"` (as Entra ID does) are read as booleans.
fn single(attribute: &Attribute, value: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    match (attribute.kind, value) {
        (_, Value::Null) => Ok(None),
        (Kind::String | Kind::Reference, Value::String(s)) => {
            if s.chars().count() > MAX_STRING_CHARS || s.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "`{path}` is at most {MAX_STRING_CHARS} characters, without control characters"
                )));
            }
            Ok(Some(Value::String(s.clone())))
        }
        (Kind::Boolean, Value::Bool(b)) => Ok(Some(Value::Bool(*b))),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
        (Kind::Complex, Value::Object(fields)) => {
            let mut out = Map::new();
            for (name, v) in fields {
                let Some(sub) = attribute.sub_attributes.iter().find(|s| s.name.eq_ignore_ascii_case(name)) else {
                    continue;
                };
                if let Some(v) = single(sub, v, &format!("{path}.{}", sub.name))? {
                    out.insert(sub.name.to_owned(), v);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        _ => Err(invalid(format!("`{path}` must be a {}", kind_name(attribute.kind)))),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex => "complex value (an object)",
        Kind::Reference => "reference (a string)",
    }
}

/// A value for `attribute`, checked; `None` when it is unassigned. A multi-valued attribute
/// given one value (not a list) holds that value; of several values marked `primary`, the
/// first stays primary (RFC 7643 section 2.4: at most one).
///
/// # Errors
/// 400 `invalidValue` when a value has the wrong type.
pub fn attribute_value(attribute: &Attribute, value: &Value) -> Result<Option<Value>, ScimError> {
    if !attribute.multi_valued {
        return single(attribute, value, attribute.name);
    }
    let values: Vec<&Value> = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        if let Some(v) = single(attribute, v, attribute.name)?
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    let mut seen_primary = false;
    for v in &mut out {
        if let Some(primary) = v.get_mut("primary")
            && *primary == Value::Bool(true)
        {
            if seen_primary {
                *primary = Value::Bool(false);
            }
            seen_primary = true;
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// The stored form of a resource written by a client (`POST` or `PUT`, or the result of a
/// `PATCH`): the attributes of the type under their canonical names, checked; `id`, `meta`,
/// `schemas`, read-only and unknown attributes dropped.
///
/// # Errors
/// 400 `invalidSyntax` when the body is not an object; 400 `invalidValue` when a value has
/// the wrong type or a required attribute is missing.
pub fn normalize(resource_type: &ResourceType, body: &Value) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(fields) = body else {
        return Err(ScimError::bad(ScimType::InvalidSyntax, "the resource must be a JSON object"));
    };
    let mut out = Map::new();
    for (name, value) in fields {
        // `urn:...:User:userName` names a core attribute in full; other URNs are extensions.
        let name = match name.strip_prefix(resource_type.schema) {
            Some(rest) => match rest.strip_prefix(':') {
                Some(attribute) => attribute,
                None => continue,
            },
            None => name.as_str(),
        };
        let Some(attribute) = resource_type.attribute(name) else { continue };
        if attribute.mutability == Mutability::ReadOnly {
            continue;
        }
        if let Some(v) = attribute_value(attribute, value)? {
            out.insert(attribute.name.to_owned(), v);
        }
    }
    // A userName is compared without regard to case or surrounding spaces (uniqueness).
    if let Some(Value::String(user_name)) = out.get_mut("userName") {
        *user_name = user_name.trim().to_owned();
        if user_name.chars().count() > MAX_USER_NAME_CHARS {
            return Err(invalid(format!("`userName` is at most {MAX_USER_NAME_CHARS} characters")));
        }
    }
    for attribute in resource_type.attributes.iter().filter(|a| a.required) {
        let present = out.get(attribute.name).is_some_and(|v| v.as_str().is_none_or(|s| !s.trim().is_empty()));
        if !present {
            return Err(invalid(format!("`{}` is required", attribute.name)));
        }
    }
    Ok(out)
}

/// One entry of `attributes` or `excludedAttributes`: an attribute and maybe a
/// sub-attribute, with the schema URN prefix removed.
fn parse_projection_path<'a>(resource_type: &ResourceType, path: &'a str) -> (&'a str, Option<&'a str>) {
    let path = path.trim();
    let path = path.strip_prefix(resource_type.schema).and_then(|p| p.strip_prefix(':')).unwrap_or(path);
    match path.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (path, None),
    }
}

/// Applies `attributes` (only these, besides `id` and `schemas`, which are always returned)
/// or `excludedAttributes` (all but these) to a rendered resource (RFC 7644 section 3.4.2.5).
/// Names are case-insensitive; a name outside the schema selects nothing.
pub fn project(resource_type: &ResourceType, resource: Value, attributes: &[String], excluded: &[String]) -> Value {
    let Value::Object(mut fields) = resource else { return resource };
    const ALWAYS: [&str; 2] = ["id", "schemas"];
    if !attributes.is_empty() {
        let wanted: Vec<(&str, Option<&str>)> =
            attributes.iter().map(|p| parse_projection_path(resource_type, p)).collect();
        let mut kept = Map::new();
        for (name, value) in fields {
            if ALWAYS.contains(&name.as_str()) {
                kept.insert(name, value);
                continue;
            }
            let subs: Vec<Option<&str>> =
                wanted.iter().filter(|(n, _)| n.eq_ignore_ascii_case(&name)).map(|(_, s)| *s).collect();
            if subs.is_empty() {
                continue;
            }
            if subs.contains(&None) {
                kept.insert(name, value);
            } else if let Some(v) = keep_sub_attributes(value, &subs) {
                kept.insert(name, v);
            }
        }
        return Value::Object(kept);
    }
    for path in excluded {
        let (name, sub) = parse_projection_path(resource_type, path);
        let Some(key) = fields.keys().find(|k| k.eq_ignore_ascii_case(name) && !ALWAYS.contains(&k.as_str())).cloned()
        else {
            continue;
        };
        match sub {
            None => {
                fields.remove(&key);
            }
            Some(sub) => {
                if let Some(v) = fields.get_mut(&key) {
                    drop_sub_attribute(v, sub);
                }
            }
        }
    }
    Value::Object(fields)
}

fn keep_sub_attributes(value: Value, subs: &[Option<&str>]) -> Option<Value> {
    let keep = |obj: Map<String, Value>| -> Option<Value> {
        let kept: Map<String, Value> =
            obj.into_iter().filter(|(k, _)| subs.iter().flatten().any(|s| s.eq_ignore_ascii_case(k))).collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match value {
        Value::Object(obj) => keep(obj),
        Value::Array(items) => {
            let kept: Vec<Value> =
                items.into_iter().filter_map(|i| if let Value::Object(o) = i { keep(o) } else { None }).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

fn drop_sub_attribute(value: &mut Value, sub: &str) {
    let strip = |obj: &mut Map<String, Value>| {
        if let Some(k) = obj.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned() {
            obj.remove(&k);
        }
    };
    match value {
        Value::Object(obj) => strip(obj),
        Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(strip),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_canonically_and_unknown_or_read_only_attributes_dropped() {
        let body = json!({
            "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "chosen-by-client", "USERNAME": "ada@example.com", "Active": "False",
            "name": {"GivenName": "Ada", "unknown": 1},
            "emails": {"value": "ada@example.com", "primary": true},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            "urn:ietf:params:scim:schemas:core:2.0:User:title": "Countess",
            "meta": {"created": "x"}, "password": "never kept",
        });
        let stored = normalize(&USER, &body).unwrap();
        assert_eq!(
            Value::Object(stored),
            json!({"userName": "ada@example.com", "active": false, "name": {"givenName": "Ada"},
                   "emails": [{"value": "ada@example.com", "primary": true}], "title": "Countess"})
        );
    }

    #[test]
    fn required_and_typed_values_are_enforced() {
        let missing = normalize(&USER, &json!({"name": {"givenName": "x"}})).unwrap_err();
        assert_eq!(missing.scim_type, Some(ScimType::InvalidValue));
        assert!(normalize(&USER, &json!({"userName": "  "})).is_err());
        assert!(normalize(&USER, &json!({"userName": "x".repeat(257)})).is_err());
        assert!(normalize(&USER, &json!({"userName": "a\u{0}b"})).is_err());
        assert!(normalize(&USER, &json!({"userName": "a", "title": "t".repeat(1025)})).is_err());
        let trimmed = normalize(&USER, &json!({"userName": " bob@acme.test "})).unwrap();
        assert_eq!(trimmed["userName"], "bob@acme.test");
        assert!(normalize(&USER, &json!({"userName": 5})).is_err());
        assert!(normalize(&USER, &json!({"userName": "a", "active": "maybe"})).is_err());
        assert!(normalize(&USER, &json!([])).is_err());
        assert!(normalize(&GROUP, &json!({"displayName": "Engineering", "members": [{"value": 1}]})).is_err());
    }

    #[test]
    fn only_one_value_stays_primary() {
        let emails = attribute_value(
            USER.attribute("emails").unwrap(),
            &json!([{"value": "a@x.test", "primary": true}, {"value": "b@x.test", "primary": true}]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(emails[0]["primary"], true);
        assert_eq!(emails[1]["primary"], false);
    }

    #[test]
    fn projection_keeps_id_and_schemas_and_selects_sub_attributes() {
        let user = json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "u", "name": {"givenName": "G", "familyName": "F"},
                          "meta": {"version": "W/\"1\""}});
        let only = project(&USER, user.clone(), &["name.givenName".to_owned()], &[]);
        assert_eq!(only, json!({"schemas": [USER_SCHEMA], "id": "1", "name": {"givenName": "G"}}));
        let without = project(&USER, user, &[], &["NAME".to_owned(), "id".to_owned(), "meta".to_owned()]);
        assert_eq!(without, json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "u"}));
    }

    #[test]
    fn documents_describe_every_attribute() {
        let doc = USER.schema_document("https://x.test/scim/v2");
        let names: Vec<&str> =
            doc["attributes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"userName") && names.contains(&"emails"));
        assert_eq!(doc["attributes"][0]["uniqueness"], "server");
        let spc = service_provider_config("https://x.test/scim/v2");
        assert_eq!(spc["filter"]["maxResults"], MAX_RESULTS);
    }
}
