//! Payload filters and catalog files (docs/api.md#filters, docs/api.md#the-catalog-file), from
//! arbitrary bytes. A filter that parses is kept as written, stays within its bounds (4 KiB
//! serialized, 8 levels), and matches any event document without panicking, the same way
//! twice; one that is refused names a pointer that exists in it. A catalog file, read as JSON
//! and as YAML, either is refused with a message or yields a catalog that holds the
//! operational types, never `webhook.test`, and checks any `data` without panicking.

#![no_main]

use herald_domain::EventCatalog;
use herald_domain::catalog::{CatalogFormat, TEST_EVENT_TYPE};
use herald_domain::filter::{Filter, MAX_FILTER_BYTES, event_document};
use herald_domain::operational::OPERATIONAL_EVENT_TYPES;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match selector % 3 {
        0 => check_filter(text),
        1 => check_catalog(text, CatalogFormat::Json),
        _ => check_catalog(text, CatalogFormat::Yaml),
    }
});

/// The text is split at the first NUL: a filter before it, an event's data after it.
fn check_filter(text: &str) {
    let (filter_text, data_text) = text.split_once('\0').unwrap_or((text, "{}"));
    let Ok(value) = serde_json::from_str::<Value>(filter_text) else {
        return;
    };
    match Filter::parse(&value) {
        Ok(filter) => {
            assert_eq!(filter.as_json(), &value);
            assert!(value.to_string().len() <= MAX_FILTER_BYTES);
            let data = serde_json::from_str::<Value>(data_text).unwrap_or(Value::Null);
            let document = event_document("wallet.balance_low", data);
            assert_eq!(filter.matches(&document), filter.matches(&document));
        }
        Err(error) => {
            assert!(!error.message.is_empty());
            assert!(
                error.pointer.is_empty() || value.pointer(&error.pointer).is_some(),
                "{error} names a place that is not in {value}"
            );
        }
    }
}

fn check_catalog(text: &str, format: CatalogFormat) {
    match EventCatalog::from_file_text(text, format) {
        Ok(catalog) => {
            for operational in OPERATIONAL_EVENT_TYPES {
                assert!(catalog.contains(operational));
            }
            assert!(!catalog.contains(TEST_EVENT_TYPE));
            for name in catalog.names() {
                let _ = catalog.check_data(name, &Value::Null);
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}
