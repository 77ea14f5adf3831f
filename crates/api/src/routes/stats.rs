//! An endpoint's stats, `GET /v1/webhooks/{id}/stats` (docs/api.md#endpoint-stats): its
//! attempts of the last hour, day or week by outcome, their latency percentiles, its pending
//! deliveries and its last success, read from the records the deliveries feed shows. Cheap
//! enough for every page view of the portal (docs/operations.md#the-stats-query).

use axum::Json;
use axum::extract::State;
use herald_domain::{EndpointId, FieldErrors, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use crate::docs::CommonErrors;
use crate::error::ApiError;
use crate::extract::{Authorized, PathId, QueryParams, ReadWebhooks};
use crate::state::AppState;
use crate::wire::path_id;

/// The windows the stats cover, by name, and their length.
const WINDOWS: [(&str, chrono::Duration); 3] = [
    ("1h", chrono::Duration::hours(1)),
    ("24h", chrono::Duration::hours(24)),
    ("7d", chrono::Duration::days(7)),
];
/// The window when none is asked for.
const DEFAULT_WINDOW: &str = "24h";

/// An endpoint's attempts in the window, by outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptCounts {
    /// Attempts answered with a 2xx in time.
    pub success: u64,
    /// Failed attempts after which another was scheduled.
    pub retry: u64,
    /// Failed attempts that ended their delivery.
    pub dead: u64,
}

/// Response-time percentiles of the window's attempts, `null` when it has none.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyPercentiles {
    /// The median, in milliseconds.
    pub p50: Option<u64>,
    /// The 95th percentile, in milliseconds.
    pub p95: Option<u64>,
    /// The 99th percentile, in milliseconds.
    pub p99: Option<u64>,
}

/// An endpoint's stats.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointStatsResponse {
    /// The window: `1h`, `24h` or `7d`, ending now.
    #[schema(pattern = "^(1h|24h|7d)$")]
    pub window: &'static str,
    /// The window's attempts by outcome, as the deliveries feed lists them.
    pub attempts: AttemptCounts,
    /// Nearest-rank percentiles of the response times of the window's newest 10,000 attempts
    /// (all of them below that), failures included.
    pub latency_ms: LatencyPercentiles,
    /// The endpoint's deliveries waiting for an attempt now.
    pub pending: u64,
    /// The first failure of the endpoint's current streak of failures, or `null`.
    #[schema(format = DateTime)]
    pub failing_since: Option<String>,
    /// The newest successful attempt still retained, or `null`.
    #[schema(format = DateTime)]
    pub last_success_at: Option<String>,
}

/// An endpoint's delivery stats over the last hour, day or week.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/stats", tag = "endpoints", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("window" = Option<String>, Query, pattern = "^(1h|24h|7d)$", min_length = 2, max_length = 3, description = "`1h`, `24h` (default) or `7d`"),
    ),
    responses((status = 200, description = "The endpoint's stats", body = EndpointStatsResponse), CommonErrors)
)]
pub(crate) async fn get_endpoint_stats(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
    PathId(id): PathId,
    mut query: QueryParams,
) -> Result<Json<EndpointStatsResponse>, ApiError> {
    let endpoint_id: EndpointId = path_id(&id)?;
    let mut errors = FieldErrors::new();
    let asked = query.take("window");
    let window = WINDOWS
        .iter()
        .find(|(name, _)| *name == asked.as_deref().unwrap_or(DEFAULT_WINDOW));
    if window.is_none() {
        errors.insert("window".to_owned(), "must be 1h, 24h or 7d".to_owned());
    }
    query.report_unknown(&mut errors);
    let Some(&(window, length)) = window.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // Also the organization's check: another organization's endpoint is not found.
    let endpoint = state.store.get_endpoint(auth.org_id(), endpoint_id).await?;
    let since = Timestamp::now().add(-length);
    let mut stats = state.store.endpoint_stats(endpoint_id, since).await?;
    stats.latencies_ms.sort_unstable();
    Ok(Json(EndpointStatsResponse {
        window,
        attempts: AttemptCounts {
            success: stats.success,
            retry: stats.retry,
            dead: stats.dead,
        },
        latency_ms: LatencyPercentiles {
            p50: nearest_rank(&stats.latencies_ms, 50),
            p95: nearest_rank(&stats.latencies_ms, 95),
            p99: nearest_rank(&stats.latencies_ms, 99),
        },
        pending: stats.pending,
        failing_since: endpoint.health.failing_since.map(|at| at.to_string()),
        last_success_at: stats.last_success_at.map(|at| at.to_string()),
    }))
}

/// The `percent`th percentile of `sorted` by the nearest-rank method (PostgreSQL's
/// `percentile_disc`): the smallest value with at least `percent`% of the values at or
/// below it, always one of them.
fn nearest_rank(sorted: &[u64], percent: usize) -> Option<u64> {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    fn check(values: &[u64], percent: usize, expected: Option<u64>) {
        assert_eq!(
            nearest_rank(values, percent),
            expected,
            "{percent}th of {values:?}"
        );
    }

    #[test]
    fn nearest_rank_picks_the_smallest_value_covering_the_percentage() {
        check(&[], 50, None);
        check(&[7], 50, Some(7));
        check(&[7], 99, Some(7));
        check(&[1, 2], 50, Some(1));
        check(&[1, 2, 3, 4], 50, Some(2));
        check(&[1, 2, 3, 4], 95, Some(4));
        let hundred: Vec<u64> = (1..=100).collect();
        check(&hundred, 50, Some(50));
        check(&hundred, 95, Some(95));
        check(&hundred, 99, Some(99));
        let thousand: Vec<u64> = (1..=1000).collect();
        check(&thousand, 99, Some(990));
    }
}
