//! An endpoint's payload filter (docs/api.md#filters): a JSON object, checked once when it is
//! written ([`Filter::parse`]), then matched at fan-out against the document
//! `{"type": …, "data": …}` of each event ([`event_document`], [`Filter::matches`]).
//!
//! The language, in short:
//! - An object of field names descends into the document: `{"data": {"balance": …}}` speaks of
//!   `data.balance`. Several names in one object must all hold.
//! - A plain value (string, number, boolean, `null`, array) matches by equality.
//! - An object whose keys all start with `$` applies operators to the value where it sits:
//!   `$eq`, `$neq`, `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`, `$exists`, `$startsWith`,
//!   and the combinators `$and`, `$or` (arrays of such objects) and `$not` (one object), which
//!   may sit at any level, the root included. Several operators in one object must all hold.
//! - Numbers compare numerically (`1` equals `1.0`), strings by Unicode code point; a
//!   comparison between different kinds, or with a missing field, does not match. `$neq` and
//!   `$nin` are the negations of `$eq` and `$in`, so a missing field matches them.
//!
//! Pure: no IO. Parsing bounds the filter (size and depth) before anything recurses into it,
//! so matching never meets more than [`MAX_FILTER_DEPTH`] levels.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

/// Largest filter, serialized as compact JSON, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of objects and arrays in a filter (the filter object itself is level 1).
pub const MAX_FILTER_DEPTH: usize = 8;

/// A checked filter: the JSON as the organization wrote it, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    source: Value,
    condition: Condition,
}

/// Why a filter is refused: where (a JSON pointer into the filter, `""` for the filter
/// itself) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    /// RFC 6901 pointer of the fault, relative to the filter.
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// The document a filter is matched against: `{"type": event_type, "data": data}`.
pub fn event_document(event_type: &str, data: Value) -> Value {
    let mut document = Map::with_capacity(2);
    document.insert("type".to_owned(), Value::String(event_type.to_owned()));
    document.insert("data".to_owned(), data);
    Value::Object(document)
}

impl Filter {
    /// Checks `value` against the rules of the filter language and its bounds.
    pub fn parse(value: &Value) -> Result<Self, FilterError> {
        let Value::Object(members) = value else {
            return Err(fault("", "must be a JSON object"));
        };
        let bytes = serde_json::to_string(value).map_or(usize::MAX, |text| text.len());
        if bytes > MAX_FILTER_BYTES {
            return Err(fault(
                "",
                format!("must be at most {MAX_FILTER_BYTES} bytes serialized, got {bytes}"),
            ));
        }
        if let Some(pointer) = too_deep(value, 1, "") {
            return Err(fault(
                &pointer,
                format!("nests deeper than {MAX_FILTER_DEPTH} levels"),
            ));
        }
        // The empty filter matches every event; an empty object anywhere else is a mistake.
        let condition = if members.is_empty() {
            Condition::All(Vec::new())
        } else {
            parse_object(members, "")?
        };
        Ok(Self {
            source: value.clone(),
            condition,
        })
    }

    /// The filter as written, for answers and storage.
    pub fn as_json(&self) -> &Value {
        &self.source
    }

    /// Whether the event whose [`event_document`] is `document` passes.
    pub fn matches(&self, document: &Value) -> bool {
        self.condition.holds(Some(document))
    }
}

/// What a filter means, as a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// Every one holds (several keys in one object, `$and`).
    All(Vec<Condition>),
    /// At least one holds (`$or`).
    Any(Vec<Condition>),
    /// It does not hold (`$not`).
    Not(Box<Condition>),
    /// The condition holds of this member of the value (absent when the value is not an
    /// object or has no such member).
    Member(String, Box<Condition>),
    /// The value is present and equal.
    Eq(Value),
    /// The value is absent or different.
    Neq(Value),
    /// The value is present, of the operand's kind, and so ordered against it.
    Compare(Comparison, Value),
    /// The value is present and equals one of these.
    In(Vec<Value>),
    /// The value is absent or equals none of these.
    Nin(Vec<Value>),
    /// The value is present (`true`) or absent (`false`).
    Exists(bool),
    /// The value is a string with this prefix.
    StartsWith(String),
}

/// An ordering operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Condition {
    fn holds(&self, value: Option<&Value>) -> bool {
        match self {
            Condition::All(conditions) => conditions.iter().all(|c| c.holds(value)),
            Condition::Any(conditions) => conditions.iter().any(|c| c.holds(value)),
            Condition::Not(condition) => !condition.holds(value),
            Condition::Member(name, condition) => {
                condition.holds(value.and_then(Value::as_object).and_then(|o| o.get(name)))
            }
            Condition::Eq(operand) => value.is_some_and(|v| json_equal(v, operand)),
            Condition::Neq(operand) => !value.is_some_and(|v| json_equal(v, operand)),
            Condition::Compare(comparison, operand) => value
                .and_then(|v| order(v, operand))
                .is_some_and(|ordering| comparison.accepts(ordering)),
            Condition::In(operands) => {
                value.is_some_and(|v| operands.iter().any(|o| json_equal(v, o)))
            }
            Condition::Nin(operands) => {
                !value.is_some_and(|v| operands.iter().any(|o| json_equal(v, o)))
            }
            Condition::Exists(expected) => value.is_some() == *expected,
            Condition::StartsWith(prefix) => value
                .and_then(Value::as_str)
                .is_some_and(|text| text.starts_with(prefix.as_str())),
        }
    }
}

