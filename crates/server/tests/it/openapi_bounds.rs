//! `GET /openapi.json` says exactly what the server accepts (issue 17): every string a request
//! carries is bounded, every query value the document refuses is refused by the server and
//! every one it allows is not, and links lead from each answer that carries an id to every
//! operation that takes one.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, endpoint_body, string_at};

backend_tests!(
    every_request_string_is_bounded,
    every_id_taking_operation_is_the_target_of_a_link,
    every_link_names_a_real_operation_parameter_and_answer_field,
    query_values_are_refused_exactly_where_the_document_refuses_them,
);

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let reply = app.send(app.request(Method::GET, "/openapi.json")).await;
    reply.assert_status(StatusCode::OK);
    reply.body
}

/// Every operation: (method, path, operation object).
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_owned(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

/// Follows a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => document
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {reference}")),
        None => schema,
    }
}

/// Whether a schema admits strings.
fn admits_string(schema: &Value) -> bool {
    match &schema["type"] {
        Value::String(kind) => kind == "string",
        Value::Array(kinds) => kinds.iter().any(|kind| kind == "string"),
        _ => false,
    }
}

/// A string is bounded when it has a `maxLength` or is one of an `enum`. An RFC 3339
/// timestamp (`format: date-time`) is bounded by its format in every part but the fraction
/// of a second, which the server reads at any length, as RFC 3339 allows.
fn string_bound_problems(document: &Value, schema: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(document, schema);
    if admits_string(schema)
        && schema.get("maxLength").is_none()
        && schema.get("enum").is_none()
        && schema.get("const").is_none()
        && schema["format"] != "date-time"
    {
        problems.push(format!("{at}: a string without maxLength"));
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        string_bound_problems(document, property, &format!("{at}.{name}"), problems);
    }
    for keyword in ["items", "additionalProperties", "propertyNames"] {
        if schema[keyword].is_object() {
            string_bound_problems(
                document,
                &schema[keyword],
                &format!("{at}[{keyword}]"),
                problems,
            );
        }
    }
    for keyword in ["oneOf", "anyOf", "allOf"] {
        for (index, branch) in schema[keyword].as_array().into_iter().flatten().enumerate() {
            string_bound_problems(
                document,
                branch,
                &format!("{at}/{keyword}/{index}"),
                problems,
            );
        }
    }
}

async fn every_request_string_is_bounded(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let document = document(&app).await;

    // Assert: parameters (path, query, header) and request bodies alike.
    let mut problems = Vec::new();
    let mut parameters = 0;
    for (method, path, operation) in operations(&document) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            parameters += 1;
            let at = format!("{method} {path} {}", parameter["name"]);
            string_bound_problems(&document, &parameter["schema"], &at, &mut problems);
        }
        if let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema") {
            string_bound_problems(
                &document,
                schema,
                &format!("{method} {path} body"),
                &mut problems,
            );
        }
    }
    assert!(parameters > 10, "only {parameters} parameters found");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every (operation id, link) of every answer.
fn links(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (_, _, operation) in operations(document) {
        let from = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for (_, response) in operation["responses"].as_object().into_iter().flatten() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                found.push((from.clone(), name.clone(), link.clone()));
            }
        }
    }
    found
}

async fn every_id_taking_operation_is_the_target_of_a_link(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let document = document(&app).await;

    // Assert
    let targets: BTreeSet<String> = links(&document)
        .into_iter()
        .filter_map(|(_, _, link)| link["operationId"].as_str().map(str::to_owned))
        .collect();
    let mut id_taking = 0;
    for (method, path, operation) in operations(&document) {
        if !path.contains("{id}") {
            continue;
        }
        id_taking += 1;
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            targets.contains(id),
            "{method} {path} ({id}) takes an id but no answer links to it"
        );
    }
    assert!(id_taking >= 11, "only {id_taking} operations take an id");
}

