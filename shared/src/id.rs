//! ULID-based ids. Each id kind is its own type, built only by [`new`](RequestId::new) or by
//! parsing, so a value that exists is a well-formed ULID.

use std::fmt;
use std::str::FromStr;

/// The error for a string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}")]
pub struct InvalidId {
    /// Which id kind was being parsed.
    pub kind: &'static str,
    /// The rejected input (ids are not secret).
    pub value: String,
}

/// Declares a ULID newtype with parsing, display and serde as a string.
#[macro_export]
macro_rules! ulid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(::ulid::Ulid);

        impl $name {
            /// A fresh id; ids made later sort after ids made earlier.
            pub fn new() -> Self {
                Self(::ulid::Ulid::new())
            }

            /// The underlying ULID.
            pub fn ulid(&self) -> ::ulid::Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::id::InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let invalid = || $crate::id::InvalidId { kind: stringify!($name), value: s.chars().take(64).collect() };
                // A ULID is 128 bits: 26 base32 characters hold 130, so the first is 0 to 7.
                // The parser would wrap a larger one onto another id.
                if s.as_bytes().first().is_none_or(|c| *c > b'7') {
                    return Err(invalid());
                }
                ::ulid::Ulid::from_string(s).map(Self).map_err(|_| invalid())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

ulid_id!(
    /// Identifies one HTTP request or job run in logs and problem bodies.
    RequestId
);
ulid_id!(
    /// Identifies one queue message sent through the queue port.
    MessageId
);
ulid_id!(
    /// Identifies a user.
    UserId
);
ulid_id!(
    /// Identifies a session (one login, its refresh tokens, its access tokens).
    SessionId
);
ulid_id!(
    /// Identifies an account: the tenant, the workspace that is billed.
    AccountId
);
ulid_id!(
    /// Identifies an organization: an optional umbrella over accounts holding SSO and policy.
    OrgId
);
ulid_id!(
    /// Identifies an invitation to an account.
    InvitationId
);
ulid_id!(
    /// Identifies an API key (its visible part).
    ApiKeyId
);
ulid_id!(
    /// Identifies a data export.
    ExportId
);
ulid_id!(
    /// Identifies an account's webhook endpoint.
    WebhookEndpointId
);
ulid_id!(
    /// Identifies one attempt to deliver a webhook message.
    WebhookAttemptId
);
ulid_id!(
    /// Identifies a user or group of an organization's SCIM directory (its SCIM `id`).
    ScimId
);

/// A request id as received from outside (API Gateway, a client header): not necessarily a
/// ULID, but bounded and printable, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// Accepts 1 to 128 visible ASCII characters.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(s.to_owned()))
    }

    /// A fresh id.
    pub fn generate() -> Self {
        Self(RequestId::new().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CorrelationId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| InvalidId {
            kind: "CorrelationId",
            value: s.chars().take(64).filter(char::is_ascii_graphic).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = RequestId::new();
        let parsed: RequestId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert!("not-a-ulid".parse::<RequestId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<RequestId>("\"nope\"").is_err());
    }

    #[test]
    fn later_ids_sort_after() {
        let a = MessageId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MessageId::new();
        assert!(a < b);
    }

    #[test]
    fn correlation_ids_are_bounded_and_printable() {
        assert!(CorrelationId::parse("abc-123").is_some());
        assert!(CorrelationId::parse("").is_none());
        assert!(CorrelationId::parse("has space").is_none());
        assert!(CorrelationId::parse(&"x".repeat(129)).is_none());
        assert!(CorrelationId::parse("line\nbreak").is_none());
    }
}
