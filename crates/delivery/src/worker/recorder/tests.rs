use herald_domain::{Outcome, Timestamp};
use herald_store::{AttemptRecording, HandOn, LeaseToken};

use super::*;
use crate::attempt::not_sent;
use crate::worker::fixtures::delivery;
use crate::worker::job::plan_of;

/// The recording of an attempt answered in `response_time_ms` with `outcome`; `handed_on`
/// says whether its worker went on with the key's next delivery.
fn result(outcome: Outcome, response_time_ms: u64, handed_on: bool) -> AttemptRecording {
    let mut delivery = delivery(1);
    delivery.event.ordering_key = Some("customer-42".to_owned());
    let mut attempt = not_sent(plan_of(&delivery), Timestamp::now(), String::new()).attempt;
    attempt.outcome = outcome;
    attempt.response_time_ms = response_time_ms;
    AttemptRecording {
        attempt,
        disable_endpoint: None,
        exhausted: false,
        lease: delivery.lease,
        successor: handed_on.then(|| HandOn {
            delivery_id: herald_domain::DeliveryId::new(),
            lease: LeaseToken::new(),
            lease_until: Timestamp::now(),
        }),
    }
}

/// A success of a run whose receiver answered at once.
fn fast_run() -> AttemptRecording {
    result(Outcome::Success, 0, true)
}

#[test]
fn only_a_small_batch_holding_a_fast_run_and_nothing_awaited_waits_for_more() {
    assert!(waits_for_more(&[fast_run()]), "a fast run's one result");
    let retry = result(Outcome::Retry, 0, false);
    assert!(
        waits_for_more(&[retry.clone(), fast_run()]),
        "a fast run's result beside a retry"
    );

    let unordered: Vec<_> = (0..3).map(|_| retry.clone()).collect();
    assert!(
        !waits_for_more(&unordered),
        "no run: unordered work never waits"
    );
    assert!(
        !waits_for_more(&[result(Outcome::Success, 1, true)]),
        "a run to a receiver a millisecond away: the wait would catch nothing"
    );

    let released = result(Outcome::Success, 0, false);
    assert!(
        !waits_for_more(&[fast_run(), released]),
        "a run's end makes the key's next delivery due: nobody waits for that"
    );
    let mut exhausted = result(Outcome::Dead, 0, false);
    exhausted.exhausted = true;
    assert!(
        !waits_for_more(&[fast_run(), exhausted]),
        "delivery.exhausted waits on it"
    );
    let mut gone = retry;
    gone.disable_endpoint = Some("receiver answered 410 Gone".to_owned());
    assert!(
        !waits_for_more(&[fast_run(), gone]),
        "endpoint.disabled waits on it"
    );

    let mut full: Vec<_> = (0..LINGER_BELOW).map(|_| fast_run()).collect();
    assert!(
        !waits_for_more(&full),
        "a batch of {LINGER_BELOW} is written at once"
    );
    full.pop();
    assert!(waits_for_more(&full), "one fewer waits");
}
