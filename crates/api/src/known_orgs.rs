//! Organizations already seen to exist, so a publish does not read its organization from
//! storage every time (one query of the single-publish path, issue 19).
//!
//! Safe without invalidation, on every node: organizations are never deleted — no route,
//! admin or otherwise, removes one — so an id once found exists for good. Only existence is
//! remembered; a miss reads storage as before, and an unknown organization is never
//! remembered, so it keeps its 422.

use std::collections::HashSet;
use std::sync::RwLock;

use herald_domain::OrgId;

/// Most ids remembered (16 bytes each and the set's overhead: about 1 MiB). When full, the set
/// is emptied and refills from the misses that follow, so memory stays bounded whatever the
/// number of organizations, and the organizations that publish refill it first.
const CAPACITY: usize = 32_768;

/// The set of organizations known to exist.
#[derive(Debug, Default)]
pub struct KnownOrgs {
    ids: RwLock<HashSet<OrgId>>,
}

impl KnownOrgs {
    /// Whether `org` was seen to exist.
    pub fn contains(&self, org: OrgId) -> bool {
        self.ids
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&org)
    }

    /// Remembers that `org` exists (storage said so).
    pub fn insert(&self, org: OrgId) {
        let mut ids = self
            .ids
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ids.len() >= CAPACITY {
            ids.clear();
        }
        ids.insert(org);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_it_was_told_and_stays_bounded() {
        let known = KnownOrgs::default();
        let first = OrgId::new();
        assert!(!known.contains(first));
        known.insert(first);
        assert!(known.contains(first));

        for _ in 1..CAPACITY {
            known.insert(OrgId::new());
        }
        assert!(known.contains(first), "full, not yet over");
        let last = OrgId::new();
        known.insert(last);
        assert!(known.contains(last));
        assert!(!known.contains(first), "emptied when full");
        assert_eq!(known.ids.read().expect("not poisoned").len(), 1);
    }
}
