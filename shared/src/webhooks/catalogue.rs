//! The event types published, with the JSON Schema of each one's `data`: the catalogue
//! served in `/openapi.json` (OpenAPI 3.1 `webhooks`) and in the README. A product function
//! publishes its own types under the same naming rule ([`valid_type`]) and adds them here to
//! have them documented, as the example product function's `project.*` are.

use serde_json::{Value, json};

/// One documented event type.
#[derive(Debug, Clone, Copy)]
pub struct EventType {
    /// Its name: `<resource>.<what happened>`.
    pub name: &'static str,
    /// When it is published.
    pub description: &'static str,
    /// The JSON Schema of its `data`.
    pub data_schema: fn() -> Value,
}

/// The longest event type name.
pub const MAX_TYPE_CHARS: usize = 64;

/// Whether `name` is a well-formed event type: 1 to 64 characters, two or more dot-separated
/// parts of lowercase letters, digits and underscores (`member.joined`).
pub fn valid_type(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    name.len() <= MAX_TYPE_CHARS
        && parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
}

fn member_schema() -> Value {
    json!({
        "type": "object",
        "required": ["account_id", "user_id", "role"],
        "properties": {
            "account_id": {"type": "string", "description": "The account."},
            "user_id": {"type": "string", "description": "The member."},
            "role": {"type": "string", "enum": ["owner", "admin", "member", "billing", "read_only"]}
        }
    })
}

fn removed_schema() -> Value {
    json!({
        "type": "object",
        "required": ["account_id", "user_id"],
        "properties": {
            "account_id": {"type": "string", "description": "The account."},
            "user_id": {"type": "string", "description": "The former member."}
        }
    })
}

fn subscription_schema() -> Value {
    json!({
        "type": "object",
        "required": ["account_id", "subscription_id", "plan", "status"],
        "properties": {
            "account_id": {"type": "string", "description": "The account."},
            "subscription_id": {"type": "string", "description": "Stripe's subscription id."},
            "plan": {"type": "string", "description": "The plan the account is entitled to now (`free` when the subscription grants none)."},
            "status": {"type": "string", "description": "Stripe's subscription status (`trialing`, `active`, `past_due`, `canceled`...)."},
            "seats": {"type": ["integer", "null"], "description": "The quantity billed, for per-seat plans."}
        }
    })
}

fn project_schema() -> Value {
    json!({
        "type": "object",
        "required": ["project_id"],
        "properties": {
            "project_id": {"type": "string", "description": "The project."},
            "name": {"type": "string", "description": "Its name (on creation)."}
        }
    })
}

fn test_schema() -> Value {
    json!({
        "type": "object",
        "required": ["endpoint_id"],
        "properties": {"endpoint_id": {"type": "string", "description": "The endpoint the test was sent to."}}
    })
}

/// Every event type Groundwork publishes.
pub const CATALOGUE: &[EventType] = &[
    EventType {
        name: "member.joined",
        description: "Someone joined the account (an invitation accepted, or single sign-on).",
        data_schema: member_schema,
    },
    EventType { name: "member.removed", description: "A member left or was removed.", data_schema: removed_schema },
    EventType {
        name: "subscription.updated",
        description: "The account's subscription changed: plan, status or seats.",
        data_schema: subscription_schema,
    },
    EventType {
        name: "project.created",
        description: "A project was created (the example product function).",
        data_schema: project_schema,
    },
    EventType {
        name: "project.deleted",
        description: "A project was moved to the bin (the example product function).",
        data_schema: project_schema,
    },
    EventType {
        name: "webhook.test",
        description: "Sent on request to one endpoint, to check it receives and verifies messages.",
        data_schema: test_schema,
    },
];

/// The `webhooks` object of the API description (OpenAPI 3.1, "Webhooks"): one POST per
/// event type, whose body is the message as delivered.
pub fn openapi_webhooks() -> Value {
    let mut out = serde_json::Map::new();
    for t in CATALOGUE {
        let body = json!({
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"type": "string", "const": t.name},
                "timestamp": {"type": "string", "format": "date-time", "description": "When the event happened (RFC 3339)."},
                "data": (t.data_schema)()
            }
        });
        let headers = json!({
            "webhook-id": {"required": true, "schema": {"type": "string"}, "description": "The message id: the same on every retry (deduplicate on it)."},
            "webhook-timestamp": {"required": true, "schema": {"type": "string"}, "description": "When this attempt was signed (Unix seconds)."},
            "webhook-signature": {"required": true, "schema": {"type": "string"}, "description": "Space-separated `v1,<base64 HMAC-SHA256>` signatures (Standard Webhooks)."}
        });
        out.insert(
            t.name.to_owned(),
            json!({"post": {
                "summary": t.description,
                "parameters": headers.as_object().into_iter().flatten().map(|(name, h)| {
                    let mut p = h.clone();
                    p["name"] = json!(name);
                    p["in"] = json!("header");
                    p
                }).collect::<Vec<_>>(),
                "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                "responses": {"2XX": {"description": "Received. Anything else, or no answer within 15 seconds, is retried."}}
            }}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_follow_the_rule() {
        for ok in ["member.joined", "project.created", "a.b.c", "invoice_item.paid2"] {
            assert!(valid_type(ok), "{ok}");
        }
        for bad in ["member", ".joined", "member.", "Member.joined", "member..joined", "member joined", "a.-", ""] {
            assert!(!valid_type(bad), "{bad}");
        }
        assert!(!valid_type(&format!("a.{}", "b".repeat(63))));
        assert!(CATALOGUE.iter().all(|t| valid_type(t.name)));
    }

    #[test]
    fn the_catalogue_is_described_as_openapi_webhooks() {
        let w = openapi_webhooks();
        assert_eq!(w.as_object().unwrap().len(), CATALOGUE.len());
        let body = &w["member.joined"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["properties"]["type"]["const"], "member.joined");
        assert_eq!(body["properties"]["data"]["required"][1], "user_id");
    }
}
