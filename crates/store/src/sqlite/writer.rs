//! The one writer connection's transactions, kept in step with SQLite.
//!
//! sqlx counts a connection's transaction depth itself and lowers it only when its `COMMIT` or
//! `ROLLBACK` succeeds. SQLite, on a full disk or an I/O error (`SQLITE_FULL`, `SQLITE_IOERR`,
//! …), may roll the transaction back by itself, so the `ROLLBACK` that follows fails ("no
//! transaction is active") and sqlx goes on believing the connection is inside a transaction:
//! every later `begin` becomes a `SAVEPOINT`, every commit a `RELEASE` inside an outer
//! transaction that is never committed, and the writes that callers were told are stored are
//! thrown away at the next error. On a full disk that acknowledged events it never stored.
//!
//! [`WriteTx`] therefore does not use sqlx's transactions: it runs `BEGIN IMMEDIATE` and
//! `COMMIT` itself, so a connection somehow still inside a transaction fails loudly ("cannot
//! start a transaction within a transaction") instead of nesting, and a transaction that does
//! not end in a successful `COMMIT` (an error, an early return, a cancelled future) discards
//! its connection: closing it makes SQLite roll back whatever is left, and the pool opens a
//! fresh connection for the next writer. Errors are rare, so the reopen costs nothing that
//! matters; an early return that is not an error rolls back (`WriteTransaction::rollback`) to
//! keep its connection.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use crate::backend::WriteTransaction;
use crate::health::WriteHealth;
use crate::statement::Statement;
use crate::wakeup::LocalWakeup;
use crate::{StoreError, map_error};

/// A write transaction on the writer connection.
pub(crate) struct WriteTx {
    connection: PoolConnection<Sqlite>,
    health: Arc<WriteHealth>,
    /// Whether the transaction ended cleanly, so the connection may serve again.
    ended: bool,
    /// Woken at the commit when the transaction stored pending deliveries.
    wakeup: Arc<LocalWakeup>,
    stored_deliveries: bool,
}

impl WriteTx {
    /// Takes the writer and begins a transaction that holds SQLite's write lock from its first
    /// statement (one writer per process anyway; `IMMEDIATE` makes a stale state fail here).
    pub(crate) async fn begin(
        writer: &SqlitePool,
        health: &Arc<WriteHealth>,
        wakeup: &Arc<LocalWakeup>,
    ) -> Result<WriteTx, StoreError> {
        let connection = match writer.acquire().await {
            Ok(connection) => connection,
            Err(error) => {
                let error = map_error(error);
                health.failed(&error);
                return Err(error);
            }
        };
        // The transaction exists, unended, before `BEGIN` is sent: if this future is dropped
        // while `BEGIN` runs (a client that goes away cancels its handler), sqlx's worker may
        // still execute it, and only `Drop` closing the connection keeps a connection inside
        // a transaction from going back to the pool (the next `BEGIN IMMEDIATE` failed with
        // "cannot start a transaction within a transaction").
        let mut tx = WriteTx {
            connection,
            health: Arc::clone(health),
            ended: false,
            wakeup: Arc::clone(wakeup),
            stored_deliveries: false,
        };
        if let Err(error) = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *tx.connection)
            .await
        {
            let error = map_error(error);
            health.failed(&error);
            return Err(error);
        }
        Ok(tx)
    }
}

#[async_trait]
impl WriteTransaction for WriteTx {
    type Row = SqliteRow;

    async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, StoreError> {
        statement.execute(&mut *self.connection).await
    }

    async fn fetch(&mut self, statement: Statement<'_>) -> Result<Vec<SqliteRow>, StoreError> {
        statement.fetch_all(&mut *self.connection).await
    }

    /// Commits. On failure the connection is discarded (by `Drop`), whatever SQLite did with
    /// the transaction.
    async fn commit(mut self) -> Result<(), StoreError> {
        let committed = sqlx::query("COMMIT")
            .execute(&mut *self.connection)
            .await
            .map(|_| ())
            .map_err(map_error);
        self.ended = committed.is_ok();
        if self.ended && self.stored_deliveries {
            self.wakeup.wake();
        }
        self.health.observe(committed)
    }

    /// Rolls back a transaction the caller decided not to commit (or whose rule refused the
    /// change), keeping the connection for the next writer when that succeeds.
    async fn rollback(mut self) -> Result<(), StoreError> {
        let rolled_back = sqlx::query("ROLLBACK")
            .execute(&mut *self.connection)
            .await
            .map(|_| ())
            .map_err(map_error);
        self.ended = rolled_back.is_ok();
        rolled_back
    }

    fn announce_new_deliveries(&mut self) {
        self.stored_deliveries = true;
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.ended {
            // Closing the connection rolls back what SQLite still holds of the transaction;
            // the pool replaces it for the next writer.
            self.connection.close_on_drop();
        }
    }
}
