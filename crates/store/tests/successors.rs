//! Runs of an ordering key, on both backends: a worker that holds a keyed delivery claims the
//! deliveries waiting behind it in order, no claim takes them meanwhile, recording a success
//! that names its successor passes the key's turn to it, and a worker that dies mid-run
//! leaves every delivery of the key to be taken again, one at a time, in order. A claim made
//! ahead, behind a successor still parked and unsent, takes the run on from there.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::sync::Arc;

use herald_domain::{Event, Outcome, Timestamp};
use herald_store::{ClaimScope, ClaimedDelivery, HandOn, Store};

use support::{
    LEASE, TestDatabase, claim, create_endpoint, create_org, event, on_postgres,
    on_postgres_database, on_sqlite, recording,
};

#[tokio::test]
async fn sqlite_a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker() {
    on_sqlite(a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker).await;
}

#[tokio::test]
async fn postgres_a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker() {
    on_postgres(a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker).await;
}

#[tokio::test]
async fn sqlite_a_claim_ahead_behind_a_parked_successor_goes_on_in_order() {
    on_sqlite(a_claim_ahead_behind_a_parked_successor_goes_on_in_order).await;
}

#[tokio::test]
async fn postgres_a_claim_ahead_behind_a_parked_successor_goes_on_in_order() {
    on_postgres(a_claim_ahead_behind_a_parked_successor_goes_on_in_order).await;
}

#[tokio::test]
async fn postgres_a_claim_that_waited_does_not_stamp_over_the_keys_next_holder() {
    on_postgres_database(a_claim_that_waited_does_not_stamp_over_the_keys_next_holder).await;
}

fn sequences(claimed: &[ClaimedDelivery]) -> Vec<u64> {
    claimed
        .iter()
        .map(|delivery| delivery.sequence.expect("a sequence"))
        .collect()
}

fn any() -> ClaimScope {
    ClaimScope::AnyExcept(Vec::new())
}

fn handed_on(delivery: &ClaimedDelivery, now: Timestamp) -> HandOn {
    HandOn {
        delivery_id: delivery.delivery_id,
        lease: delivery.lease,
        lease_until: now.add(chrono::Duration::from_std(LEASE).expect("a lease")),
    }
}

/// Publishes `count` events of one ordering key to one endpoint of a new organization.
async fn one_key(store: &dyn Store, count: usize, start: Timestamp) {
    let org = create_org(store, "Runs", start).await;
    create_endpoint(store, org.id, start).await;
    let events: Vec<Event> = (0..count)
        .map(|_| Event {
            ordering_key: Some("account-1".to_owned()),
            ..event(org.id, start)
        })
        .collect();
    store.publish_events(&events).await.expect("publishing");
}

/// The worker's claim ahead (`delivery::worker::job`): the next claim is made behind the last
/// successor of the previous one while that successor is still parked, never sent. It takes
/// the ones behind it, the turn passes into it through the recordings, and when the run stops
/// before reaching them, giving them back leaves the key's next one to an ordinary claim.
async fn a_claim_ahead_behind_a_parked_successor_goes_on_in_order(store: Arc<dyn Store>) {
    let start = Timestamp::now().add(chrono::Duration::seconds(-10));
    one_key(store.as_ref(), 8, start).await;
    let now = Timestamp::now();
    let head = claim(store.as_ref(), now, any()).await;
    assert_eq!(sequences(&head), [1]);
    let head = &head[0];
    let first_run = store
        .claim_successors(head, 2, LEASE, now)
        .await
        .expect("claiming successors");
    assert_eq!(sequences(&first_run), [2, 3]);

    // Ahead: behind the 3rd, parked and unsent.
    let ahead = store
        .claim_successors(&first_run[1], 2, LEASE, now)
        .await
        .expect("claiming behind a parked successor");
    assert_eq!(
        sequences(&ahead),
        [4, 5],
        "a parked successor's holder claims the ones behind it"
    );
    assert!(
        claim(store.as_ref(), now, any()).await.is_empty(),
        "nothing of the key is due while the run holds it"
    );

    // The turn passes through the first run into the claim ahead: 1 → 2 → 3 → 4.
    let mut recordings = Vec::new();
    for (sent, next) in [
        (head, &first_run[0]),
        (&first_run[0], &first_run[1]),
        (&first_run[1], &ahead[0]),
    ] {
        let mut success = recording(sent, Outcome::Success, None, now);
        success.successor = Some(handed_on(next, now));
        recordings.push(success);
    }
    store
        .record_attempts(&recordings, start)
        .await
        .expect("recording");
    assert!(
        claim(store.as_ref(), now, any()).await.is_empty(),
        "the 4th is leased to the run, the 5th parked"
    );

    // A second claim ahead, behind the 5th, parked; then the run stops after the 4th: the
    // key is released to the 5th, and the 5th to 7th, never sent, are given back.
    let second_ahead = store
        .claim_successors(&ahead[1], 2, LEASE, now)
        .await
        .expect("claiming behind a parked successor again");
    assert_eq!(sequences(&second_ahead), [6, 7]);
    store
        .record_attempts(&[recording(&ahead[0], Outcome::Success, None, now)], start)
        .await
        .expect("recording the 4th");
    store.release_unsent(&ahead[1..]);
    store.release_unsent(&second_ahead);
    let fifth = claim(store.as_ref(), now, any()).await;
    assert_eq!(
        sequences(&fifth),
        [5],
        "the key's next, and only it, once the run stopped and gave back what it held"
    );
}

