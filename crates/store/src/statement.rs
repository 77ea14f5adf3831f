//! One SQL text per statement, for both backends.
//!
//! Herald's statements are written once, with `?` for each bound value, and carry their values
//! as [`Arg`]s. A backend runs a [`Statement`] on its own connections: SQLite takes the text as
//! it is, PostgreSQL numbers the placeholders (`$1`, `$2`, …) first. Where the SQL itself must
//! differ, the statement asks [`Dialect`] for the spelling. No `?` may appear in a statement's
//! text other than as a placeholder (none of Herald's statements has one in a literal).

use std::borrow::Cow;
use std::fmt::Write as _;

use sqlx::database::HasStatementCache;
use sqlx::query::Query;
use sqlx::{Database, Executor, IntoArguments, Postgres, Sqlite};
use uuid::Uuid;

use crate::sql::Dialect;
use crate::{StoreError, map_error};

/// A value bound to a placeholder; `None` binds SQL `NULL` of the variant's type.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Uuid(Option<Uuid>),
    Bool(Option<bool>),
    Text(Option<Cow<'a, str>>),
    Bytes(Option<Cow<'a, [u8]>>),
}

/// A statement and the values of its placeholders, in order.
#[derive(Debug, Clone)]
pub(crate) struct Statement<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
    /// Whether the connection keeps it prepared (`sql::worth_preparing`).
    persistent: bool,
}

impl<'a> Statement<'a> {
    /// A statement whose text is `sql`, cached prepared by default.
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
            persistent: true,
        }
    }

    /// Binds the next placeholder already written in the text.
    pub(crate) fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends text.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn push_bind(&mut self, value: impl Into<Arg<'a>>) -> &mut Self {
        self.sql.push('?');
        self.args.push(value.into());
        self
    }

    /// Appends `?, ?, …`, one placeholder per value.
    pub(crate) fn push_list(&mut self, values: impl IntoIterator<Item = Arg<'a>>) -> &mut Self {
        for (position, value) in values.into_iter().enumerate() {
            if position > 0 {
                self.sql.push_str(", ");
            }
            self.push_bind(value);
        }
        self
    }

    /// Appends the rows of a `VALUES` list: `(?, ?), (?, ?), …`.
    pub(crate) fn push_rows<T, const N: usize>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        row: impl Fn(T) -> [Arg<'a>; N],
    ) -> &mut Self {
        for (position, item) in items.into_iter().enumerate() {
            self.push(if position > 0 { ", (" } else { "(" });
            self.push_list(row(item)).push(")");
        }
        self
    }

    /// Whether the connection keeps the statement prepared after this use.
    pub(crate) fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Runs the statement on `executor` and returns every row.
    pub(crate) async fn fetch_all<'c, DB, E>(&self, executor: E) -> Result<Vec<DB::Row>, StoreError>
    where
        DB: Driver,
        E: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    {
        let sql = self.text(DB::DIALECT);
        self.query::<DB>(&sql)
            .fetch_all(executor)
            .await
            .map_err(map_error)
    }

    /// Runs the statement on `executor` and returns how many rows it changed.
    pub(crate) async fn execute<'c, DB, E>(&self, executor: E) -> Result<u64, StoreError>
    where
        DB: Driver,
        E: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    {
        let sql = self.text(DB::DIALECT);
        let done = self.query::<DB>(&sql).execute(executor).await;
        done.map(|done| DB::rows_affected(&done)).map_err(map_error)
    }

    /// The text as `dialect` spells placeholders: `?` for SQLite, `$1`, `$2`, … for PostgreSQL.
    fn text(&self, dialect: Dialect) -> Cow<'_, str> {
        match dialect {
            Dialect::Sqlite => Cow::Borrowed(&self.sql),
            Dialect::Postgres => {
                let mut numbered = String::with_capacity(self.sql.len() + self.args.len() * 2);
                let mut pieces = self.sql.split('?');
                numbered.push_str(pieces.next().unwrap_or_default());
                for (number, piece) in (1..).zip(pieces) {
                    write!(numbered, "${number}{piece}").expect("writing to a string");
                }
                Cow::Owned(numbered)
            }
        }
    }

    fn query<'q, DB: Driver>(&'q self, sql: &'q str) -> Query<'q, DB, DB::Arguments<'q>> {
        let query = sqlx::query(sql).persistent(self.persistent);
        self.args.iter().fold(query, DB::bind)
    }
}

/// A sqlx database Herald runs statements on.
pub(crate) trait Driver: Database + HasStatementCache {
    /// How its SQL is spelled.
    const DIALECT: Dialect;
    /// Binds one argument.
    fn bind<'q>(
        query: Query<'q, Self, Self::Arguments<'q>>,
        arg: &'q Arg<'_>,
    ) -> Query<'q, Self, Self::Arguments<'q>>;
    /// The rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// The two drivers bind alike; a macro because sqlx's `Encode` bounds cannot be stated once
/// for any database without naming every argument lifetime.
macro_rules! driver {
    ($db:ty, $dialect:expr) => {
        impl Driver for $db {
            const DIALECT: Dialect = $dialect;
            fn bind<'q>(
                query: Query<'q, Self, Self::Arguments<'q>>,
                arg: &'q Arg<'_>,
            ) -> Query<'q, Self, Self::Arguments<'q>> {
                match arg {
                    Arg::Int(value) => query.bind(*value),
                    Arg::Uuid(value) => query.bind(*value),
                    Arg::Bool(value) => query.bind(*value),
                    Arg::Text(value) => query.bind(value.as_deref()),
                    Arg::Bytes(value) => query.bind(value.as_deref()),
                }
            }
            fn rows_affected(result: &Self::QueryResult) -> u64 {
                result.rows_affected()
            }
        }
    };
}
driver!(Sqlite, Dialect::Sqlite);
driver!(Postgres, Dialect::Postgres);

macro_rules! arg_from {
    ($variant:ident: $($type:ty => |$value:ident| $convert:expr),+ $(,)?) => {$(
        impl<'a> From<$type> for Arg<'a> {
            fn from($value: $type) -> Self {
                Arg::$variant($convert)
            }
        }
    )+};
}
arg_from!(Int: i64 => |value| Some(value), Option<i64> => |value| value);
arg_from!(Uuid: Uuid => |value| Some(value), Option<Uuid> => |value| value);
arg_from!(Bool: bool => |value| Some(value), Option<bool> => |value| value);
arg_from!(Text:
    &'a str => |value| Some(Cow::Borrowed(value)),
    &'a String => |value| Some(Cow::Borrowed(value)),
    String => |value| Some(Cow::Owned(value)),
    Option<&'a str> => |value| value.map(Cow::Borrowed),
    &'a Option<String> => |value| value.as_deref().map(Cow::Borrowed),
    Option<String> => |value| value.map(Cow::Owned),
);
arg_from!(Bytes:
    &'a [u8] => |value| Some(Cow::Borrowed(value)),
    Vec<u8> => |value| Some(Cow::Owned(value)),
    Option<Vec<u8>> => |value| value.map(Cow::Owned),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_the_placeholders_and_sqlite_keeps_them() {
        let mut statement = Statement::new("SELECT a FROM t WHERE b = ? AND c IN (");
        statement
            .push_list([Arg::from(1_i64), Arg::from(2_i64)])
            .push(")");
        assert_eq!(
            statement.text(Dialect::Postgres),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(
            statement.text(Dialect::Sqlite),
            "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
        );
    }
}
