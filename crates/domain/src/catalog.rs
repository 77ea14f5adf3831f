//! The event-type catalog and the supported API versions. Both come from configuration; the
//! defaults are the 17 types and version `2026-04-01` of docs/api.md#event-types-and-api-versions.
//! A catalog file (docs/api.md#the-catalog-file) adds descriptions, JSON Schemas of `data`
//! and examples: it is read here from its text (the server reads the file), and its schemas
//! are compiled once, here, so that publishing only runs them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonschema::Validator;
use serde::Deserialize;
use serde_json::Value;

use crate::operational::OPERATIONAL_EVENT_TYPES;

/// The synthetic type that only the test operation sends; never subscribable.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// The default catalog.
pub const DEFAULT_EVENT_TYPES: [&str; 17] = [
    "brand.vetted",
    "brand.vetting_failed",
    "campaign.approved",
    "campaign.rejected",
    "campaign.shared",
    "wallet.balance_low",
    "wallet.balance_zero",
    "subscription.past_due",
    "subscription.canceled",
    "api_key.created",
    "api_key.rotated",
    "api_key.revoked",
    "phone_number.bulk_order.completed",
    "phone_number.campaign.assigned",
    "consent_pending.confirmed",
    "consent_pending.expired",
    "lookup.completed",
];

/// What each type of the default catalog and each operational type means, for
/// `GET /v1/event-types` and the portal's catalog. A type configured by name only
/// (`HERALD_EVENT_TYPES`) that is not here has no description.
pub fn describe(event_type: &str) -> Option<&'static str> {
    let description = match event_type {
        "brand.vetted" => "A brand passed vetting and may run campaigns.",
        "brand.vetting_failed" => "A brand failed vetting; the data says why.",
        "campaign.approved" => "A campaign was approved and may send.",
        "campaign.rejected" => "A campaign was rejected; the data says why.",
        "campaign.shared" => "A campaign was shared with a partner.",
        "wallet.balance_low" => "The wallet balance fell below its low-balance threshold.",
        "wallet.balance_zero" => "The wallet balance reached zero; sending stops until a top-up.",
        "subscription.past_due" => "A subscription payment failed and is past due.",
        "subscription.canceled" => "A subscription was canceled.",
        "api_key.created" => "An API key of the organization was created.",
        "api_key.rotated" => "An API key of the organization was rotated.",
        "api_key.revoked" => "An API key of the organization was revoked.",
        "phone_number.bulk_order.completed" => "A bulk phone-number order completed.",
        "phone_number.campaign.assigned" => "A phone number was assigned to a campaign.",
        "consent_pending.confirmed" => "A pending consent was confirmed by its subject.",
        "consent_pending.expired" => "A pending consent expired unconfirmed.",
        "lookup.completed" => "A number lookup completed; the data holds its result.",
        "endpoint.disabled" => {
            "Herald disabled one of your endpoints (repeated failures or 410 Gone), or it was disabled by hand."
        }
        "endpoint.enabled" => {
            "One of your endpoints was enabled again, by hand or after a successful probe."
        }
        "delivery.exhausted" => {
            "A delivery failed its last attempt (or its receiver answered 410) and will not be retried."
        }
        _ => return None,
    };
    Some(description)
}

/// The default (and newest) API version.
pub const DEFAULT_API_VERSION: &str = "2026-04-01";

/// One type of the catalog: its name and what the catalog says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeDefinition {
    /// The type's name, as subscribed to and published.
    pub name: String,
    /// What it means; `None` for a type configured by name only.
    pub description: Option<String>,
    /// JSON Schema (2020-12) of the event's `data`, when the catalog gives one.
    pub schema: Option<Value>,
    /// An example `data`, valid under `schema`.
    pub example: Option<Value>,
    /// Whether new integrations should avoid it (it is still published and subscribable).
    pub deprecated: bool,
}

impl EventTypeDefinition {
    /// A type known by name only, described when it is a default or operational type.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: describe(name).map(str::to_owned),
            schema: None,
            example: None,
            deprecated: false,
        }
    }
}

/// The event types organizations may subscribe to and the platform may publish, with the
/// compiled schemas of those that have one (compiled once, when the catalog is built).
#[derive(Clone)]
pub struct EventCatalog {
    types: Vec<EventTypeDefinition>,
    /// Type name → its compiled schema; empty when no type has a schema, so a publish
    /// without schemas costs one emptiness check.
    schemas: Arc<HashMap<String, Validator>>,
}

