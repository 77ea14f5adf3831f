//! API-key scopes (docs/api.md#authentication-and-scopes).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// List and get endpoints and deliveries.
    WebhooksRead,
    /// Create, update, delete, rotate, test and replay.
    WebhooksWrite,
    /// Rotate the per-organization webhook secret.
    OrgAdminWrite,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 3] = [
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::OrgAdminWrite,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::OrgAdminWrite => "org:admin:write",
        }
    }
}

/// The error of parsing an unknown scope name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope: {0}")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| UnknownScope(text.to_owned()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a list of scope names, rejecting unknown names, duplicates and an empty list.
pub fn parse_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in names {
        let scope: Scope = name
            .trim()
            .parse()
            .map_err(|error: UnknownScope| error.to_string())?;
        if scopes.contains(&scope) {
            return Err(format!("duplicate scope: {scope}"));
        }
        scopes.push(scope);
    }
    if scopes.is_empty() {
        return Err("at least one scope is required".to_owned());
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
    }

    #[test]
    fn parse_scopes_rejects_unknown_duplicate_and_empty() {
        assert_eq!(
            parse_scopes(["webhooks:read", "webhooks:write"]),
            Ok(vec![Scope::WebhooksRead, Scope::WebhooksWrite])
        );
        assert_eq!(
            parse_scopes(["webhooks:admin"]),
            Err("unknown scope: webhooks:admin".to_owned())
        );
        assert_eq!(
            parse_scopes(["webhooks:read", "webhooks:read"]),
            Err("duplicate scope: webhooks:read".to_owned())
        );
        assert!(parse_scopes([]).is_err());
    }
}
