//! The `v1a` signatures made a moment ago, so that a fan-out signs once per event instead of
//! once per endpoint.
//!
//! One event published to N endpoints of an organization becomes N deliveries whose `v1a`
//! signed content (`"<event id>.<t>.<body>"`) is byte for byte the same whenever their attempts
//! fall in the same second and the endpoints share an API version, and all of them are signed
//! with the one organization key. Ed25519 is deterministic (RFC 8032): the signature made for
//! the first delivery *is* the signature of the others. At tens of microseconds a signature,
//! that is most of a fan-out's CPU per delivery (BENCHMARKS.md), so the last signatures are
//! kept and reused when the key and the whole content match exactly.
//!
//! The table is fixed: [`SLOTS`] entries, one per hash of the key and the content's first
//! bytes (the event id and the timestamp), each replaced by the next signature that lands on
//! it; contents longer than [`LARGEST_KEPT`] are signed every time. So it holds at most about
//! 4 MiB, whatever the number of organizations, and a miss costs a hash and one lock more than
//! signing alone. An entry is only ever a signature Herald made of exactly those bytes with
//! exactly that key, so a stale or evicted entry can cost a signature, never a wrong one.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Mutex, PoisonError};

use herald_domain::{OrgSigningKey, SigningKeyId};

/// How many signatures are kept: enough for the endpoints of a fan-out to drift apart by a few
/// hundred events and still find the first one's signature.
const SLOTS: usize = 1024;

/// The table is split into this many parts, each under its own lock, because a fan-out's
/// deliveries of one event all look up the same moment.
const SHARDS: usize = 16;

/// The longest signed content kept; longer ones are signed every time.
const LARGEST_KEPT: usize = 4096;

/// How many of a content's first bytes choose its slot: the event id (40 bytes), the dot and
/// the timestamp.
const HASHED_PREFIX: usize = 52;

/// The process's recent signatures; every delivery, test and probe signs through it.
pub(super) static RECENT_SIGNATURES: RecentSignatures = RecentSignatures::new();

/// A fixed table of recent `v1a` signatures (see the module's documentation).
pub(super) struct RecentSignatures {
    /// Slot `n` is entry `n / SHARDS` of shard `n % SHARDS`; each shard is empty until its
    /// first signature, then `SLOTS / SHARDS` long.
    shards: [Mutex<Vec<Option<Kept>>>; SHARDS],
}

/// One signature made, with what it was made of.
struct Kept {
    key: SigningKeyId,
    content: Vec<u8>,
    signature: [u8; 64],
}

impl RecentSignatures {
    const fn new() -> Self {
        Self {
            shards: [const { Mutex::new(Vec::new()) }; SHARDS],
        }
    }

    /// The signature of `content` with `key`: the one kept if the same key signed the same
    /// bytes a moment ago, a new one otherwise (kept in turn).
    pub(super) fn sign(&self, key: &OrgSigningKey, content: Vec<u8>) -> [u8; 64] {
        if content.len() > LARGEST_KEPT {
            return key.sign(&content);
        }
        let slot = slot_of(key.id, &content);
        let shard = &self.shards[slot % SHARDS];
        let entry = slot / SHARDS;
        {
            let entries = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(Some(kept)) = entries.get(entry)
                && kept.key == key.id
                && kept.content == content
            {
                return kept.signature;
            }
        }
        // Signed outside the lock: other deliveries' lookups need not wait for it.
        let signature = key.sign(&content);
        let mut entries = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.is_empty() {
            entries.resize_with(SLOTS / SHARDS, || None);
        }
        entries[entry] = Some(Kept {
            key: key.id,
            content,
            signature,
        });
        signature
    }
}

fn slot_of(key: SigningKeyId, content: &[u8]) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    content[..content.len().min(HASHED_PREFIX)].hash(&mut hasher);
    // The remainder is below SLOTS, so it fits any usize.
    usize::try_from(hasher.finish() % SLOTS as u64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use herald_domain::{OrgId, Timestamp};

    use super::*;

    fn content(event: &str, t: i64, body: &str) -> Vec<u8> {
        herald_verify::signed_content(event, t, body.as_bytes())
    }

    #[test]
    fn a_kept_signature_is_the_signature_of_exactly_those_bytes_with_that_key() {
        let recent = RecentSignatures::new();
        let key = OrgSigningKey::generate(OrgId::new(), Timestamp::now());
        let other_key = OrgSigningKey::generate(OrgId::new(), Timestamp::now());
        let first = content("evt_a", 1, "{}");
        for (key, bytes) in [
            (&key, first.clone()),
            (&key, first.clone()),
            (&other_key, first.clone()),
            (&key, content("evt_a", 2, "{}")),
            (&key, content("evt_a", 1, "{ }")),
            (&key, content("evt_b", 1, "{}")),
            (&key, first),
        ] {
            assert_eq!(recent.sign(key, bytes.clone()), key.sign(&bytes));
        }
    }

    #[test]
    fn long_contents_are_signed_and_not_kept() {
        let recent = RecentSignatures::new();
        let key = OrgSigningKey::generate(OrgId::new(), Timestamp::now());
        let long = content("evt_a", 1, &"x".repeat(LARGEST_KEPT));
        assert_eq!(recent.sign(&key, long.clone()), key.sign(&long));
        for shard in &recent.shards {
            let entries = shard.lock().unwrap_or_else(PoisonError::into_inner);
            assert!(entries.iter().flatten().next().is_none());
        }
    }

    #[test]
    fn a_repeated_content_is_found_in_its_slot() {
        let recent = RecentSignatures::new();
        let key = OrgSigningKey::generate(OrgId::new(), Timestamp::now());
        let bytes = content("evt_a", 1, "{}");
        let signature = recent.sign(&key, bytes.clone());
        let slot = slot_of(key.id, &bytes);
        let entries = recent.shards[slot % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let kept = entries[slot / SHARDS]
            .as_ref()
            .expect("the signature was kept");
        assert_eq!(
            (kept.key, &kept.content, kept.signature),
            (key.id, &bytes, signature)
        );
    }
}
