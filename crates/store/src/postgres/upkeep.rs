//! Vacuuming the delivery queue and the attempt records when nothing else does.
//!
//! Every delivery is inserted, then updated by its claim and by its settling, and PostgreSQL
//! keeps each replaced row version, and its entry in the claim index (`deliveries_pending_by_endpoint`),
//! until a `VACUUM` removes them. The claim index is ordered by due time, so the entries of
//! finished deliveries pile up ahead of the live ones, and every claim walks past them: after
//! 100,000 deliveries with no vacuum, each of a claim's three index walks read 1,985 index pages
//! (3–14 ms) where a vacuumed index needs one (BENCHMARKS.md, 2026-12-03).
//!
//! Attempt records are only inserted (and deleted by the retention purge), so they leave no
//! dead rows behind, but only a `VACUUM` marks their pages all-visible, and until one does,
//! every count of the feed (`total`) and every statistics read visits the heap row of each
//! attempt it counts rather than reading the index alone: a feed filtered to one outcome
//! counted 20,000 of an organization's attempts in 13.4 ms through their rows, against a
//! fraction of that from the index once vacuumed (BENCHMARKS.md, thirteenth session). Such a
//! vacuum reads only the pages not yet all-visible, the newest, and no index (there is
//! nothing to remove from them), so its cost follows the rows inserted since the last one,
//! not the table's size.
//!
//! Autovacuum does both where it runs, and migrations 0019 and 0021 tune it for these tables,
//! but a server may run with `autovacuum = off`, and per-table settings cannot turn it on
//! there. So the store reads the tables' counters (`pg_stat_user_tables`) every
//! [`CHECK_EVERY`] recorded attempts and vacuums a table itself when they call for it
//! ([`Counters::due`]): where autovacuum keeps up, the check finds too few and does nothing.
//! The vacuum runs on a connection of its own without a statement timeout, under a session
//! advisory lock that one node at a time holds (the others skip their turn), and never holds
//! up a claim or a recording: `VACUUM` takes no lock that inserts or updates wait for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Recorded attempts (each settles or reschedules a delivery) between two looks at the
/// tables' counters.
pub(super) const CHECK_EVERY: u64 = 2_000;

/// The share of the live rows that may be dead before a vacuum, beside the fixed floor: a
/// vacuum that removes dead rows reads every index of the table whole, so on a table of
/// millions of rows it waits for dead rows in proportion (autovacuum's scale factor, set to
/// the same by migration 0019).
const DEAD_SHARE: f64 = 0.05;

/// The key of the session advisory lock a vacuuming node holds.
const VACUUM_LOCK: i64 = 7_302_851_120_413_912;

/// The tables the store vacuums: the delivery queue for its dead rows, the attempt records for
/// their pages that are not yet all-visible (and for the dead rows the retention purge
/// leaves).
const TABLES: [Table; 2] = [
    Table {
        name: "deliveries",
        after_inserts: false,
    },
    Table {
        name: "attempts",
        after_inserts: true,
    },
];

/// A table the store vacuums.
#[derive(Debug, Clone, Copy)]
struct Table {
    name: &'static str,
    /// Whether rows inserted since the last vacuum call for one too. Not for `deliveries`:
    /// each of its rows leaves two dead versions, which call for a vacuum first, and on a
    /// large table a vacuum every few thousand inserts would read its indexes whole each time
    /// for little to remove.
    after_inserts: bool,
}

/// What `pg_stat_user_tables` says of a table.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    live: i64,
    dead: i64,
    /// Rows inserted since the table's last vacuum (`n_ins_since_vacuum`, PostgreSQL 13+).
    inserted: i64,
}

impl Counters {
    /// Whether `table` calls for a vacuum at the floor `rows`: dead rows past `rows` plus
    /// [`DEAD_SHARE`] of the live ones, or, where inserts count, `rows` inserted since the
    /// last vacuum.
    fn due(&self, table: Table, rows: u64) -> bool {
        let dead_due = rows as f64 + DEAD_SHARE * self.live.max(0) as f64;
        let inserted_due = table.after_inserts && self.inserted.max(0) as u64 >= rows;
        self.dead.max(0) as f64 >= dead_due || inserted_due
    }
}

/// Counts recorded attempts and vacuums the queue's and the records' tables when their
/// counters call for it.
#[derive(Debug)]
pub(crate) struct Upkeep {
    connect: PgConnectOptions,
    /// The floor of [`Counters::due`]; 0 leaves vacuuming to autovacuum.
    dead_rows: u64,
    settled: AtomicU64,
    /// Whether a check (and perhaps a vacuum) is on its way.
    busy: AtomicBool,
}

