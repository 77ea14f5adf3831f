//! Wire shapes shared by several routes: list envelopes and id parsing.

use std::str::FromStr;

use herald_domain::FieldErrors;
use herald_store::{Cursor, Page, PageRequest};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::QueryParams;

/// The `meta` member of every list response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListMeta {
    /// How many items match the filters in all.
    pub total: u64,
    /// The page size used.
    pub limit: u32,
    /// Always 0: lists are cursor-paginated.
    pub offset: u32,
    /// Pass as `cursor` to read the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A list response: `{"success": true, "data": [...], "meta": {...}}`.
#[derive(Debug, Serialize)]
pub struct ListResponse<T> {
    /// Always `true`.
    pub success: bool,
    /// The page's items.
    pub data: Vec<T>,
    /// Counts and the continuation cursor.
    pub meta: ListMeta,
}

impl<T> ListResponse<T> {
    /// Wraps a store page, converting each item to its wire form.
    pub fn from_page<S>(page: Page<S>, limit: u32, convert: impl Fn(S) -> T) -> Self {
        Self {
            success: true,
            data: page.items.into_iter().map(convert).collect(),
            meta: ListMeta {
                total: page.total,
                limit,
                offset: 0,
                next_cursor: page.next_cursor.map(|c| c.encode()),
            },
        }
    }
}

/// Reads `limit` (within `1..=max`, default `default`) and `cursor` from the query, recording
/// problems into `errors`.
pub fn page_request(
    query: &mut QueryParams,
    default: u32,
    max: u32,
    errors: &mut FieldErrors,
) -> PageRequest {
    let limit = page_limit(query, default, max, errors);
    let cursor = query
        .take("cursor")
        .and_then(|text| match Cursor::parse(&text) {
            Ok(cursor) => Some(cursor),
            Err(_) => {
                errors.insert("cursor".to_owned(), "malformed cursor".to_owned());
                None
            }
        });
    PageRequest { limit, cursor }
}

/// The `limit` query parameter: 1 to `max`, `default` when absent; a bad one is recorded in
/// `errors`.
pub fn page_limit(
    query: &mut QueryParams,
    default: u32,
    max: u32,
    errors: &mut FieldErrors,
) -> u32 {
    match query.take("limit") {
        None => default,
        Some(text) => match text.parse::<u32>() {
            Ok(limit) if (1..=max).contains(&limit) => limit,
            _ => {
                errors.insert(
                    "limit".to_owned(),
                    format!("must be an integer from 1 to {max}"),
                );
                default
            }
        },
    }
}

/// Parses a path id; anything malformed is simply not found, so ids cannot be probed.
pub fn path_id<T: FromStr>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound)
}