impl fmt::Debug for EventCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventCatalog")
            .field("types", &self.names())
            .field("schemas", &self.schemas.len())
            .finish()
    }
}

impl PartialEq for EventCatalog {
    fn eq(&self, other: &Self) -> bool {
        self.types == other.types
    }
}

impl Eq for EventCatalog {}

/// Why a catalog (file) is refused: the message names the type at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CatalogError(pub String);

/// `data` breaks its type's schema: where (a JSON pointer into `data`) and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", if pointer.is_empty() { "(root)" } else { pointer.as_str() })]
pub struct SchemaViolation {
    /// RFC 6901 pointer into `data`; empty for `data` itself.
    pub pointer: String,
    /// The rule broken, without the offending value (which may be personal data).
    pub message: String,
}

/// How the publish API treats `data` that breaks its type's schema
/// (`HERALD_SCHEMA_ENFORCEMENT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SchemaEnforcement {
    /// Schemas are not checked at publish.
    Off,
    /// Accepted, logged and counted (the default).
    #[default]
    Warn,
    /// Refused with a 422 naming the pointer and the rule.
    Reject,
}

impl SchemaEnforcement {
    /// Reads the setting's spelling: `off`, `warn` or `reject`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(Self::Off),
            "warn" => Some(Self::Warn),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// The syntax of a catalog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogFormat {
    /// JSON.
    Json,
    /// YAML (which also reads JSON).
    Yaml,
}

/// One entry of a catalog file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFileEntry {
    name: String,
    description: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    example: Option<Value>,
    #[serde(default)]
    deprecated: bool,
}

/// Longest event-type name, in bytes.
pub const MAX_EVENT_TYPE_CHARS: usize = 100;

impl EventCatalog {
    /// A catalog of these types and the operational ones, which are always there
    /// ([`crate::operational`]).
    pub fn new(types: Vec<String>) -> Self {
        let definitions = types
            .into_iter()
            .map(|name| EventTypeDefinition::named(&name))
            .collect();
        Self::with_operational(definitions, HashMap::new())
    }

    fn with_operational(
        mut types: Vec<EventTypeDefinition>,
        schemas: HashMap<String, Validator>,
    ) -> Self {
        for operational in OPERATIONAL_EVENT_TYPES {
            if !types.iter().any(|known| known.name == operational) {
                types.push(EventTypeDefinition::named(operational));
            }
        }
        Self {
            types,
            schemas: Arc::new(schemas),
        }
    }

