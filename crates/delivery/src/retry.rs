//! The retry schedule as data (docs/api.md#retries), and the parsing of a receiver's
//! `Retry-After`.
//!
//! Pure: the caller brings the random number generator and the current time, so tests can pin
//! both. Deciding *whether* a failure is retried (a `410 Gone` is not) belongs to the worker,
//! not here.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use herald_domain::Timestamp;
use rand::Rng;

/// Attempts per (event, endpoint) under the decided schedule; the tenth failure is dead.
pub const MAX_ATTEMPTS: u32 = 10;

/// The longest a receiver's `Retry-After` may push the next attempt out.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// The share of each base delay that jitter may add or remove.
pub const JITTER: f64 = 0.2;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The decided delays after failures 1 to 9 *(decided)*.
const DECIDED_DELAYS: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(MINUTE),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(6 * HOUR),
    Duration::from_secs(12 * HOUR),
    Duration::from_secs(24 * HOUR),
    Duration::from_secs(24 * HOUR),
];

/// Base delays between attempts: entry `n - 1` is the wait after failed attempt `n`, and one
/// attempt more than there are entries is allowed in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// The decided schedule: 5 s, 1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h, 24 h.
    fn default() -> Self {
        Self::new(DECIDED_DELAYS.to_vec())
    }
}

impl RetrySchedule {
    /// A schedule with the given base delays (tests use millisecond schedules).
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// The base delays, before jitter.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How many attempts the schedule allows in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait before the next attempt after `attempt_that_failed` (1-based) failed, or `None`
    /// when that was the last attempt and the delivery is dead.
    ///
    /// The base delay gets ±20 % jitter. A receiver's `Retry-After` is a floor, itself capped at
    /// [`RETRY_AFTER_CAP`], so a receiver cannot park a delivery for longer than a day.
    pub fn next_delay(
        &self,
        attempt_that_failed: u32,
        rng: &mut impl Rng,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        // Attempts are 1-based; a zero is treated as the first attempt rather than trusted.
        let index = usize::try_from(attempt_that_failed.max(1) - 1).ok()?;
        let base = *self.delays.get(index)?;
        let factor = rng.gen_range((1.0 - JITTER)..=(1.0 + JITTER));
        let jittered =
            Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX);
        let floor = retry_after.map_or(Duration::ZERO, |wait| wait.min(RETRY_AFTER_CAP));
        Some(jittered.max(floor))
    }
}

/// Parses a `Retry-After` value: delta-seconds, or an HTTP date (IMF-fixdate, and the obsolete
/// RFC 850 and asctime forms RFC 9110 still asks recipients to accept). A date in the past
/// means "now": `Duration::ZERO`.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // A number too large for u64 is still a request to wait a long time.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    let wait = at.signed_duration_since(now.as_datetime());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(parsed) = DateTime::parse_from_rfc2822(value) {
        return Some(parsed.with_timezone(&Utc));
    }
    // RFC 850, then asctime; both are always GMT.
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn now() -> Timestamp {
        Timestamp::parse("1994-11-06T08:49:30Z").expect("valid rfc 3339")
    }

    fn check(value: &str, expected: Option<Duration>) {
        assert_eq!(parse_retry_after(value, now()), expected, "{value}");
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        check("7", Some(Duration::from_secs(7)));
        check(" 120 ", Some(Duration::from_secs(120)));
        check("0", Some(Duration::ZERO));
        check(
            "99999999999999999999999",
            Some(Duration::from_secs(u64::MAX)),
        );
        check(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            Some(Duration::from_secs(7)),
        );
        check(
            "Sunday, 06-Nov-94 08:49:37 GMT",
            Some(Duration::from_secs(7)),
        );
        check("Sun Nov  6 08:49:37 1994", Some(Duration::from_secs(7)));
        check("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO));
        check("-5", None);
        check("1.5", None);
        check("", None);
        check("soon", None);
    }

    #[test]
    fn default_schedule_is_the_decided_one() {
        let schedule = RetrySchedule::default();
        let minutes: Vec<u64> = schedule.delays().iter().map(Duration::as_secs).collect();
        assert_eq!(
            minutes,
            [5, 60, 300, 1800, 7200, 21_600, 43_200, 86_400, 86_400]
        );
        assert_eq!(schedule.max_attempts(), MAX_ATTEMPTS);
        assert!(schedule.delays().windows(2).all(|pair| pair[0] <= pair[1]));
    }

    #[test]
    fn injected_schedules_drive_the_attempt_count() {
        let schedule = RetrySchedule::new(vec![Duration::from_millis(10); 2]);
        let mut rng = StdRng::seed_from_u64(7);
        assert!(schedule.next_delay(2, &mut rng, None).is_some());
        assert_eq!(schedule.next_delay(3, &mut rng, None), None);
        assert_eq!(
            RetrySchedule::new(Vec::new()).next_delay(1, &mut rng, None),
            None
        );
    }

    proptest! {
        #[test]
        fn jitter_stays_within_twenty_percent(attempt in 1u32..MAX_ATTEMPTS, seed in any::<u64>()) {
            let schedule = RetrySchedule::default();
            let base = schedule.delays()[usize::try_from(attempt - 1).expect("small")];
            let delay = schedule
                .next_delay(attempt, &mut StdRng::seed_from_u64(seed), None)
                .expect("not the last attempt");
            prop_assert!(delay >= base.mul_f64(0.8) - Duration::from_millis(1));
            prop_assert!(delay <= base.mul_f64(1.2) + Duration::from_millis(1));
        }

        #[test]
        fn retry_after_is_a_capped_floor(
            attempt in 1u32..MAX_ATTEMPTS,
            seed in any::<u64>(),
            retry_after_secs in 0u64..1_000_000,
        ) {
            let schedule = RetrySchedule::default();
            let retry_after = Duration::from_secs(retry_after_secs);
            let without = schedule.next_delay(attempt, &mut StdRng::seed_from_u64(seed), None);
            let with =
                schedule.next_delay(attempt, &mut StdRng::seed_from_u64(seed), Some(retry_after));
            let (without, with) = (without.expect("retried"), with.expect("retried"));
            prop_assert!(with >= retry_after.min(RETRY_AFTER_CAP));
            prop_assert_eq!(with, without.max(retry_after.min(RETRY_AFTER_CAP)));
            // Only the jittered base itself may exceed the cap (24 h + 20 %), never Retry-After.
            prop_assert!(with <= RETRY_AFTER_CAP.max(without));
        }

        #[test]
        fn the_tenth_failure_is_dead(
            attempt in MAX_ATTEMPTS..u32::MAX,
            seed in any::<u64>(),
            wait in any::<Option<u32>>(),
        ) {
            let retry_after = wait.map(|secs| Duration::from_secs(u64::from(secs)));
            let mut rng = StdRng::seed_from_u64(seed);
            let delay = RetrySchedule::default().next_delay(attempt, &mut rng, retry_after);
            prop_assert_eq!(delay, None);
        }
    }
}
