//! The parts of `/openapi.json` that depend on the deployment's configuration, added when the
//! router is built: the catalog's types and the API versions as enums where the API takes them
//! (so a client, or Schemathesis, sees exactly what the server accepts), and the `webhooks`
//! section of OpenAPI 3.1, one operation per catalog type with the delivery envelope of
//! docs/api.md#the-envelope and the type's schema as `data`, from which receivers generate
//! types.

use herald_domain::TEST_EVENT_TYPE;
use herald_domain::catalog::webhook_operation_id;
use serde_json::{Map, Value, json};

use crate::state::ApiConfig;

/// `openapi` (the fixed document) with the deployment's catalog and versions filled in.
pub(super) fn with_catalog(openapi: &utoipa::openapi::OpenApi, config: &ApiConfig) -> Value {
    let mut document = serde_json::to_value(openapi).unwrap_or(Value::Null);
    let names: Vec<String> = config
        .catalog
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let entries = config.catalog.subscription_entries();
    let new_versions: Vec<&String> = config
        .api_versions
        .supported()
        .iter()
        .filter(|version| config.api_versions.check_new(version).is_ok())
        .collect();
    let schemas = "/components/schemas";
    for request in ["CreateEndpointRequest", "UpdateEndpointRequest"] {
        if let Some(events) =
            document.pointer_mut(&format!("{schemas}/{request}/properties/events"))
        {
            events["items"] = json!({"type": "string", "enum": entries});
            events["uniqueItems"] = json!(true);
        }
    }
    if let Some(version) = document.pointer_mut(&format!(
        "{schemas}/CreateEndpointRequest/properties/api_version"
    )) {
        version["enum"] = json!(new_versions);
    }
    // A recovery takes a type listed twice as once, so duplicates are valid there.
    if let Some(types) =
        document.pointer_mut(&format!("{schemas}/RecoverRequest/properties/event_types"))
    {
        types["items"] = json!({"type": "string", "enum": names});
    }
    if let Some(event_type) =
        document.pointer_mut(&format!("{schemas}/TestFilterEvent/properties/type"))
    {
        event_type["enum"] = json!(names);
    }
    let mut filterable = names;
    filterable.push(TEST_EVENT_TYPE.to_owned());
    if let Some(Value::Array(parameters)) =
        document.pointer_mut("/paths/~1v1~1webhooks~1deliveries/get/parameters")
    {
        for parameter in parameters.iter_mut() {
            if parameter["name"] == json!("event_type") {
                parameter["schema"] = json!({"type": "string", "enum": filterable});
            }
        }
    }
    document["webhooks"] = webhooks(config, config.api_versions.supported());
    document
}

/// One `post` operation per catalog type: what a receiver gets for it.
fn webhooks(config: &ApiConfig, versions: &[String]) -> Value {
    let mut webhooks = Map::new();
    for definition in config.catalog.types() {
        let data = definition
            .schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "additionalProperties": true}));
        let envelope = json!({
            "type": "object",
            "required": ["id", "type", "api_version", "created_at", "org_id", "data"],
            "properties": {
                "id": {"type": "string", "pattern": "^evt_[0-9a-f-]{36}$", "description": "The event id; receivers dedupe on it"},
                "type": {"type": "string", "const": definition.name},
                "api_version": {"type": "string", "enum": versions},
                "created_at": {"type": "string", "format": "date-time"},
                "org_id": {"type": "string", "format": "uuid"},
                "data": data,
            },
        });
        let mut operation = json!({
            "operationId": webhook_operation_id(&definition.name),
            "summary": definition.name,
            "requestBody": {"required": true, "content": {"application/json": {"schema": envelope}}},
            "responses": {"200": {"description": "Any 2xx answer acknowledges the delivery"}},
        });
        if let Some(description) = &definition.description {
            operation["description"] = json!(description);
        }
        if definition.deprecated {
            operation["deprecated"] = json!(true);
        }
        if let Some(example) = &definition.example {
            operation["requestBody"]["content"]["application/json"]["example"] = json!({
                "id": "evt_01a2356c-00f7-7382-a197-aae79ef2ccec",
                "type": definition.name,
                "api_version": versions.last(),
                "created_at": "2026-04-26T12:00:00Z",
                "org_id": "01a219b0-7f27-711b-8897-4495784a58cd",
                "data": example,
            });
        }
        webhooks.insert(definition.name.clone(), json!({"post": operation}));
    }
    Value::Object(webhooks)
}
