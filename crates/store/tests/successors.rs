//! Runs of an ordering key, on both backends: a worker that holds a keyed delivery claims the
//! deliveries waiting behind it in order, no claim takes them meanwhile, recording a success
//! that names its successor passes the key's turn to it, and a worker that dies mid-run
//! leaves every delivery of the key to be taken again, one at a time, in order.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::sync::Arc;

use herald_domain::{Event, Org, OrgId, Outcome, Timestamp};
use herald_store::{ClaimScope, ClaimedDelivery, HandOn, Store};

use support::{LEASE, claim, create_endpoint, event, on_postgres, on_sqlite, recording};

#[tokio::test]
async fn sqlite_a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker() {
    on_sqlite(a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker).await;
}

#[tokio::test]
async fn postgres_a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker() {
    on_postgres(a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker).await;
}

async fn a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker(store: Arc<dyn Store>) {
    let start = Timestamp::now().add(chrono::Duration::seconds(-10));
    let org = Org {
        id: OrgId::new(),
        name: "Runs".to_owned(),
        created_at: start,
    };
    store.create_org(&org).await.expect("creating the org");
    create_endpoint(store.as_ref(), org.id, start).await;
    let events: Vec<Event> = (0..6)
        .map(|_| Event {
            ordering_key: Some("account-1".to_owned()),
            ..event(org.id, start)
        })
        .collect();
    store.publish_events(&events).await.expect("publishing");
    let now = Timestamp::now();
    let any = || ClaimScope::AnyExcept(Vec::new());
    let sequences = |claimed: &[ClaimedDelivery]| {
        claimed
            .iter()
            .map(|delivery| delivery.sequence.expect("a sequence"))
            .collect::<Vec<_>>()
    };

    // The key's first is the only one a claim finds.
    let head = claim(store.as_ref(), now, any()).await;
    assert_eq!(sequences(&head), [1], "one delivery of a key at a time");
    let head = &head[0];

    // Its worker takes the next three, in order; no claim finds them.
    let run = store
        .claim_successors(head, 3, LEASE, now)
        .await
        .expect("claiming successors");
    assert_eq!(
        sequences(&run),
        [2, 3, 4],
        "the next ones, in sequence order"
    );
    assert!(
        claim(store.as_ref(), now, any()).await.is_empty(),
        "successors stay out of every claim"
    );

    // Two successes recorded in one batch, each naming its successor: the turn passes to the
    // third, which stays leased, so nothing is due.
    let handed_on = |delivery: &ClaimedDelivery| HandOn {
        delivery_id: delivery.delivery_id,
        lease: delivery.lease,
        lease_until: now.add(chrono::Duration::from_std(LEASE).expect("a lease")),
    };
    let mut first = recording(head, Outcome::Success, None, now);
    first.successor = Some(handed_on(&run[0]));
    let mut second = recording(&run[0], Outcome::Success, None, now);
    second.successor = Some(handed_on(&run[1]));
    store
        .record_attempts(&[first, second], start)
        .await
        .expect("recording");
    assert!(
        claim(store.as_ref(), now, any()).await.is_empty(),
        "the handed-on successor is leased, the rest parked"
    );

    // The run stops after the third (its fourth never sent): the key is released to the
    // fourth, which an ordinary claim then takes, and only it.
    store
        .record_attempts(&[recording(&run[1], Outcome::Success, None, now)], start)
        .await
        .expect("recording the third");
    store.release_unsent(&run[2..]);
    let fourth = claim(store.as_ref(), now, any()).await;
    assert_eq!(sequences(&fourth), [4], "the key's next, once released");
    let fourth = &fourth[0];

    // A worker that claims the fifth and sixth behind it and dies: once its lease lapses,
    // the fourth is taken again alone, and its success releases the fifth.
    let abandoned = store
        .claim_successors(fourth, 3, LEASE, now)
        .await
        .expect("claiming successors");
    assert_eq!(sequences(&abandoned), [5, 6]);
    let lapsed = now.add(chrono::Duration::from_std(LEASE * 2).expect("a lease"));
    let again = claim(store.as_ref(), lapsed, any()).await;
    assert_eq!(
        sequences(&again),
        [4],
        "after its worker died, the key's unfinished head alone is due"
    );
    assert!(
        store
            .claim_successors(fourth, 3, LEASE, lapsed)
            .await
            .expect("claiming as the old holder")
            .is_empty(),
        "a holder whose lease lapsed and was taken over gets no run beside the new holder's"
    );
    store
        .record_attempts(
            &[recording(&again[0], Outcome::Success, None, lapsed)],
            start,
        )
        .await
        .expect("recording the fourth");
    let fifth = claim(store.as_ref(), lapsed, any()).await;
    assert_eq!(
        sequences(&fifth),
        [5],
        "the dead worker's successor is released in its turn"
    );
}