    /// The catalog `HERALD_EVENT_TYPES` names (comma-separated, blanks ignored), or the default
    /// one when it is unset. `herald serve` and the admin commands read it here alike. The names
    /// follow the catalog file's rules, so a `*`, a space or a name listed twice never reaches
    /// the subscription rules or /openapi.json; the error names the type at fault.
    pub fn from_setting(setting: Option<&str>) -> Result<Self, CatalogError> {
        let Some(list) = setting else {
            return Ok(Self::default());
        };
        let mut types: Vec<EventTypeDefinition> = Vec::new();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            check_new_name(name, &types)
                .map_err(|message| CatalogError(format!("event type {name}: {message}")))?;
            types.push(EventTypeDefinition::named(name));
        }
        Ok(Self::with_operational(types, HashMap::new()))
    }

    /// Reads a catalog file (`HERALD_EVENT_CATALOG`, docs/api.md#the-catalog-file): a list of
    /// `{name, description, schema?, example?, deprecated?}`. Every name is checked, every
    /// schema compiled (JSON Schema 2020-12; a `$ref` outside the schema is never fetched)
    /// and every example validated against its schema; the error names the type at fault.
    pub fn from_file_text(text: &str, format: CatalogFormat) -> Result<Self, CatalogError> {
        let entries: Vec<CatalogFileEntry> = match format {
            CatalogFormat::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
            CatalogFormat::Yaml => serde_yaml_ng::from_str(text).map_err(|e| e.to_string()),
        }
        .map_err(|error| CatalogError(format!("event catalog does not parse: {error}")))?;
        if entries.is_empty() {
            return Err(CatalogError(
                "event catalog must list at least one event type".to_owned(),
            ));
        }
        let mut types: Vec<EventTypeDefinition> = Vec::with_capacity(entries.len());
        let mut schemas = HashMap::new();
        for entry in entries {
            let name = entry.name;
            let refuse = |message: String| CatalogError(format!("event type {name}: {message}"));
            check_new_name(&name, &types).map_err(refuse)?;
            if let Some(example) = &entry.example
                && !example.is_object()
            {
                return Err(refuse(
                    "example must be a JSON object, as data is".to_owned(),
                ));
            }
            if let Some(schema) = &entry.schema {
                let validator = compile_schema(schema)
                    .map_err(|error| refuse(format!("schema does not compile: {error}")))?;
                if let Some(example) = &entry.example
                    && let Err(violation) = first_violation(&validator, example)
                {
                    return Err(refuse(format!("example breaks its schema: {violation}")));
                }
                schemas.insert(name.clone(), validator);
            }
            types.push(EventTypeDefinition {
                name,
                description: Some(entry.description),
                schema: entry.schema,
                example: entry.example,
                deprecated: entry.deprecated,
            });
        }
        Ok(Self::with_operational(types, schemas))
    }

    /// Whether `event_type` is in the catalog (`webhook.test` never is).
    pub fn contains(&self, event_type: &str) -> bool {
        event_type != TEST_EVENT_TYPE && self.types.iter().any(|known| known.name == event_type)
    }

    /// Every type, in configuration order, the operational ones last.
    pub fn types(&self) -> &[EventTypeDefinition] {
        &self.types
    }

    /// Every type's name, in configuration order, the operational ones last.
    pub fn names(&self) -> Vec<&str> {
        self.types.iter().map(|known| known.name.as_str()).collect()
    }

    /// Every entry an endpoint's `events` may hold today: each type, each `prefix.*` that
    /// covers at least one type (every dot-boundary prefix of every name), and `*`.
    pub fn subscription_entries(&self) -> Vec<String> {
        let mut entries: Vec<String> = self.types.iter().map(|t| t.name.clone()).collect();
        for definition in &self.types {
            let name = definition.name.as_str();
            for (end, _) in name.match_indices('.') {
                let wildcard = format!("{}.*", &name[..end]);
                if !entries.contains(&wildcard) {
                    entries.push(wildcard);
                }
            }
        }
        entries.push("*".to_owned());
        entries
    }

    /// Whether any type has a schema (when none has, publishing checks nothing).
    pub fn has_schemas(&self) -> bool {
        !self.schemas.is_empty()
    }

    /// Checks `data` against the schema of `event_type`; a type without a schema accepts
    /// anything.
    pub fn check_data(&self, event_type: &str, data: &Value) -> Result<(), SchemaViolation> {
        match self.schemas.get(event_type) {
            Some(validator) => first_violation(validator, data),
            None => Ok(()),
        }
    }
}

impl Default for EventCatalog {
    fn default() -> Self {
        Self::new(
            DEFAULT_EVENT_TYPES
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
        )
    }
}

/// The `operationId` of the type's operation in the `webhooks` section of /openapi.json, from
/// which receivers generate type names: an identifier, so `.` and `-` become `_`. Operation ids
/// must be unique, so a catalog file may not hold two names that differ only there.
pub fn webhook_operation_id(event_type: &str) -> String {
    format!("webhook_{}", event_type.replace(['.', '-'], "_"))
}

/// Checks the name of a type joining `types`: well formed, not there yet, and not read as
/// one already there once made an operation id ([`webhook_operation_id`]).
fn check_new_name(name: &str, types: &[EventTypeDefinition]) -> Result<(), String> {
    check_type_name(name).map_err(str::to_owned)?;
    if types.iter().any(|known| known.name == name) {
        return Err("listed twice".to_owned());
    }
    let operation_id = webhook_operation_id(name);
    match types
        .iter()
        .find(|known| webhook_operation_id(&known.name) == operation_id)
    {
        Some(twin) => Err(format!(
            "name reads as {} once '.' and '-' become '_', as in the webhook operation {operation_id} of /openapi.json",
            twin.name
        )),
        None => Ok(()),
    }
}

