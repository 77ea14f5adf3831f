use proptest::prelude::*;
use serde_json::json;

use super::*;

fn wallet_event() -> Value {
    event_document(
        "wallet.balance_low",
        json!({"balance": 42, "currency": "EUR", "limits": {"daily": 10.5},
               "tags": ["a", "b"], "note": null, "owner": "acme-corp"}),
    )
}

/// Parses `filter` and checks whether it matches [`wallet_event`].
fn check(filter: &Value, expected: bool) {
    let parsed = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    assert_eq!(parsed.matches(&wallet_event()), expected, "{filter}");
}

/// Checks that `filter` is refused with `expected` (pointer and message).
fn refused(filter: &Value, expected: &str) {
    let error = Filter::parse(filter).expect_err(&filter.to_string());
    assert_eq!(error.to_string(), expected, "{filter}");
}

#[test]
fn plain_values_match_by_equality_and_nested_objects_descend() {
    check(&json!({}), true);
    check(&json!({"type": "wallet.balance_low"}), true);
    check(&json!({"type": "wallet.balance_zero"}), false);
    check(&json!({"data": {"balance": 42}}), true);
    check(&json!({"data": {"balance": 42.0}}), true);
    check(&json!({"data": {"balance": "42"}}), false);
    check(&json!({"data": {"limits": {"daily": 10.5}}}), true);
    check(&json!({"data": {"tags": ["a", "b"]}}), true);
    check(&json!({"data": {"tags": ["b", "a"]}}), false);
    check(&json!({"data": {"note": null}}), true);
    check(&json!({"data": {"missing": null}}), false);
    check(&json!({"data": {"balance": 42, "currency": "USD"}}), false);
    check(
        &json!({"data": {"balance": {"$eq": 42}, "currency": "EUR"}}),
        true,
    );
    // Descending through a non-object finds nothing.
    check(&json!({"data": {"balance": {"inner": 1}}}), false);
    check(&json!({"data": {"limits": {"$eq": {"daily": 10.5}}}}), true);
}

#[test]
fn comparisons_order_numbers_numerically_and_strings_by_code_point() {
    check(&json!({"data": {"balance": {"$lt": 100}}}), true);
    check(&json!({"data": {"balance": {"$lt": 42}}}), false);
    check(&json!({"data": {"balance": {"$lte": 42}}}), true);
    check(&json!({"data": {"balance": {"$gt": 41.5}}}), true);
    check(&json!({"data": {"balance": {"$gte": 42.5}}}), false);
    check(&json!({"data": {"balance": {"$gte": 10, "$lt": 50}}}), true);
    check(&json!({"data": {"currency": {"$gt": "DKK"}}}), true);
    check(&json!({"data": {"currency": {"$lt": "EU"}}}), false);
    // A kind mismatch or a missing field never matches a comparison.
    check(&json!({"data": {"balance": {"$lt": "zzz"}}}), false);
    check(&json!({"data": {"currency": {"$gt": 0}}}), false);
    check(&json!({"data": {"missing": {"$lt": 1}}}), false);
    check(&json!({"data": {"note": {"$lt": 1}}}), false);
}

#[test]
fn membership_existence_prefix_and_negations() {
    check(
        &json!({"data": {"currency": {"$in": ["USD", "EUR"]}}}),
        true,
    );
    check(&json!({"data": {"currency": {"$in": ["USD"]}}}), false);
    check(&json!({"data": {"currency": {"$nin": ["USD"]}}}), true);
    check(&json!({"data": {"missing": {"$nin": ["USD"]}}}), true);
    check(&json!({"data": {"missing": {"$in": [null]}}}), false);
    check(&json!({"data": {"currency": {"$neq": "EUR"}}}), false);
    check(&json!({"data": {"missing": {"$neq": "EUR"}}}), true);
    check(&json!({"data": {"note": {"$exists": true}}}), true);
    check(&json!({"data": {"missing": {"$exists": false}}}), true);
    check(&json!({"data": {"missing": {"$exists": true}}}), false);
    check(&json!({"data": {"owner": {"$startsWith": "acme-"}}}), true);
    check(&json!({"data": {"owner": {"$startsWith": "ACME"}}}), false);
    check(&json!({"data": {"balance": {"$startsWith": "4"}}}), false);
    check(&json!({"type": {"$startsWith": "wallet."}}), true);
}

