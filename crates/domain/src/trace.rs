//! W3C Trace Context (docs/api.md#trace-context): the `traceparent` a publisher sends is kept
//! with its event, and every attempt of the event's deliveries sends one of its own, in the
//! same trace, so the receiver's trace joins the publisher's.
//!
//! Only version `00` is understood; anything else is no trace context at all (the publish
//! goes ahead and the event gets a trace of its own), because a trace header must never make
//! a publish fail. Pure: the ids come from values that already exist (the event's and the
//! attempt's UUIDv7 ids), so an attempt draws no randomness and allocates one string.

use std::fmt;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

use crate::delivery::Event;
use crate::ids::AttemptId;

/// The header's name, as sent (receivers' HTTP stacks compare names case-insensitively).
pub const TRACEPARENT: &str = "traceparent";

/// The `sampled` flag: set on the traces Herald starts itself, so a receiver whose sampler
/// follows its parent (OpenTelemetry's default) records its part of the trace.
const SAMPLED: u8 = 0x01;

/// The length of a version `00` header: `00-` + 32 + `-` + 16 + `-` + 2.
const LENGTH: usize = 55;

/// A validated version `00` `traceparent`: a trace id and a parent (span) id, neither all
/// zeros, and the trace flags.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` value: `00-<32 lowercase hex>-<16 lowercase hex>-<2 lowercase
    /// hex>`, ids not all zeros. `None` for anything else, which callers ignore.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.trim_matches([' ', '\t']).as_bytes();
        if bytes.len() != LENGTH || &bytes[..3] != b"00-" || bytes[35] != b'-' || bytes[52] != b'-'
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let mut flags = [0u8; 1];
        decode_hex(&bytes[3..35], &mut trace_id)?;
        decode_hex(&bytes[36..52], &mut parent_id)?;
        decode_hex(&bytes[53..55], &mut flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// The context an attempt of `event` sends: the trace of the event's publisher, or, for
    /// an event published without one, the trace whose id is the event id's 128 bits (so
    /// every attempt of the event shares it, and it can be found from the event id); the
    /// span id is the last 8 bytes of the attempt's id, random in a UUIDv7 and never all
    /// zeros (its variant bits), so each attempt is a new span the delivery record names.
    pub fn of_attempt(event: &Event, attempt_id: AttemptId) -> Self {
        let (trace_id, flags) = trace_of(event);
        let mut parent_id = [0u8; 8];
        parent_id.copy_from_slice(&attempt_id.as_uuid().as_bytes()[8..]);
        Self {
            trace_id,
            parent_id,
            flags,
        }
    }

    /// The trace id every attempt of `event` sends, as 32 lowercase hex digits (for logs).
    pub fn trace_id_hex_of(event: &Event) -> String {
        let mut text = String::with_capacity(32);
        push_hex(&mut text, &trace_of(event).0);
        text
    }

    /// The trace id's 16 bytes.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent id's 8 bytes: the publisher's span, or, for an attempt's header, the
    /// attempt's own span.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// This context as OpenTelemetry's remote parent: the span of whoever sent it.
    pub fn remote_span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.parent_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        )
    }

    /// The trace id, as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut text = String::with_capacity(32);
        push_hex(&mut text, &self.trace_id);
        text
    }

    /// The header value, `00-<trace id>-<parent id>-<flags>`.
    pub fn header_value(&self) -> String {
        let mut text = String::with_capacity(LENGTH);
        text.push_str("00-");
        push_hex(&mut text, &self.trace_id);
        text.push('-');
        push_hex(&mut text, &self.parent_id);
        text.push('-');
        push_hex(&mut text, &[self.flags]);
        text
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// The trace of `event`'s attempts and its flags: the publisher's, or the event id's own,
/// sampled (see [`TraceParent::of_attempt`]).
fn trace_of(event: &Event) -> ([u8; 16], u8) {
    match &event.traceparent {
        Some(publisher) => (publisher.trace_id, publisher.flags),
        None => (*event.id.as_uuid().as_bytes(), SAMPLED),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(text: &mut String, bytes: &[u8]) {
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

/// Decodes lowercase hex (the specification refuses upper case) into `out`.
fn decode_hex(digits: &[u8], out: &mut [u8]) -> Option<()> {
    for (pair, byte) in digits.chunks_exact(2).zip(out.iter_mut()) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventId, EventOrigin, OrgId, Timestamp};
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn check(input: &str, expected: Option<&str>) {
        let parsed = TraceParent::parse(input).map(|parent| parent.to_string());
        assert_eq!(parsed.as_deref(), expected, "{input:?}");
    }

    fn event(traceparent: Option<TraceParent>) -> Event {
        Event {
            id: EventId::new(),
            org_id: OrgId::new(),
            event_type: "wallet.balance_low".to_owned(),
            data: "{}".to_owned(),
            idempotency_key: None,
            ordering_key: None,
            origin: EventOrigin::Publish,
            created_at: Timestamp::now(),
            traceparent,
        }
    }

    #[test]
    fn parse_accepts_version_00_and_refuses_everything_else() {
        check(VALID, Some(VALID));
        check(&format!(" {VALID}\t"), Some(VALID));
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        // Upper case, other versions, zero ids, wrong lengths and separators.
        check(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            None,
        );
        check(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        );
        check(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        );
        check(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        );
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            None,
        );
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            None,
        );
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            None,
        );
        check(
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            None,
        );
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            None,
        );
        check("", None);
        check("00-x", None);
    }

    #[test]
    fn an_attempt_keeps_the_publishers_trace_and_flags_with_its_own_span() {
        let publisher = TraceParent::parse(VALID).expect("valid");
        let event = event(Some(publisher));
        let first = TraceParent::of_attempt(&event, AttemptId::new());
        let second = TraceParent::of_attempt(&event, AttemptId::new());
        assert_eq!(first.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(first.trace_id, second.trace_id);
        assert_eq!(first.flags, 0x01);
        assert_ne!(first.parent_id, second.parent_id);
        assert_ne!(first.parent_id, publisher.parent_id);
    }

    #[test]
    fn an_event_without_a_trace_is_its_own_sampled_trace() {
        let event = event(None);
        let attempt = TraceParent::of_attempt(&event, AttemptId::new());
        assert_eq!(
            attempt.trace_id_hex(),
            event.id.as_uuid().simple().to_string()
        );
        assert_eq!(attempt.flags, SAMPLED);
    }

    proptest! {
        #[test]
        fn a_header_survives_a_round_trip(
            trace_id in any::<[u8; 16]>(),
            parent_id in any::<[u8; 8]>(),
            flags in any::<u8>(),
        ) {
            let parent = TraceParent { trace_id, parent_id, flags };
            let header = parent.header_value();
            prop_assert_eq!(header.len(), LENGTH);
            let zero = trace_id == [0; 16] || parent_id == [0; 8];
            prop_assert_eq!(TraceParent::parse(&header), (!zero).then_some(parent));
        }
    }
}