/// A catalog type's name: 1 to [`MAX_EVENT_TYPE_CHARS`] ASCII letters, digits, `_`, `-` and
/// `.`, with no empty segment between dots. No `*`, so a wildcard is never a name.
fn check_type_name(name: &str) -> Result<(), &'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_EVENT_TYPE_CHARS || !name.chars().all(allowed) {
        return Err("name must be 1 to 100 ASCII letters, digits, '_', '-' and '.'");
    }
    if name.split('.').any(str::is_empty) {
        return Err("name must not have an empty segment between dots");
    }
    if name == TEST_EVENT_TYPE {
        return Err("webhook.test is reserved for the test operation");
    }
    Ok(())
}

fn compile_schema(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|error| error.to_string())
}

fn first_violation(validator: &Validator, data: &Value) -> Result<(), SchemaViolation> {
    validator.validate(data).map_err(|error| SchemaViolation {
        pointer: error.instance_path().as_str().to_owned(),
        message: masked_rule(&error),
    })
}

/// The rule `error` states, without the value that broke it. `masked()` alone is not enough
/// for `propertyNames`: its message is the inner error's, unmasked, which quotes the
/// offending property name, and a name can be personal data (a map keyed by e-mail).
fn masked_rule(error: &jsonschema::ValidationError<'_>) -> String {
    match error.kind() {
        jsonschema::error::ValidationErrorKind::PropertyNames { error: name } => {
            name.masked_with("a property name").to_string()
        }
        _ => error.masked().to_string(),
    }
}

/// The API versions an endpoint may pin, newest last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    supported: Vec<String>,
    deprecated: Vec<String>,
}

/// Why an `api_version` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiVersionError {
    /// Not a version Herald knows.
    #[error("unsupported api version: {0}")]
    Unknown(String),
    /// Known, but no new endpoint may pin it.
    #[error("deprecated api version: {0}")]
    Deprecated(String),
}

impl ApiVersions {
    /// `supported` lists every version Herald renders, oldest first; `deprecated` the subset
    /// that existing endpoints keep but new endpoints may not choose.
    pub fn new(supported: Vec<String>, deprecated: Vec<String>) -> Self {
        Self {
            supported,
            deprecated,
        }
    }

    /// The version a new endpoint gets when it names none: the newest non-deprecated one.
    pub fn default_version(&self) -> &str {
        self.supported
            .iter()
            .rev()
            .find(|version| !self.deprecated.contains(version))
            .map_or(DEFAULT_API_VERSION, String::as_str)
    }

    /// Checks that a new endpoint may pin `version`.
    pub fn check_new(&self, version: &str) -> Result<(), ApiVersionError> {
        if self.deprecated.iter().any(|known| known == version) {
            Err(ApiVersionError::Deprecated(version.to_owned()))
        } else if self.supported.iter().any(|known| known == version) {
            Ok(())
        } else {
            Err(ApiVersionError::Unknown(version.to_owned()))
        }
    }

    /// Every supported version, deprecated ones included.
    pub fn supported(&self) -> &[String] {
        &self.supported
    }
}