#[test]
fn combinators_work_at_any_level() {
    check(
        &json!({"$or": [{"type": "brand.vetted"}, {"data": {"balance": {"$lt": 50}}}]}),
        true,
    );
    check(
        &json!({"$and": [{"type": "wallet.balance_low"}, {"data": {"currency": "USD"}}]}),
        false,
    );
    check(&json!({"$not": {"type": "wallet.balance_low"}}), false);
    check(&json!({"data": {"balance": {"$not": {"$gt": 100}}}}), true);
    check(
        &json!({"data": {"$or": [{"currency": "USD"}, {"limits": {"daily": {"$gte": 10}}}]}}),
        true,
    );
    check(
        &json!({"data": {"balance": {"$or": [{"$lt": 0}, {"$gt": 100}]}}}),
        false,
    );
}

#[test]
fn malformed_filters_are_refused_with_the_pointer_of_the_fault() {
    refused(&json!([]), "must be a JSON object");
    refused(&json!("x"), "must be a JSON object");
    refused(
        &json!({"data": {"balance": {"$lt": true}}}),
        "/data/balance/$lt: must be a number or a string",
    );
    refused(
        &json!({"data": {"balance": {"$lt": [1]}}}),
        "/data/balance/$lt: must be a number or a string",
    );
    refused(
        &json!({"data": {"balance": {"$lt": 1, "other": 2}}}),
        "/data/balance: must not mix operators and field names",
    );
    refused(
        &json!({"data": {"balance": {"$like": 1}}}),
        "/data/balance/$like: unknown operator $like",
    );
    refused(&json!({"data": {}}), "/data: must not be empty");
    refused(
        &json!({"data": {"c": {"$in": []}}}),
        "/data/c/$in: must be a non-empty array",
    );
    refused(
        &json!({"data": {"c": {"$nin": "x"}}}),
        "/data/c/$nin: must be a non-empty array",
    );
    refused(
        &json!({"data": {"c": {"$exists": 1}}}),
        "/data/c/$exists: must be true or false",
    );
    refused(
        &json!({"data": {"c": {"$startsWith": 1}}}),
        "/data/c/$startsWith: must be a string",
    );
    refused(
        &json!({"$or": []}),
        "/$or: must be a non-empty array of objects",
    );
    refused(
        &json!({"$and": {"type": "x"}}),
        "/$and: must be a non-empty array of objects",
    );
    refused(
        &json!({"$or": [{"type": "x"}, 3]}),
        "/$or/1: must be a JSON object",
    );
    refused(&json!({"$not": [1]}), "/$not: must be a JSON object");
    refused(
        &json!({"data": {"a/b~c": {"$gt": null}}}),
        "/data/a~1b~0c/$gt: must be a number or a string",
    );
}

#[test]
fn size_and_depth_are_bounded() {
    let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}});
    assert!(Filter::parse(&deep).is_ok(), "eight levels are allowed");
    refused(
        &json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),
        "/a/b/c/d/e/f/g/h: nests deeper than 8 levels",
    );
    refused(
        &json!({"$and": [{"$and": [{"$and": [{"$and": [{"x": 1}]}]}]}]}),
        "/$and/0/$and/0/$and/0/$and/0: nests deeper than 8 levels",
    );
    let long = "x".repeat(MAX_FILTER_BYTES);
    let error = Filter::parse(&json!({"data": {"s": long}})).expect_err("too large");
    assert!(
        error.message.starts_with("must be at most 4096 bytes"),
        "{error}"
    );
    let fits = "x".repeat(MAX_FILTER_BYTES - r#"{"data":{"s":""}}"#.len());
    assert!(Filter::parse(&json!({"data": {"s": fits}})).is_ok());
}

// A reference evaluator, written apart from the one under test and straight over the JSON of
// the filter: the property below holds the two to the same answers.

fn reference_matches(filter: &Map<String, Value>, value: Option<&Value>) -> bool {
    filter.iter().all(|(key, operand)| {
        if key.starts_with('$') {
            reference_operator(key, operand, value)
        } else {
            let member = match value {
                Some(Value::Object(members)) => members.get(key),
                _ => None,
            };
            match operand {
                Value::Object(nested) => reference_matches(nested, member),
                plain => member.is_some_and(|m| reference_equal(m, plain)),
            }
        }
    })
}

