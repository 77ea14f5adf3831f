//! Cursor pagination. A cursor is an opaque string to callers; inside it is the id of the
//! last item returned, so pages stay stable while new rows are inserted (new rows sort first
//! and never shift older ones).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// A position in a newest-first list: the id of the last item already returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(Uuid);

/// A cursor string that Herald did not make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cursor")]
pub struct InvalidCursor;

impl Cursor {
    pub(crate) fn after(id: Uuid) -> Self {
        Self(id)
    }

    pub(crate) fn id(&self) -> Uuid {
        self.0
    }

    /// Parses a cursor from its wire form.
    pub fn parse(text: &str) -> Result<Self, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidCursor)?;
        Uuid::from_slice(&bytes)
            .map(Self)
            .map_err(|_| InvalidCursor)
    }

    /// The wire form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }
}

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Most items to return.
    pub limit: u32,
    /// Continue after this position; `None` starts at the newest.
    pub cursor: Option<Cursor>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// How many items match in all, across pages.
    pub total: u64,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only proves that
    /// another page exists.
    pub(crate) fn from_rows(
        mut rows: Vec<T>,
        limit: u32,
        total: u64,
        id_of: impl Fn(&T) -> Uuid,
    ) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor::after(id_of(last)))
        } else {
            None
        };
        Self {
            items: rows,
            total,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor::after(Uuid::now_v7());
        assert_eq!(Cursor::parse(&cursor.encode()), Ok(cursor));
        assert_eq!(Cursor::parse("not a cursor!"), Err(InvalidCursor));
        assert_eq!(Cursor::parse("AAAA"), Err(InvalidCursor));
    }
}
