//! Months of history written straight into Herald's schema, while no Herald runs: the
//! `history` workload's database. Publishing ten million events through the API would take
//! longer than the workload may (hours on this machine), so the rows are made by SQL, one
//! `INSERT … SELECT` over a numbered series per chunk, as Herald's own writes would leave them:
//! one event per row number, one finished delivery of it to one endpoint, and one attempt
//! record of that delivery (every 20th dead with a 500, the others successes with a 200).
//!
//! The organizations and endpoints are made through the API first (their secrets are sealed
//! with Herald's key, which SQL cannot do); the rows only reference them. Ids are UUIDv7-shaped
//! (48 bits of milliseconds, then the row number), so they sort by time as Herald's do, and
//! the history lies in the 20 days before the run, within both default retention periods, so
//! the retention purge leaves it alone (until `history`'s last phase restarts Herald with a
//! retention of 10 days, which expires about half of it). On PostgreSQL, `VACUUM (ANALYZE)` follows, as autovacuum
//! would have done long before any query of months-old rows (this machine's server runs with
//! `autovacuum = off`); Herald never runs `ANALYZE` on SQLite, so neither does this.
//!
//! This is the one place the harness writes Herald's tables; it knows their columns as of
//! migration 0017 and fails loudly (an SQL error) when they change.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};

use crate::api::EVENT_TYPE;

/// Rows per `INSERT … SELECT`, so each transaction and its WAL stay bounded.
const CHUNK: u64 = 250_000;
/// How far back the history reaches.
const SPAN: Duration = Duration::from_secs(20 * 24 * 3600);
/// The newest history row is this old, so everything the run does comes after it.
const GAP: Duration = Duration::from_secs(3600);

/// An endpoint that history is written for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) org_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) url: String,
}

/// Writes `rows` events, deliveries and attempts spread evenly over `targets` into the
/// database at `url` (`sqlite://…` or `postgres://…`); how long it took.
pub(crate) async fn history(url: &str, targets: &[Target], rows: u64) -> anyhow::Result<Duration> {
    anyhow::ensure!(!targets.is_empty(), "history needs at least one endpoint");
    let started = Instant::now();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_micros() as i64;
    let newest = now_us - GAP.as_micros() as i64;
    let step = (SPAN.as_micros() as i64 / rows.max(1) as i64).max(1);
    let oldest = newest - step * rows as i64;
    let plan = Plan {
        targets: targets.len() as u64,
        oldest,
        step,
    };
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url)
            .await
            .context("opening the SQLite database")?;
        connection
            .execute("PRAGMA synchronous = NORMAL")
            .await
            .context("PRAGMA synchronous")?;
        connection
            .execute("CREATE TEMP TABLE bench_targets (n INTEGER PRIMARY KEY, org_id BLOB, endpoint_id BLOB, url TEXT)")
            .await
            .context("creating the targets table")?;
        for (n, target) in targets.iter().enumerate() {
            sqlx::query("INSERT INTO bench_targets VALUES (?, unhex(replace(?, '-', '')), unhex(replace(?, '-', '')), ?)")
                .bind(n as i64)
                .bind(&target.org_id)
                .bind(&target.endpoint_id)
                .bind(&target.url)
                .execute(&mut connection)
                .await
                .context("filling the targets table")?;
        }
        for (first, last) in chunks(rows) {
            let mut tx = connection.begin().await.context("BEGIN")?;
            for statement in plan.statements(Dialect::Sqlite, first, last) {
                tx.execute(statement.as_str())
                    .await
                    .with_context(|| format!("preloading rows {first}..{last}"))?;
            }
            tx.commit().await.context("COMMIT")?;
            progress(last, rows, started);
        }
        connection
            .execute("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .context("checkpointing")?;
        connection.close().await.context("closing SQLite")?;
    } else {
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        connection
            .execute("CREATE TEMP TABLE bench_targets (n BIGINT PRIMARY KEY, org_id UUID, endpoint_id UUID, url TEXT)")
            .await
            .context("creating the targets table")?;
        for (n, target) in targets.iter().enumerate() {
            sqlx::query("INSERT INTO bench_targets VALUES ($1, $2::uuid, $3::uuid, $4)")
                .bind(n as i64)
                .bind(&target.org_id)
                .bind(&target.endpoint_id)
                .bind(&target.url)
                .execute(&mut connection)
                .await
                .context("filling the targets table")?;
        }
        for (first, last) in chunks(rows) {
            let mut tx = connection.begin().await.context("BEGIN")?;
            for statement in plan.statements(Dialect::Postgres, first, last) {
                tx.execute(statement.as_str())
                    .await
                    .with_context(|| format!("preloading rows {first}..{last}"))?;
            }
            tx.commit().await.context("COMMIT")?;
            progress(last, rows, started);
        }
        connection
            .execute("VACUUM (ANALYZE) events, deliveries, attempts")
            .await
            .context("VACUUM (ANALYZE)")?;
        connection.close().await.context("closing PostgreSQL")?;
    }
    Ok(started.elapsed())
}