async fn every_link_names_a_real_operation_parameter_and_answer_field(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let document = document(&app).await;

    // Assert: the target exists and declares the parameter; the expression points at a field
    // the source operation's answer declares, of the target parameter's kind (an id is a
    // uuid, an event id `evt_…`).
    let all = operations(&document);
    let found = links(&document);
    assert!(found.len() >= 20, "only {} links", found.len());
    for (from, name, link) in found {
        let target_id = link["operationId"].as_str().unwrap_or_default();
        let (_, _, target) = all
            .iter()
            .find(|(_, _, operation)| operation["operationId"] == target_id)
            .unwrap_or_else(|| panic!("{from}: link {name} to unknown operation {target_id}"));
        let (_, _, source) = all
            .iter()
            .find(|(_, _, operation)| operation["operationId"] == from.as_str())
            .expect("the source operation");
        for (parameter, expression) in link["parameters"].as_object().into_iter().flatten() {
            let declared = target["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|declared| declared["name"] == parameter.as_str())
                .unwrap_or_else(|| panic!("{from}: link {name}: {target_id} has no {parameter}"));
            let pointer = expression
                .as_str()
                .and_then(|text| text.strip_prefix("$response.body#"))
                .unwrap_or_else(|| {
                    panic!("{from}: link {name}: {expression} is not a body pointer")
                });
            let field = answer_field(&document, source, pointer)
                .unwrap_or_else(|| panic!("{from}: link {name}: no answer field at {pointer}"));
            let field_pattern = field["pattern"].as_str();
            let field_format = field["format"].as_str();
            let parameter_pattern = declared["schema"]["pattern"].as_str();
            assert!(
                field_format == Some("uuid") && declared["schema"]["format"] == "uuid"
                    || field_pattern.is_some() && field_pattern == parameter_pattern,
                "{from}: link {name}: {pointer} ({field}) does not fit {parameter} ({})",
                declared["schema"]
            );
        }
    }
}

/// The schema of the field at `pointer` in the success answer of `operation`.
fn answer_field<'a>(document: &'a Value, operation: &'a Value, pointer: &str) -> Option<&'a Value> {
    let (_, response) = operation["responses"]
        .as_object()?
        .iter()
        .find(|(status, _)| status.starts_with('2'))?;
    let mut schema = resolve(
        document,
        response.pointer("/content/application~1json/schema")?,
    );
    for segment in pointer.trim_start_matches('/').split('/') {
        schema = if segment.chars().all(|c| c.is_ascii_digit()) {
            resolve(document, schema.get("items")?)
        } else {
            property(document, schema, segment)?
        };
    }
    Some(schema)
}

/// A property of an object schema, looking through `allOf` (a flattened struct).
fn property<'a>(document: &'a Value, schema: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(found) = schema["properties"].get(name) {
        return Some(resolve(document, found));
    }
    schema["allOf"]
        .as_array()?
        .iter()
        .find_map(|branch| property(document, resolve(document, branch), name))
}

/// Query values tried on every query parameter, beside each of its `enum` values and a value
/// one character longer than its `maxLength`.
const PROBES: [&str; 6] = ["", "0", "-1", "1", "abc", "99999999999999999999"];

async fn query_values_are_refused_exactly_where_the_document_refuses_them(backend: Backend) {
    // Arrange: a real endpoint, so operations that take an id read their query first.
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let endpoint = app.create_endpoint(&org.key, &endpoint_body()).await;
    let endpoint_id = string_at(&endpoint, "id");
    let document = document(&app).await;
    let mut checked = 0;

    for (method, path, operation) in operations(&document) {
        if method != "get" {
            continue;
        }
        let concrete = path.replace("{id}", &endpoint_id);
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] != "query" {
                continue;
            }
            let name = parameter["name"].as_str().unwrap_or_default();
            let schema = &parameter["schema"];
            // Formats (date-time, uuid) are checked: the server reads them.
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(schema)
                .expect("a valid parameter schema");
            let mut values: Vec<String> = PROBES.iter().map(|probe| (*probe).to_owned()).collect();
            for value in schema["enum"].as_array().into_iter().flatten() {
                values.push(value.as_str().unwrap_or_default().to_owned());
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                values.push("a".repeat(usize::try_from(max).unwrap_or(0) + 1));
            }
            for value in values {
                // A query value is text; an integer parameter reads it as a number.
                let typed = match (schema["type"].as_str(), value.parse::<i64>()) {
                    (Some("integer"), Ok(number)) => json!(number),
                    _ => json!(value),
                };
                let valid = validator.is_valid(&typed);

                // Act
                let reply = app
                    .send(
                        app.request(Method::GET, &concrete)
                            .bearer_auth(&org.key)
                            .query(&[(name, value.as_str())]),
                    )
                    .await;

                // Assert
                checked += 1;
                if valid {
                    assert_eq!(
                        reply.status,
                        StatusCode::OK,
                        "GET {path}?{name}={value:?}: the document calls it valid: {reply}"
                    );
                } else {
                    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
                    assert!(
                        reply.body["error"]["details"][name].is_string(),
                        "GET {path}?{name}={value:?}: {reply}"
                    );
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} values tried");
}
