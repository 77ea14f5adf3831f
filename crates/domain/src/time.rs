//! [`Timestamp`]: an instant in UTC with microsecond precision, written RFC 3339 with `Z`.

use std::fmt;

use chrono::{DateTime, Datelike as _, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, kept to the microsecond so that storage round-trips it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to microseconds.
    pub fn now() -> Self {
        Self::from_micros(Utc::now().timestamp_micros())
    }

    /// The instant `micros` microseconds after the Unix epoch.
    pub fn from_micros(micros: i64) -> Self {
        Self(
            Utc.timestamp_micros(micros)
                .single()
                .unwrap_or(DateTime::UNIX_EPOCH),
        )
    }

    /// Microseconds since the Unix epoch, the storage form.
    pub fn as_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// Whole seconds since the Unix epoch, as signatures use.
    pub fn unix_seconds(&self) -> i64 {
        self.0.timestamp()
    }

    /// The underlying chrono value.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// This instant moved by `duration` (which may be negative).
    pub fn add(&self, duration: chrono::Duration) -> Self {
        Self::from_micros(
            self.as_micros()
                .saturating_add(duration.num_microseconds().unwrap_or(i64::MAX)),
        )
    }

    /// Parses RFC 3339 text with any offset, normalized to UTC. An instant that falls outside
    /// the years 0000–9999 once in UTC (`9999-12-31T23:59:59-01:00`, or the leap second
    /// `9999-12-31T23:59:60.5Z`) is refused: RFC 3339 cannot write it, so it could never be
    /// shown back in the wire format.
    pub fn parse(text: &str) -> Option<Self> {
        let parsed = DateTime::parse_from_rfc3339(text).ok()?;
        // Judged after the conversion to microseconds, which folds a leap second into the
        // next second and so may move the instant into the next year.
        let timestamp = Self::from_micros(parsed.timestamp_micros());
        (0..=9999)
            .contains(&timestamp.0.year())
            .then_some(timestamp)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Self::from_micros(value.timestamp_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_utc_with_z() {
        let instant = Timestamp::from_micros(1_777_204_800_000_000);
        assert_eq!(instant.to_string(), "2026-04-26T12:00:00.000000Z");
    }

    #[test]
    fn parse_normalizes_offsets() {
        let parsed = Timestamp::parse("2026-04-26T14:00:00+02:00").expect("valid rfc 3339");
        assert_eq!(
            parsed,
            Timestamp::parse("2026-04-26T12:00:00Z").expect("valid rfc 3339")
        );
        assert!(Timestamp::parse("yesterday").is_none());
    }

    #[test]
    fn parse_refuses_instants_rfc_3339_cannot_write_in_utc() {
        // Found by the query_string fuzz target: these parsed, then displayed as
        // `+10000-01-01T…Z` or `-0001-12-31T…Z`, which do not parse back.
        assert!(Timestamp::parse("9999-12-31T23:59:59.999999999-23:59").is_none());
        assert!(Timestamp::parse("0000-01-01T00:00:00+00:01").is_none());
        assert!(Timestamp::parse("9999-12-31T23:59:60.9z").is_none());
        let leap = Timestamp::parse("2016-12-31T23:59:60.5Z").expect("a leap second");
        assert_eq!(Timestamp::parse(&leap.to_string()), Some(leap));
        for edge in ["9999-12-31T23:59:59.999999Z", "0000-01-01T00:00:00Z"] {
            let parsed = Timestamp::parse(edge).expect("in range");
            assert_eq!(
                Timestamp::parse(&parsed.to_string()),
                Some(parsed),
                "{edge}"
            );
        }
    }

    #[test]
    fn micros_round_trip() {
        let now = Timestamp::now();
        assert_eq!(Timestamp::from_micros(now.as_micros()), now);
    }
}
