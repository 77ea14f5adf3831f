//! Request bodies: arbitrary bytes through the API's own JSON extractor (`JsonObject`, with
//! and without a JSON content type), then through the readers of the create, update and
//! replay bodies. Nothing panics; a refusal is a 400 or 422 envelope whose `details` name
//! only real fields or the unknown fields sent; and whatever is accepted obeys every rule of
//! docs/api.md#validation-rules, with no U+0000 anywhere (PostgreSQL cannot store it).
//! (The filter language itself has a target of its own: `catalog_and_filter`.)

#![no_main]

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use axum::response::IntoResponse;
use herald_api::ApiConfig;
use herald_api::error::ApiError;
use herald_api::extract::JsonObject;
use herald_api::routes::deliveries::read_replay_body;
use herald_api::routes::endpoints::{read_create_body, read_update_body};
use herald_domain::endpoint::{
    MAX_DESCRIPTION_CHARS, MAX_EVENTS, subscription_matches, validate_url,
};
use herald_fuzz::ready;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const CREATE_FIELDS: [&str; 6] = [
    "url",
    "events",
    "description",
    "api_version",
    "headers",
    "filter",
];
const UPDATE_FIELDS: [&str; 7] = [
    "filter",
    "url",
    "events",
    "description",
    "active",
    "api_version",
    "headers",
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let content_type = match selector % 4 {
        0 => None,
        1 => Some("text/plain"),
        2 => Some("application/json; charset=utf-8"),
        _ => Some("application/json"),
    };
    let mut request = Request::builder().method("POST").uri("/v1/webhooks");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let map = match ready(JsonObject::from_request(request, &())) {
        Ok(JsonObject(map)) => map,
        Err(error) => {
            assert!(matches!(error, ApiError::InvalidInput(_)), "{error:?}");
            assert_eq!(error.into_response().status(), 400);
            return;
        }
    };
    assert!(content_type.is_some_and(|value| value.starts_with("application/json")));
    let config = ApiConfig::default();
    check_create(map.clone(), &config);
    check_update(map.clone(), &config);
    check_replay(map);
});

fn check_create(map: Map<String, Value>, config: &ApiConfig) {
    let sent = keys(&map);
    match read_create_body(map, config) {
        Ok(fields) => {
            assert_eq!(
                validate_url(&fields.url, &config.address_policy),
                Ok(fields.url.clone())
            );
            check_events(&fields.events, config);
            if let Some(description) = &fields.description {
                check_description(description);
            }
            assert!(config.api_versions.check_new(&fields.api_version).is_ok());
            assert!(!fields.url.contains('\0') && !fields.api_version.contains('\0'));
        }
        Err(error) => check_refusal(error, &CREATE_FIELDS, &sent),
    }
}

fn check_update(map: Map<String, Value>, config: &ApiConfig) {
    let sent = keys(&map);
    match read_update_body(map, config) {
        Ok(patch) => {
            if let Some(url) = &patch.url {
                assert_eq!(validate_url(url, &config.address_policy), Ok(url.clone()));
            }
            if let Some(events) = &patch.events {
                check_events(events, config);
            }
            if let Some(Some(description)) = &patch.description {
                check_description(description);
            }
        }
        Err(error) => check_refusal(error, &UPDATE_FIELDS, &sent),
    }
}

fn check_replay(map: Map<String, Value>) {
    let sent = keys(&map);
    match read_replay_body(map) {
        Ok(Some(reason)) => {
            assert!(reason.chars().count() <= 500);
            assert!(!reason.trim().is_empty() && !reason.contains('\0'));
        }
        Ok(None) => {}
        Err(error) => check_refusal(error, &["reason"], &sent),
    }
}

fn check_events(events: &[String], config: &ApiConfig) {
    assert!((1..=MAX_EVENTS).contains(&events.len()));
    let distinct: BTreeSet<&String> = events.iter().collect();
    assert_eq!(distinct.len(), events.len());
    // Each a catalog type, or a wildcard that covers one today (docs/api.md#wildcards).
    assert!(events.iter().all(|entry| {
        config.catalog.contains(entry)
            || (entry.ends_with('*')
                && config
                    .catalog
                    .names()
                    .iter()
                    .any(|name| subscription_matches(entry, name)))
    }));
}

fn check_description(description: &str) {
    assert!(description.chars().count() <= MAX_DESCRIPTION_CHARS);
    assert!(!description.trim().is_empty() && !description.contains('\0'));
}

/// A refused body is a 422 whose details name known fields or fields that were sent.
fn check_refusal(error: ApiError, known: &[&str], sent: &BTreeSet<String>) {
    let ApiError::Validation(details) = &error else {
        panic!("a body that parsed is refused only by validation: {error:?}");
    };
    assert!(!details.is_empty());
    for field in details.keys() {
        assert!(
            known.contains(&field.as_str()) || sent.contains(field),
            "details name {field:?}, which is neither a field nor sent"
        );
    }
    assert_eq!(error.into_response().status(), 422);
}

fn keys(map: &Map<String, Value>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}