#[derive(Debug, Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// Where the rows go in time.
struct Plan {
    targets: u64,
    oldest: i64,
    step: i64,
}

impl Plan {
    /// The three `INSERT … SELECT`s of rows `first..last`.
    fn statements(&self, dialect: Dialect, first: u64, last: u64) -> [String; 3] {
        let Self {
            targets,
            oldest,
            step,
        } = self;
        let (series, id): (String, fn(u8) -> String) = match dialect {
            Dialect::Sqlite => (
                format!(
                    "WITH RECURSIVE s(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM s WHERE i < {}) \
                     SELECT i, {oldest} + i * {step} AS at FROM s",
                    last - 1
                ),
                |kind: u8| format!("unhex(printf('%012x7%03x8%015x', r.at / 1000, {kind}, r.i))"),
            ),
            Dialect::Postgres => (
                format!(
                    "SELECT i, {oldest} + i * {step} AS at FROM generate_series({first}::bigint, {}::bigint) AS i",
                    last - 1
                ),
                |kind: u8| {
                    format!(
                        "(lpad(to_hex(r.at / 1000), 12, '0') || '7' || lpad(to_hex({kind}), 3, '0') || '8' || lpad(to_hex(r.i), 15, '0'))::uuid"
                    )
                },
            ),
        };
        let rows = format!("({series}) AS r JOIN bench_targets t ON t.n = r.i % {targets}");
        let (event, delivery, attempt) = (id(1), id(2), id(3));
        let dead = "r.i % 20 = 19";
        let data = "'{\"wallet_id\":\"wal_' || r.i || '\",\"balance\":\"3.20\",\"threshold\":\"5.00\",\"currency\":\"EUR\",\"n\":' || r.i || '}'";
        let headers = "'{\"content-type\":\"application/json\",\"user-agent\":\"Herald-Webhooks/1.0\",\"webhook-id\":\"msg_' || r.i || '\",\"webhook-timestamp\":\"' || (r.at / 1000000) || '\",\"webhook-signature\":\"v1,Q2hlY2tzdW0gb2YgdGhlIGJvZHkgd2l0aCB0aGUgc2VjcmV0IGtleQ==\"}'";
        [
            format!(
                "INSERT INTO events (id, org_id, event_type, data, idempotency_key, origin, created_at) \
                 SELECT {event}, t.org_id, '{EVENT_TYPE}', {data}, NULL, 'publish', r.at FROM {rows}"
            ),
            format!(
                "INSERT INTO deliveries (id, org_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at) \
                 SELECT {delivery}, t.org_id, {event}, t.endpoint_id, \
                 CASE WHEN {dead} THEN 'dead' ELSE 'success' END, 1, r.at, r.at FROM {rows}"
            ),
            format!(
                "INSERT INTO attempts (id, org_id, delivery_id, endpoint_id, event_id, event_type, url, attempt, \
                 outcome, response_status, response_time_ms, request_body_sha256, request_body_bytes, \
                 request_headers, response_body_excerpt, error, next_attempt_at, occurred_at) \
                 SELECT {attempt}, t.org_id, {delivery}, t.endpoint_id, {event}, '{EVENT_TYPE}', t.url, 1, \
                 CASE WHEN {dead} THEN 'dead' ELSE 'success' END, \
                 CASE WHEN {dead} THEN 500 ELSE 200 END, 3 + r.i % 97, \
                 '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 118, {headers}, \
                 CASE WHEN {dead} THEN 'internal error' ELSE 'ok' END, \
                 CASE WHEN {dead} THEN 'HTTP 500' ELSE NULL END, NULL, r.at + 2000 FROM {rows}"
            ),
        ]
    }
}

/// `0..rows` in [`CHUNK`]s.
fn chunks(rows: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..rows.div_ceil(CHUNK)).map(move |n| (n * CHUNK, ((n + 1) * CHUNK).min(rows)))
}

fn progress(done: u64, rows: u64, started: Instant) {
    if done == rows || done.is_multiple_of(CHUNK * 8) {
        eprintln!(
            "herald-bench:   preloaded {done} of {rows} rows in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
}