impl Comparison {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
        }
    }
}

/// JSON equality, except that numbers compare by value (`1` equals `1.0`).
pub fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, x)| b.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => left == right,
    }
}

/// How `value` orders against `operand`: numbers numerically, strings by code point,
/// anything else (or a mix) not at all.
fn order(value: &Value, operand: &Value) -> Option<Ordering> {
    match (value, operand) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

/// Compares two numbers exactly when both are integers (i64 or u64), as floats otherwise.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn fault(pointer: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        pointer: pointer.to_owned(),
        message: message.into(),
    }
}

/// `pointer` extended by one reference token, escaped as RFC 6901 says.
fn child(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// The pointer of the first value nested deeper than [`MAX_FILTER_DEPTH`], if any.
fn too_deep(value: &Value, depth: usize, pointer: &str) -> Option<String> {
    let nested = match value {
        Value::Object(members) => members
            .iter()
            .map(|(key, v)| (child(pointer, key), v))
            .collect::<Vec<_>>(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, v)| (child(pointer, &index.to_string()), v))
            .collect(),
        _ => return None,
    };
    if depth > MAX_FILTER_DEPTH {
        return Some(pointer.to_owned());
    }
    nested
        .iter()
        .find_map(|(path, v)| too_deep(v, depth + 1, path))
}

/// An object of the filter: either all field names or all operators.
fn parse_object(members: &Map<String, Value>, pointer: &str) -> Result<Condition, FilterError> {
    if members.is_empty() {
        return Err(fault(pointer, "must not be empty"));
    }
    let operators = members.keys().filter(|key| key.starts_with('$')).count();
    if operators != 0 && operators != members.len() {
        return Err(fault(pointer, "must not mix operators and field names"));
    }
    let mut conditions = Vec::with_capacity(members.len());
    for (key, value) in members {
        let at = child(pointer, key);
        let condition = if operators == 0 {
            let inner = match value {
                Value::Object(nested) => parse_object(nested, &at)?,
                plain => Condition::Eq(plain.clone()),
            };
            Condition::Member(key.clone(), Box::new(inner))
        } else {
            parse_operator(key, value, &at)?
        };
        conditions.push(condition);
    }
    Ok(if conditions.len() == 1 {
        conditions.remove(0)
    } else {
        Condition::All(conditions)
    })
}

fn parse_operator(name: &str, operand: &Value, pointer: &str) -> Result<Condition, FilterError> {
    let comparison = |comparison| match operand {
        Value::Number(_) | Value::String(_) => Ok(Condition::Compare(comparison, operand.clone())),
        _ => Err(fault(pointer, "must be a number or a string")),
    };
    match name {
        "$eq" => Ok(Condition::Eq(operand.clone())),
        "$neq" => Ok(Condition::Neq(operand.clone())),
        "$gt" => comparison(Comparison::Gt),
        "$gte" => comparison(Comparison::Gte),
        "$lt" => comparison(Comparison::Lt),
        "$lte" => comparison(Comparison::Lte),
        "$in" | "$nin" => match operand {
            Value::Array(items) if !items.is_empty() => Ok(if name == "$in" {
                Condition::In(items.clone())
            } else {
                Condition::Nin(items.clone())
            }),
            _ => Err(fault(pointer, "must be a non-empty array")),
        },
        "$exists" => match operand {
            Value::Bool(expected) => Ok(Condition::Exists(*expected)),
            _ => Err(fault(pointer, "must be true or false")),
        },
        "$startsWith" => match operand {
            Value::String(prefix) => Ok(Condition::StartsWith(prefix.clone())),
            _ => Err(fault(pointer, "must be a string")),
        },
        "$and" | "$or" => {
            let Value::Array(items) = operand else {
                return Err(fault(pointer, "must be a non-empty array of objects"));
            };
            if items.is_empty() {
                return Err(fault(pointer, "must be a non-empty array of objects"));
            }
            let mut conditions = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let at = child(pointer, &index.to_string());
                let Value::Object(members) = item else {
                    return Err(fault(&at, "must be a JSON object"));
                };
                conditions.push(parse_object(members, &at)?);
            }
            Ok(if name == "$and" {
                Condition::All(conditions)
            } else {
                Condition::Any(conditions)
            })
        }
        "$not" => match operand {
            Value::Object(members) => Ok(Condition::Not(Box::new(parse_object(members, pointer)?))),
            _ => Err(fault(pointer, "must be a JSON object")),
        },
        unknown => Err(fault(pointer, format!("unknown operator {unknown}"))),
    }
}

#[cfg(test)]
mod tests;