impl Default for ApiVersions {
    fn default() -> Self {
        Self::new(vec![DEFAULT_API_VERSION.to_owned()], Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_has_seventeen_types_the_operational_ones_and_no_test_type() {
        let catalog = EventCatalog::default();
        assert_eq!(catalog.names().len(), 17 + OPERATIONAL_EVENT_TYPES.len());
        assert!(catalog.contains("endpoint.disabled"));
        let configured =
            EventCatalog::from_setting(Some("a.b, endpoint.enabled")).expect("valid names");
        assert_eq!(
            configured.names(),
            [
                "a.b",
                "endpoint.enabled",
                "endpoint.disabled",
                "delivery.exhausted"
            ]
        );
        assert!(catalog.contains("wallet.balance_low"));
        assert!(!catalog.contains("wallet.balanse_low"));
        assert!(!catalog.contains(TEST_EVENT_TYPE));
    }

    #[test]
    fn the_event_types_setting_follows_the_catalog_files_name_rules() {
        for (setting, expected) in [
            ("a.b, *", "event type *: name must be 1 to 100"),
            ("a.*", "event type a.*: name must be 1 to 100"),
            ("b c", "event type b c: name must be 1 to 100"),
            (
                "a..b",
                "event type a..b: name must not have an empty segment",
            ),
            (
                "webhook.test",
                "event type webhook.test: webhook.test is reserved",
            ),
            ("a.b,a.b", "event type a.b: listed twice"),
            ("a.b,a_b", "event type a_b: name reads as a.b once"),
        ] {
            let error = EventCatalog::from_setting(Some(setting)).expect_err(setting);
            assert!(error.0.starts_with(expected), "{setting}: {error}");
        }
        assert_eq!(
            EventCatalog::from_setting(None),
            Ok(EventCatalog::default())
        );
        assert_eq!(
            EventCatalog::from_setting(Some(" , a.b ,")).map(|c| c.names().len()),
            Ok(1 + OPERATIONAL_EVENT_TYPES.len())
        );
    }

    #[test]
    fn deprecated_versions_are_refused_for_new_endpoints() {
        let versions = ApiVersions::new(
            vec!["2025-01-01".into(), "2026-04-01".into()],
            vec!["2025-01-01".into()],
        );
        assert_eq!(versions.default_version(), "2026-04-01");
        assert_eq!(versions.check_new("2026-04-01"), Ok(()));
        assert_eq!(
            versions.check_new("2025-01-01"),
            Err(ApiVersionError::Deprecated("2025-01-01".into()))
        );
        assert_eq!(
            versions.check_new("2030-01-01"),
            Err(ApiVersionError::Unknown("2030-01-01".into()))
        );
    }

    const WALLET: &str = r#"
- name: wallet.balance_low
  description: The balance fell low.
  schema:
    type: object
    required: [balance]
    properties:
      balance: {type: string}
  example: {balance: "3.50"}
- name: wallet.topped_up
  description: Money came in.
  deprecated: true
"#;

    fn refused(text: &str, format: CatalogFormat, expected: &str) {
        let error = EventCatalog::from_file_text(text, format).expect_err(text);
        assert!(
            error.0.contains(expected),
            "{text}: {error} should contain {expected}"
        );
    }

    #[test]
    fn a_yaml_catalog_file_gives_types_schemas_examples_and_the_operational_types() {
        let catalog = EventCatalog::from_file_text(WALLET, CatalogFormat::Yaml).expect("valid");
        assert_eq!(
            catalog.names(),
            [
                "wallet.balance_low",
                "wallet.topped_up",
                "endpoint.disabled",
                "endpoint.enabled",
                "delivery.exhausted"
            ]
        );
        let low = &catalog.types()[0];
        assert_eq!(low.description.as_deref(), Some("The balance fell low."));
        assert_eq!(low.example, Some(serde_json::json!({"balance": "3.50"})));
        assert!(catalog.types()[1].deprecated);
        assert!(catalog.has_schemas());
        assert!(
            catalog
                .check_data("wallet.balance_low", &serde_json::json!({"balance": "1"}))
                .is_ok()
        );
        let violation = catalog
            .check_data("wallet.balance_low", &serde_json::json!({"balance": 1}))
            .expect_err("a number is not a string");
        assert_eq!(
            violation.to_string(),
            r#"/balance: value is not of type "string""#
        );
        let missing = catalog
            .check_data("wallet.balance_low", &serde_json::json!({}))
            .expect_err("balance is required");
        assert_eq!(missing.pointer, "");
        assert!(missing.to_string().starts_with("(root): "), "{missing}");
        assert!(
            catalog
                .check_data("wallet.topped_up", &serde_json::json!({"any": 1}))
                .is_ok()
        );
        assert!(!EventCatalog::default().has_schemas());
    }

    #[test]
    fn a_violation_never_quotes_the_data_not_even_a_property_name() {
        let text = r#"[{"name": "a.b", "description": "x", "schema": {
            "propertyNames": {"maxLength": 5},
            "properties": {"n": {"propertyNames": {"pattern": "^[a-z]+$"}}}}}]"#;
        let catalog = EventCatalog::from_file_text(text, CatalogFormat::Json).expect("valid");
        let long = catalog
            .check_data("a.b", &serde_json::json!({"person@example.com": 1}))
            .expect_err("the name is too long");
        assert_eq!(
            long.to_string(),
            "(root): a property name is longer than 5 characters"
        );
        let odd = catalog
            .check_data("a.b", &serde_json::json!({"n": {"Secret1": 1}}))
            .expect_err("the name breaks the pattern");
        assert_eq!(
            odd.to_string(),
            r#"/n: a property name does not match "^[a-z]+$""#
        );
    }

    #[test]
    fn a_json_catalog_file_reads_alike() {
        let text = r#"[{"name": "a.b", "description": "A.", "schema": {"type": "object"}}]"#;
        let catalog = EventCatalog::from_file_text(text, CatalogFormat::Json).expect("valid");
        assert!(catalog.contains("a.b"));
        assert!(EventCatalog::from_file_text(text, CatalogFormat::Yaml).is_ok());
    }

    #[test]
    fn a_broken_catalog_file_is_refused_naming_the_type() {
        refused("[", CatalogFormat::Json, "event catalog does not parse");
        refused("a: b", CatalogFormat::Yaml, "event catalog does not parse");
        refused("[]", CatalogFormat::Json, "at least one event type");
        refused(
            r#"[{"name": "a.b"}]"#,
            CatalogFormat::Json,
            "missing field `description`",
        );
        refused(
            r#"[{"name": "a.b", "description": "x", "colour": 1}]"#,
            CatalogFormat::Json,
            "unknown field `colour`",
        );
        refused(
            r#"[{"name": "a.*", "description": "x"}]"#,
            CatalogFormat::Json,
            "event type a.*: name must be",
        );
        refused(
            r#"[{"name": "a..b", "description": "x"}]"#,
            CatalogFormat::Json,
            "event type a..b: name must not have an empty segment",
        );
        refused(
            r#"[{"name": "webhook.test", "description": "x"}]"#,
            CatalogFormat::Json,
            "event type webhook.test: webhook.test is reserved",
        );
        refused(
            r#"[{"name": "a.b", "description": "x"}, {"name": "a.b", "description": "y"}]"#,
            CatalogFormat::Json,
            "event type a.b: listed twice",
        );
        refused(
            r#"[{"name": "a.b-c", "description": "x"}, {"name": "a_b.c", "description": "y"}]"#,
            CatalogFormat::Json,
            "event type a_b.c: name reads as a.b-c once '.' and '-' become '_', as in the webhook operation webhook_a_b_c",
        );
        refused(
            r#"[{"name": "a.b", "description": "x", "schema": {"type": "strin"}}]"#,
            CatalogFormat::Json,
            "event type a.b: schema does not compile",
        );
        refused(
            r#"[{"name": "a.b", "description": "x", "schema": {"$ref": "https://example.com/s.json"}}]"#,
            CatalogFormat::Json,
            "event type a.b: schema does not compile",
        );
        refused(
            r#"[{"name": "a.b", "description": "x", "schema": {"properties": {"n": {"type": "integer"}}}, "example": {"n": "1"}}]"#,
            CatalogFormat::Json,
            r#"event type a.b: example breaks its schema: /n: value is not of type "integer""#,
        );
        refused(
            r#"[{"name": "a.b", "description": "x", "example": [1]}]"#,
            CatalogFormat::Json,
            "event type a.b: example must be a JSON object",
        );
    }

    #[test]
    fn subscription_entries_are_the_types_their_prefix_wildcards_and_star() {
        let catalog = EventCatalog::new(vec!["a.b.c".to_owned(), "a.d".to_owned()]);
        let entries = catalog.subscription_entries();
        assert_eq!(
            entries,
            [
                "a.b.c",
                "a.d",
                "endpoint.disabled",
                "endpoint.enabled",
                "delivery.exhausted",
                "a.*",
                "a.b.*",
                "endpoint.*",
                "delivery.*",
                "*"
            ]
        );
        for entry in &entries {
            assert!(
                crate::endpoint::validate_events(std::slice::from_ref(entry), &catalog).is_ok(),
                "{entry}"
            );
        }
    }

    #[test]
    fn enforcement_spellings() {
        assert_eq!(
            SchemaEnforcement::parse("off"),
            Some(SchemaEnforcement::Off)
        );
        assert_eq!(
            SchemaEnforcement::parse("warn"),
            Some(SchemaEnforcement::Warn)
        );
        assert_eq!(
            SchemaEnforcement::parse("reject"),
            Some(SchemaEnforcement::Reject)
        );
        assert_eq!(SchemaEnforcement::parse("Reject"), None);
        assert_eq!(SchemaEnforcement::default(), SchemaEnforcement::Warn);
    }
}