impl Upkeep {
    pub(crate) fn new(connect: PgConnectOptions, dead_rows: u64) -> Self {
        Self {
            connect,
            dead_rows,
            settled: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }

    /// `count` attempts were recorded: every [`CHECK_EVERY`] of them, looks at the tables in
    /// the background.
    pub(crate) fn settled(self: &Arc<Self>, count: usize) {
        if self.dead_rows == 0 {
            return;
        }
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let before = self.settled.fetch_add(count, Ordering::Relaxed);
        if before / CHECK_EVERY == (before + count) / CHECK_EVERY {
            return;
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let upkeep = Arc::clone(self);
        let (connect, dead_rows) = (self.connect.clone(), self.dead_rows);
        tokio::spawn(async move {
            if let Err(error) = vacuum_if_due(connect, dead_rows).await {
                tracing::warn!(%error, "vacuuming Herald's tables failed; trying again later");
            }
            upkeep.busy.store(false, Ordering::Release);
        });
    }
}

/// Vacuums each of [`TABLES`] whose counters call for it at the floor `rows`, unless another
/// node is vacuuming.
async fn vacuum_if_due(connect: PgConnectOptions, rows: u64) -> Result<(), sqlx::Error> {
    // A pool of one connection, closed at the end: every statement runs in one session, which
    // the advisory lock belongs to. (A bare connection would do, but sqlx's executor bounds on
    // `&mut PgConnection` defeat the compiler's proof that the spawned task is `Send`.)
    let session = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await?;
    let vacuumed = vacuum_in(&session, rows).await;
    // Closing ends the session, and its advisory lock with it.
    session.close().await;
    vacuumed
}

async fn vacuum_in(session: &PgPool, rows: u64) -> Result<(), sqlx::Error> {
    let mut due = Vec::new();
    for table in TABLES {
        let counters = counters(session, table.name).await?;
        if let Some(counters) = counters.filter(|counters| counters.due(table, rows)) {
            due.push((table, counters));
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(VACUUM_LOCK)
        .fetch_one(session)
        .await?;
    if !locked {
        return Ok(());
    }
    // A vacuum of a large table may outlast the pool's statement timeout.
    sqlx::query("SET statement_timeout = 0")
        .execute(session)
        .await?;
    for (table, counters) in due {
        let started = Instant::now();
        // Alone in its request: VACUUM refuses to run inside a transaction block. Without
        // truncating the table's empty tail pages: that takes a lock every insert and update
        // waits for, and a table that grows fills them again at once.
        sqlx::query(&format!("VACUUM (TRUNCATE false) {}", table.name))
            .persistent(false)
            .execute(session)
            .await?;
        tracing::info!(
            table = table.name,
            dead_rows = counters.dead,
            inserted_rows = counters.inserted,
            took_ms = started.elapsed().as_millis() as u64,
            "vacuumed a table of Herald's"
        );
    }
    Ok(())
}

/// `table`'s counters, if the table exists.
async fn counters(session: &PgPool, table: &str) -> Result<Option<Counters>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT n_live_tup, n_dead_tup, n_ins_since_vacuum FROM pg_stat_user_tables
         WHERE relid = to_regclass($1)",
    )
    .bind(table)
    .fetch_optional(session)
    .await?;
    row.map(|row| {
        Ok(Counters {
            live: row.try_get("n_live_tup")?,
            dead: row.try_get("n_dead_tup")?,
            inserted: row.try_get("n_ins_since_vacuum")?,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: u64 = 10_000;

    fn counters(live: i64, dead: i64, inserted: i64) -> Counters {
        Counters {
            live,
            dead,
            inserted,
        }
    }

    #[test]
    fn the_queue_is_vacuumed_for_its_dead_rows_past_the_floor_and_a_share_of_the_live() {
        let [deliveries, _] = TABLES;
        assert!(!counters(0, 9_999, 50_000).due(deliveries, FLOOR));
        assert!(counters(0, 10_000, 0).due(deliveries, FLOOR));
        // A million live rows raise the bar by 50,000.
        assert!(!counters(1_000_000, 59_999, 0).due(deliveries, FLOOR));
        assert!(counters(1_000_000, 60_000, 0).due(deliveries, FLOOR));
    }

    #[test]
    fn the_records_are_vacuumed_for_their_new_rows_whatever_the_table_holds() {
        let [_, attempts] = TABLES;
        assert!(!counters(10_000_000, 0, 9_999).due(attempts, FLOOR));
        assert!(counters(10_000_000, 0, 10_000).due(attempts, FLOOR));
        // The retention purge's dead rows count as the queue's do.
        assert!(counters(1_000_000, 60_000, 0).due(attempts, FLOOR));
        assert!(!counters(1_000_000, 59_999, 0).due(attempts, FLOOR));
    }
}
