//! Recovery: delivering an endpoint's failed or missed events again, under their original
//! event ids, with a fresh retry schedule.

use crate::ids::{EndpointId, OrgId, RecoveryId};
use crate::time::Timestamp;

/// Most event types one recovery may name.
pub const MAX_RECOVERY_EVENT_TYPES: usize = 50;

/// Where a recovery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryStatus {
    /// Stored; no chunk done yet.
    Queued,
    /// Some of its matches are back in the queue.
    Running,
    /// Every match is back in the queue (or it was a dry run).
    Done,
}

impl RecoveryStatus {
    /// The wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryStatus::Queued => "queued",
            RecoveryStatus::Running => "running",
            RecoveryStatus::Done => "done",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "queued" => Some(RecoveryStatus::Queued),
            "running" => Some(RecoveryStatus::Running),
            "done" => Some(RecoveryStatus::Done),
            _ => None,
        }
    }
}

/// What a recovery matches: the organization's events created in `[since, until)` (of
/// `event_types`, when given) that have a `dead` delivery to the endpoint, or, with
/// `include_missing`, none at all although the endpoint subscribes to their type now and
/// existed when they were published. Deliveries still pending are never matched, nor events of
/// the test operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryScope {
    /// Start of the window, inclusive.
    pub since: Timestamp,
    /// End of the window, exclusive.
    pub until: Timestamp,
    /// Only these types; `None` for every type.
    pub event_types: Option<Vec<String>>,
    /// Also events the endpoint never got a delivery of.
    pub include_missing: bool,
}

/// One recovery, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Its id.
    pub id: RecoveryId,
    /// The organization.
    pub org_id: OrgId,
    /// The endpoint whose events are delivered again.
    pub endpoint_id: EndpointId,
    /// Where it is.
    pub status: RecoveryStatus,
    /// What it matches.
    pub scope: RecoveryScope,
    /// A dry run counts its matches and delivers nothing.
    pub dry_run: bool,
    /// Events it matched when it was asked for.
    pub matched: u64,
    /// Deliveries it has put back in the queue so far.
    pub enqueued: u64,
    /// When it was asked for.
    pub created_at: Timestamp,
    /// When its last match went back in the queue.
    pub finished_at: Option<Timestamp>,
}
