//! The deliveries feed on both backends: an organization's records of every outcome, read in
//! pages, come newest first, each once, with the true `total`, with and without filters
//! (the `outcome` filter reads `attempts_by_org_outcome`, migration 0020). The outcomes come
//! in runs longer than a page, so a page may hold one outcome or several.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use herald_domain::{Attempt, Event, OrgId, Outcome, Timestamp};
use herald_store::{AttemptFilter, ClaimScope, PageRequest, Store};

use support::{
    EVENT_TYPE, claim, create_endpoint, create_org, event, on_postgres, on_sqlite, recording,
};

#[tokio::test]
async fn sqlite_pages_of_mixed_outcomes() {
    on_sqlite(pages_of_mixed_outcomes).await;
}

#[tokio::test]
async fn postgres_pages_of_mixed_outcomes() {
    on_postgres(pages_of_mixed_outcomes).await;
}

/// The outcome of the `n`th record: runs of three and four, longer than a page of two.
fn outcome_of(n: usize) -> Outcome {
    use Outcome::{Dead, Retry, Success};
    [
        Success, Success, Success, Dead, Dead, Dead, Retry, Retry, Retry, Retry, Success,
    ][n % 11]
}

async fn pages_of_mixed_outcomes(store: Arc<dyn Store>) {
    // Arrange: 11 deliveries to one endpoint, each attempted once, recorded one at a time so
    // their ids follow each other; and one record of another organization.
    let start = Timestamp::now().add(chrono::Duration::seconds(-10));
    let org = create_org(store.as_ref(), "Feed", start).await.id;
    let endpoint = create_endpoint(store.as_ref(), org, start).await;
    let events: Vec<Event> = (0..11)
        .map(|n| event(org, start.add(chrono::Duration::milliseconds(n))))
        .collect();
    store.publish_events(&events).await.expect("publishing");
    let other_org = create_org(store.as_ref(), "Another", start).await.id;
    let other_endpoint = create_endpoint(store.as_ref(), other_org, start).await;
    store
        .publish_events(&[event(other_org, start)])
        .await
        .expect("publishing for the other organization");
    let now = Timestamp::now();
    let claimed = claim(
        store.as_ref(),
        now,
        ClaimScope::Endpoints(vec![(endpoint, 16), (other_endpoint, 16)]),
    )
    .await;
    assert_eq!(claimed.len(), 12, "every delivery is claimed");
    let retry_at = now.add(chrono::Duration::seconds(600));
    let mut recorded = 0;
    for delivery in &claimed {
        let outcome = match delivery.endpoint.id == endpoint {
            true => outcome_of(recorded),
            false => Outcome::Dead,
        };
        recorded += usize::from(delivery.endpoint.id == endpoint);
        let next_attempt_at = (outcome == Outcome::Retry).then_some(retry_at);
        store
            .record_attempts(&[recording(delivery, outcome, next_attempt_at, now)], now)
            .await
            .expect("recording");
    }

    // Act and assert: every filter's pages, against the same filter read in one page.
    let filters = [
        AttemptFilter::default(),
        AttemptFilter {
            outcome: Some(Outcome::Dead),
            ..AttemptFilter::default()
        },
        AttemptFilter {
            event_type: Some(EVENT_TYPE.to_owned()),
            ..AttemptFilter::default()
        },
        AttemptFilter {
            http_status_min: Some(500),
            ..AttemptFilter::default()
        },
        AttemptFilter {
            endpoint_id: Some(endpoint),
            ..AttemptFilter::default()
        },
    ];
    for filter in &filters {
        let pages = walk(store.as_ref(), org, filter, 2).await;
        let whole = walk(store.as_ref(), org, filter, 100).await;
        assert_eq!(
            whole.len(),
            1,
            "{filter:?}: one page of 100 holds everything"
        );
        let (records, totals): (Vec<Vec<Attempt>>, Vec<u64>) = pages.into_iter().unzip();
        let records: Vec<Attempt> = records.into_iter().flatten().collect();
        let (everything, total) = &whole[0];
        assert_eq!(
            &records, everything,
            "{filter:?}: pages of two walk the same records"
        );
        assert!(
            totals.iter().all(|page_total| page_total == total),
            "{filter:?}: every page counts every match: {totals:?}, want {total}"
        );
        assert_eq!(
            usize::try_from(*total).ok(),
            Some(records.len()),
            "{filter:?}"
        );
        let ids: Vec<_> = records.iter().map(|record| record.id.as_uuid()).collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] > pair[1]),
            "{filter:?}: newest first, each once: {ids:?}"
        );
        assert!(
            records.iter().all(|record| record.org_id == org),
            "{filter:?}: only the organization's own records"
        );
    }
    let count = |outcome: Option<Outcome>| {
        (0..11)
            .filter(|n| outcome.is_none_or(|outcome| outcome_of(*n) == outcome))
            .count()
    };
    let every = walk(store.as_ref(), org, &filters[0], 2).await;
    let every: Vec<Attempt> = every.into_iter().flat_map(|(page, _)| page).collect();
    assert_eq!(every.len(), count(None), "the unfiltered feed has all 11");
    let outcomes: HashSet<Outcome> = every.iter().map(|record| record.outcome).collect();
    assert_eq!(outcomes.len(), 3, "all three outcomes are on record");
    let dead = walk(store.as_ref(), org, &filters[1], 2).await;
    let dead: Vec<Attempt> = dead.into_iter().flat_map(|(page, _)| page).collect();
    assert_eq!(
        dead.len(),
        count(Some(Outcome::Dead)),
        "only this organization's dead"
    );
    assert!(dead.iter().all(|record| record.outcome == Outcome::Dead));
}

/// Every page of `filter`'s feed, `limit` records a page: each page's records and `total`.
async fn walk(
    store: &dyn Store,
    org: OrgId,
    filter: &AttemptFilter,
    limit: u32,
) -> Vec<(Vec<Attempt>, u64)> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_attempts(org, filter, &PageRequest { limit, cursor })
            .await
            .expect("listing attempts");
        assert!(page.items.len() <= limit as usize);
        cursor = page.next_cursor;
        pages.push((page.items, page.total));
        if cursor.is_none() || pages.len() > 20 {
            return pages;
        }
    }
}
