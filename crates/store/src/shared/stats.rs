//! An endpoint's stats (docs/api.md#endpoint-stats), read from the attempts the deliveries
//! feed shows. Every read walks `attempts_for_stats` (migration 0014) or the pending
//! deliveries' partial index, so its cost follows the endpoint's window, never the table
//! (docs/operations.md#the-stats-query). Turning the latencies into percentiles is the
//! caller's, so both backends give the same figures from the same rows.

use herald_domain::{EndpointId, Timestamp};

use super::only;
use crate::backend::{Backend, Pool};
use crate::rows::ReadRow;
use crate::statement::Statement;
use crate::{EndpointStats, MAX_LATENCY_SAMPLE, StoreError};

pub(super) async fn endpoint_stats<B: Backend>(
    store: &B,
    endpoint_id: EndpointId,
    since: Timestamp,
) -> Result<EndpointStats, StoreError> {
    let endpoint = endpoint_id.as_uuid();
    // One statement, one round trip: the window's counts (one index range per outcome), the
    // newest success (one descent of the same index) and the pending deliveries (their
    // partial index).
    let counts = Statement::new(
        "SELECT COUNT(*) FILTER (WHERE outcome = 'success') AS success,
                COUNT(*) FILTER (WHERE outcome = 'retry') AS retry,
                COUNT(*) FILTER (WHERE outcome = 'dead') AS dead,
                (SELECT occurred_at FROM attempts
                  WHERE endpoint_id = ? AND outcome = 'success'
                  ORDER BY occurred_at DESC LIMIT 1) AS last_success_at,
                (SELECT COUNT(*) FROM deliveries
                  WHERE endpoint_id = ? AND status = 'pending') AS pending
         FROM attempts
         WHERE endpoint_id = ? AND outcome IN ('success', 'retry', 'dead') AND occurred_at >= ?",
    )
    .bind(endpoint)
    .bind(endpoint)
    .bind(endpoint)
    .bind(since.as_micros());
    let row = only(store.run(Pool::Read, counts).await?)?;
    // The newest attempts of each outcome, newest first along the index; the newest
    // `MAX_LATENCY_SAMPLE` of all three are among them.
    let newest = |outcome: &'static str| {
        format!(
            "SELECT occurred_at, response_time_ms FROM (
               SELECT occurred_at, response_time_ms FROM attempts
               WHERE endpoint_id = ? AND outcome = '{outcome}' AND occurred_at >= ?
               ORDER BY occurred_at DESC LIMIT ?) AS {outcome}_attempts"
        )
    };
    let mut latencies = Statement::new(format!(
        "{} UNION ALL {} UNION ALL {}",
        newest("success"),
        newest("retry"),
        newest("dead")
    ));
    for _ in 0..3 {
        latencies = latencies
            .bind(endpoint)
            .bind(since.as_micros())
            .bind(i64::from(MAX_LATENCY_SAMPLE));
    }
    let mut sample = store
        .run(Pool::Read, latencies)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.integer("occurred_at")?,
                row.integer("response_time_ms")?,
            ))
        })
        .collect::<Result<Vec<(i64, i64)>, StoreError>>()?;
    sample.sort_unstable_by(|a, b| b.cmp(a));
    sample.truncate(MAX_LATENCY_SAMPLE as usize);
    Ok(EndpointStats {
        success: row.integer("success")?.unsigned_abs(),
        retry: row.integer("retry")?.unsigned_abs(),
        dead: row.integer("dead")?.unsigned_abs(),
        pending: row.integer("pending")?.unsigned_abs(),
        last_success_at: row
            .optional_integer("last_success_at")?
            .map(Timestamp::from_micros),
        latencies_ms: sample
            .into_iter()
            .map(|(_, latency)| latency.unsigned_abs())
            .collect(),
    })
}
