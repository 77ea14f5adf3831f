use herald_domain::{Outcome, Timestamp};
use herald_store::{AttemptRecording, HandOn, LeaseToken};

use super::*;
use crate::attempt::not_sent;
use crate::worker::fixtures::delivery;
use crate::worker::job::plan_of;

/// The recording of a success; `handed_on` says whether its worker went on with the key's
/// next delivery.
fn success(handed_on: bool) -> AttemptRecording {
    let delivery = delivery(1);
    let mut attempt = not_sent(plan_of(&delivery), Timestamp::now(), String::new()).attempt;
    attempt.outcome = Outcome::Success;
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

#[test]
fn only_a_small_batch_holding_a_run_of_a_key_waits_for_more() {
    assert!(waits_for_more(&[success(true)]), "a run's one result");
    assert!(
        waits_for_more(&[success(false), success(true)]),
        "a run's result beside another"
    );
    let unordered: Vec<_> = (0..3).map(|_| success(false)).collect();
    assert!(
        !waits_for_more(&unordered),
        "results of no run are written at once: unordered work never waits"
    );
    let mut full: Vec<_> = (0..LINGER_BELOW).map(|_| success(true)).collect();
    assert!(
        !waits_for_more(&full),
        "a batch of {LINGER_BELOW} is written at once"
    );
    full.pop();
    assert!(waits_for_more(&full), "one fewer waits");
}
