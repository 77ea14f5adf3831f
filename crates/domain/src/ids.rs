//! Typed identifiers. Every id is a UUIDv7, so ids sort by creation time; raw `Uuid`s never cross a
//! crate boundary. `EventId` alone has a wire prefix (`evt_`), as docs/api.md#conventions says.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The error of parsing an id from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed id")]
pub struct MalformedId;

/// Declares a UUID-backed id type whose wire form is the bare hyphenated UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps a UUID read back from storage.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID, for storage.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = MalformedId;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                // Only the canonical hyphenated form: `Uuid::parse_str` also takes braces and
                // URNs, which would give one object several spellings.
                if text.len() != 36 || text.bytes().any(|byte| byte.is_ascii_uppercase()) {
                    return Err(MalformedId);
                }
                Uuid::parse_str(text).map(Self).map_err(|_| MalformedId)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// An organization: the tenant every other object belongs to.
    OrgId
);
uuid_id!(
    /// An API key (the key's id, never the key itself).
    ApiKeyId
);
uuid_id!(
    /// A webhook endpoint.
    EndpointId
);
uuid_id!(
    /// A delivery: one event bound for one endpoint, the unit the worker schedules.
    DeliveryId
);
uuid_id!(
    /// One attempt of a delivery: the "delivery record" of the public API.
    AttemptId
);
uuid_id!(
    /// One audit record.
    AuditId
);
uuid_id!(
    /// An organization's Ed25519 signing key: the `kid` of `GET /v1/webhook-keys`.
    SigningKeyId
);
uuid_id!(
    /// One recovery: a request to deliver an endpoint's failed or missed events again.
    RecoveryId
);

/// An event. Written `evt_<uuid>` on the wire, everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(Uuid);

impl EventId {
    /// The wire prefix of every event id.
    pub const PREFIX: &'static str = "evt_";

    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID read back from storage.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID, for storage.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0.hyphenated())
    }
}

impl FromStr for EventId {
    type Err = MalformedId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bare = text.strip_prefix(Self::PREFIX).ok_or(MalformedId)?;
        if bare.len() != 36 || bare.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return Err(MalformedId);
        }
        Uuid::parse_str(bare).map(Self).map_err(|_| MalformedId)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn event_id_requires_prefix() {
        let id = EventId::new();
        let bare = id.as_uuid().to_string();
        assert_eq!(bare.parse::<EventId>(), Err(MalformedId));
        assert_eq!(format!("evt_{bare}").parse::<EventId>(), Ok(id));
    }

    #[test]
    fn non_canonical_uuid_spellings_are_rejected() {
        let id = EndpointId::new();
        let braced = format!("{{{id}}}");
        assert!(braced.parse::<EndpointId>().is_err());
        assert!(id.to_string().to_uppercase().parse::<EndpointId>().is_err());
        assert!(
            id.as_uuid()
                .simple()
                .to_string()
                .parse::<EndpointId>()
                .is_err()
        );
    }

    #[test]
    fn ids_sort_by_creation() {
        let first = EndpointId::new();
        let second = EndpointId::new();
        assert!(first < second);
        assert!(first.to_string() < second.to_string());
    }

    proptest! {
        #[test]
        fn ids_round_trip_through_display(bytes in any::<[u8; 16]>()) {
            let uuid = Uuid::from_bytes(bytes);
            let endpoint = EndpointId::from_uuid(uuid);
            prop_assert_eq!(endpoint.to_string().parse::<EndpointId>(), Ok(endpoint));
            let event = EventId::from_uuid(uuid);
            prop_assert_eq!(event.to_string().parse::<EventId>(), Ok(event));
        }
    }
}