async fn a_run_of_a_key_is_claimed_handed_on_and_survives_its_worker(store: Arc<dyn Store>) {
    let start = Timestamp::now().add(chrono::Duration::seconds(-10));
    one_key(store.as_ref(), 6, start).await;
    let now = Timestamp::now();

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
    let mut first = recording(head, Outcome::Success, None, now);
    first.successor = Some(handed_on(&run[0], now));
    let mut second = recording(&run[0], Outcome::Success, None, now);
    second.successor = Some(handed_on(&run[1], now));
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

/// A claim of successors that waits for the rows behind its head (a run that stopped left it
/// to finish, `delivery::worker::job`) while another worker takes the key on and stamps the
/// key's run, head included, with its own token: once it gets the rows, it must take none of
/// them, or the other worker's recordings of them would fail their token check and the key
/// would stall until their lease ended, then be sent again.
async fn a_claim_that_waited_does_not_stamp_over_the_keys_next_holder(
    store: Arc<dyn Store>,
    database: TestDatabase,
) {
    use sqlx::Connection as _;

    let start = Timestamp::now().add(chrono::Duration::seconds(-10));
    one_key(store.as_ref(), 5, start).await;
    let now = Timestamp::now();
    let head = claim(store.as_ref(), now, any()).await;
    let first_run = store
        .claim_successors(&head[0], 2, LEASE, now)
        .await
        .expect("claiming successors");
    assert_eq!(sequences(&first_run), [2, 3]);

    // The other worker: it holds the rows behind the 3rd while the claim behind the 3rd
    // starts, so that claim waits for them.
    let mut other = sqlx::PgConnection::connect(&database.url())
        .await
        .expect("connecting as the other worker");
    let mut other = other
        .begin()
        .await
        .expect("beginning the other worker's transaction");
    sqlx::query("SELECT id FROM deliveries WHERE sequence > 3 FOR UPDATE")
        .execute(&mut *other)
        .await
        .expect("locking the rows behind the 3rd");
    let waiting = {
        let store = Arc::clone(&store);
        let third = first_run[1].clone();
        tokio::spawn(async move { store.claim_successors(&third, 2, LEASE, now).await })
    };
    // The claim behind the 3rd waits for the other worker's locks.
    herald_testkit::postgres::wait_for_a_lock_wait(&database.url()).await;
    // The other worker takes the key on from the 3rd: one token on the 3rd to the 5th.
    sqlx::query(
        "WITH taken AS (SELECT gen_random_uuid() AS token) \
         UPDATE deliveries SET lease_token = taken.token FROM taken WHERE sequence >= 3",
    )
    .execute(&mut *other)
    .await
    .expect("stamping the key's run as the other worker");
    other
        .commit()
        .await
        .expect("committing the other worker's claim");

    let claimed = waiting
        .await
        .expect("the claim's task")
        .expect("the claim that waited");
    assert!(
        claimed.is_empty(),
        "a claim whose head was taken on meanwhile takes nothing: {:?}",
        sequences(&claimed)
    );
    let mut reader = sqlx::PgConnection::connect(&database.url())
        .await
        .expect("connecting to read the tokens");
    let tokens: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT lease_token) FROM deliveries WHERE sequence >= 3",
    )
    .fetch_one(&mut reader)
    .await
    .expect("reading the run's tokens");
    assert_eq!(
        tokens, 1,
        "the 3rd to the 5th keep the other worker's token"
    );
}
