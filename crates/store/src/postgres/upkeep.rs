//! Vacuuming the delivery queue when nothing else does.
//!
//! Every delivery is inserted, then updated by its claim and by its settling, and PostgreSQL
//! keeps each replaced row version, and its entry in the claim index (`deliveries_pending_by_endpoint`),
//! until a `VACUUM` removes them. The claim index is ordered by due time, so the entries of
//! finished deliveries pile up ahead of the live ones, and every claim walks past them: after
//! 100,000 deliveries with no vacuum, each of a claim's three index walks read 1,985 index pages
//! (3–14 ms) where a vacuumed index needs one (BENCHMARKS.md, 2026-12-03). Autovacuum prevents
//! that when it runs, and migration 0019 tunes it for this table, but a server may run with
//! `autovacuum = off`, and per-table settings cannot turn it on there.
//!
//! So the store checks the table's dead rows (`pg_stat_user_tables.n_dead_tup`) every
//! [`CHECK_EVERY`] settled deliveries and vacuums it itself when they pass
//! [`PostgresOptions::vacuum_after_dead_rows`](super::PostgresOptions) plus
//! [`DEAD_SHARE`] of the live rows: where autovacuum keeps up, the check finds too few and does
//! nothing. The vacuum runs on a connection of its own without a statement timeout, under a
//! session advisory lock that one node at a time holds (the others skip their turn), and never
//! holds up a claim or a recording: `VACUUM` takes no lock that inserts or updates wait for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Settled deliveries between two looks at the table's dead rows.
pub(super) const CHECK_EVERY: u64 = 2_000;

/// The share of the live rows that may be dead before a vacuum, beside the fixed floor: the
/// vacuum reads every index of the table whole, so on a table of millions of rows it waits for
/// dead rows in proportion (autovacuum's scale factor, set to the same by migration 0019).
const DEAD_SHARE: f64 = 0.05;

/// The key of the session advisory lock a vacuuming node holds.
const VACUUM_LOCK: i64 = 7_302_851_120_413_912;

/// Counts settled deliveries and vacuums the queue's table when its dead rows call for it.
#[derive(Debug)]
pub(crate) struct Upkeep {
    connect: PgConnectOptions,
    /// Dead rows above which the table is vacuumed (plus [`DEAD_SHARE`] of the live ones);
    /// 0 leaves vacuuming to autovacuum.
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

    /// `count` deliveries were settled: every [`CHECK_EVERY`] of them, looks at the table in
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
                tracing::warn!(%error, "vacuuming the delivery queue failed; trying again later");
            }
            upkeep.busy.store(false, Ordering::Release);
        });
    }
}

/// Vacuums `deliveries` if its dead rows call for it (more than `dead_rows` plus [`DEAD_SHARE`]
/// of the live ones) and no other node is vacuuming it.
async fn vacuum_if_due(connect: PgConnectOptions, dead_rows: u64) -> Result<(), sqlx::Error> {
    // A pool of one connection, closed at the end: every statement runs in one session, which
    // the advisory lock belongs to. (A bare connection would do, but sqlx's executor bounds on
    // `&mut PgConnection` defeat the compiler's proof that the spawned task is `Send`.)
    let session = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await?;
    let vacuumed = vacuum_in(&session, dead_rows).await;
    // Closing ends the session, and its advisory lock with it.
    session.close().await;
    vacuumed
}

async fn vacuum_in(session: &PgPool, dead_rows: u64) -> Result<(), sqlx::Error> {
    let counts = sqlx::query(
        "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables
         WHERE relid = to_regclass('deliveries')",
    )
    .fetch_optional(session)
    .await?;
    let Some(counts) = counts else {
        return Ok(());
    };
    let live: i64 = counts.try_get("n_live_tup")?;
    let dead: i64 = counts.try_get("n_dead_tup")?;
    let due = dead_rows as f64 + DEAD_SHARE * live.max(0) as f64;
    if (dead.max(0) as f64) < due {
        return Ok(());
    }
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(VACUUM_LOCK)
        .fetch_one(session)
        .await?;
    if !locked {
        return Ok(());
    }
    let started = Instant::now();
    // A vacuum of a large table may outlast the pool's statement timeout.
    sqlx::query("SET statement_timeout = 0")
        .execute(session)
        .await?;
    // Alone in its request: VACUUM refuses to run inside a transaction block. Without
    // truncating the table's empty tail pages: that takes a lock every insert and update waits
    // for, and a queue's table fills them again at once.
    sqlx::query("VACUUM (TRUNCATE false) deliveries")
        .persistent(false)
        .execute(session)
        .await?;
    tracing::info!(
        dead_rows = dead,
        took_ms = started.elapsed().as_millis() as u64,
        "vacuumed the delivery queue"
    );
    Ok(())
}
