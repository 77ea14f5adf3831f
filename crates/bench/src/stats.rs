//! Percentiles and rates over what the workloads measured. Pure functions.

use std::time::Duration;

/// Durations summarized by their nearest-rank percentiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percentiles {
    /// The median, in milliseconds.
    pub(crate) p50_ms: f64,
    /// The 99th percentile, in milliseconds.
    pub(crate) p99_ms: f64,
    /// The largest, in milliseconds.
    pub(crate) max_ms: f64,
}

impl Percentiles {
    /// Summarizes `samples`; `None` when there are none.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Self {
            p50_ms: milliseconds(nearest_rank(&samples, 0.50)),
            p99_ms: milliseconds(nearest_rank(&samples, 0.99)),
            max_ms: milliseconds(*samples.last().expect("samples is not empty")),
        })
    }
}

/// Events (or requests) per second: `count` over `elapsed`.
pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The nearest-rank percentile `quantile` (0 to 1) of sorted, non-empty `samples`: the
/// smallest sample with at least that share of samples at or below it.
fn nearest_rank(samples: &[Duration], quantile: f64) -> Duration {
    let rank = (quantile * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// `duration` in milliseconds.
pub(crate) fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples_ms: &[u64], expected: Option<(f64, f64, f64)>) {
        let samples = samples_ms
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        let actual = Percentiles::of(samples).map(|p| (p.p50_ms, p.p99_ms, p.max_ms));
        assert_eq!(actual, expected, "percentiles of {samples_ms:?}");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        check(&[], None);
        check(&[7], Some((7.0, 7.0, 7.0)));
        check(&[4, 1, 3, 2], Some((2.0, 4.0, 4.0)));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        check(&hundred, Some((50.0, 99.0, 100.0)));
        let thousand: Vec<u64> = (1..=1000).collect();
        check(&thousand, Some((500.0, 990.0, 1000.0)));
    }

    #[test]
    fn rate_is_zero_over_no_time() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
    }
}