fn reference_operator(name: &str, operand: &Value, value: Option<&Value>) -> bool {
    let ordered = |accept: fn(f64, f64) -> bool, accept_text: fn(&str, &str) -> bool| match (
        value, operand,
    ) {
        (Some(Value::Number(a)), Value::Number(b)) => accept(
            a.as_f64().unwrap_or(f64::NAN),
            b.as_f64().unwrap_or(f64::NAN),
        ),
        (Some(Value::String(a)), Value::String(b)) => accept_text(a, b),
        _ => false,
    };
    let objects = |items: &Value| -> Vec<Map<String, Value>> {
        items
            .as_array()
            .map(|list| list.iter().filter_map(|i| i.as_object().cloned()).collect())
            .unwrap_or_default()
    };
    let within = |items: &Value| {
        value.is_some_and(|v| {
            items
                .as_array()
                .is_some_and(|list| list.iter().any(|i| reference_equal(v, i)))
        })
    };
    match name {
        "$eq" => value.is_some_and(|v| reference_equal(v, operand)),
        "$neq" => !value.is_some_and(|v| reference_equal(v, operand)),
        "$gt" => ordered(|a, b| a > b, |a, b| a > b),
        "$gte" => ordered(|a, b| a >= b, |a, b| a >= b),
        "$lt" => ordered(|a, b| a < b, |a, b| a < b),
        "$lte" => ordered(|a, b| a <= b, |a, b| a <= b),
        "$in" => within(operand),
        "$nin" => !within(operand),
        "$exists" => value.is_some() == (operand == &Value::Bool(true)),
        "$startsWith" => {
            matches!((value, operand), (Some(Value::String(s)), Value::String(p)) if s.starts_with(p.as_str()))
        }
        "$and" => objects(operand).iter().all(|f| reference_matches(f, value)),
        "$or" => objects(operand).iter().any(|f| reference_matches(f, value)),
        "$not" => !reference_matches(operand.as_object().expect("generated"), value),
        other => panic!("generated an unknown operator {other}"),
    }
}

fn reference_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| reference_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| reference_equal(p, q)))
        }
        _ => a == b,
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut members = Map::new();
    members.insert(key.to_owned(), value);
    Value::Object(members)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..4).prop_map(Value::from),
        prop::sample::select(vec![-1.5, 0.0, 0.5, 2.0]).prop_map(Value::from),
        prop::sample::select(vec!["", "a", "ab", "b", "wallet.x"]).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn document_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 12, 3, |inner| {
        prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), inner, 0..3)
            .prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            })
    })
}

/// An operator object over one value (depth stays within the bound: at most 3 levels of
/// combinators over 2 levels of fields).
fn operator_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        scalar().prop_map(|v| json!({"$eq": v})),
        scalar().prop_map(|v| json!({"$neq": v})),
        (
            prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]),
            prop_oneof![
                (-3i64..4).prop_map(Value::from),
                prop::sample::select(vec!["", "a", "b"]).prop_map(Value::from)
            ]
        )
            .prop_map(|(op, v)| single(op, v)),
        (prop::bool::ANY, prop::collection::vec(scalar(), 1..3)).prop_map(|(is_in, items)| single(
            if is_in { "$in" } else { "$nin" },
            Value::Array(items)
        )),
        any::<bool>().prop_map(|b| json!({"$exists": b})),
        prop::sample::select(vec!["", "a", "wallet."]).prop_map(|p| json!({"$startsWith": p})),
    ];
    leaf.prop_recursive(1, 6, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| json!({"$not": c})),
            (prop::bool::ANY, prop::collection::vec(inner, 1..3)).prop_map(|(and, items)| single(
                if and { "$and" } else { "$or" },
                Value::Array(items)
            )),
        ]
    })
}

fn field_filter() -> impl Strategy<Value = Value> {
    let condition = prop_oneof![scalar(), operator_object()];
    let level =
        prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), condition, 1..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    let nested = prop::collection::btree_map(
        prop::sample::select(vec!["a", "b", "c"]),
        prop_oneof![scalar(), operator_object(), level.clone()],
        1..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    prop_oneof![
        nested.prop_map(|data| json!({"data": data})),
        (nested_type(), level).prop_map(|(t, data)| json!({"type": t, "data": data})),
    ]
}

fn nested_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["wallet.x", "brand.y"]).prop_map(Value::from),
        prop::sample::select(vec!["wallet.", "brand"]).prop_map(|p| json!({"$startsWith": p})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn the_evaluator_agrees_with_the_reference(
        filter in field_filter(),
        event_type in prop::sample::select(vec!["wallet.x", "brand.y"]),
        data in prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), document_value(), 0..4),
    ) {
        let data = Value::Object(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        let parsed = Filter::parse(&filter).expect("generated filters are valid");
        let document = event_document(event_type, data);
        let expected = reference_matches(filter.as_object().expect("object"), Some(&document));
        prop_assert_eq!(parsed.matches(&document), expected, "filter {} on {}", filter, document);
    }

    #[test]
    fn parsing_never_panics_and_accepted_filters_round_trip(value in document_value()) {
        if let Ok(filter) = Filter::parse(&value) {
            prop_assert_eq!(filter.as_json(), &value);
        }
    }
}
