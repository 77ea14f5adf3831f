use super::*;

const ROOM: usize = 1000;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The id of a task that ran a claim: the plan keys claims on their way by it.
fn task_id() -> tokio::task::Id {
    tokio::spawn(async {}).id()
}

/// Starts the plan's next claim at `now` and returns it with its task's id.
fn start(
    plan: &mut ClaimPlan,
    slots: &EndpointSlots,
    now: Instant,
) -> (tokio::task::Id, Arc<ClaimRequest>) {
    let request = plan
        .next(slots, ROOM, &WorkerConfig::default(), now)
        .expect("a claim starts");
    let (id, request) = (task_id(), Arc::new(request));
    plan.started(id, Arc::clone(&request));
    (id, request)
}

/// Claim `id` came back at `at`, `took` after it started, with `found` deliveries: what the
/// dispatcher tells the plan (`finished`, then `succeeded`).
fn returned(
    plan: &mut ClaimPlan,
    id: tokio::task::Id,
    request: &ClaimRequest,
    found: usize,
    took: Duration,
    at: Instant,
) {
    plan.finished(id);
    plan.succeeded(request, found, took, at);
}

fn sorted(mut endpoints: Vec<EndpointId>) -> Vec<EndpointId> {
    endpoints.sort_unstable();
    endpoints
}

#[test]
fn a_fresh_plan_claims_over_every_endpoint_at_once() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);
    assert_eq!(plan.wake_at(), Some(now));

    let request = plan
        .next(&slots, ROOM, &config, now)
        .expect("a claim starts");

    assert_eq!(request.scope, ClaimScope::AnyExcept(Vec::new()));
    assert_eq!(request.limit, config.claim_batch);
    assert_eq!(request.lease, config.lease);
    assert_eq!(request.per_endpoint_limit, 16);
}

#[test]
fn a_claim_takes_no_more_than_the_room_under_the_global_bound() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);

    assert!(
        plan.next(&slots, 0, &config, now).is_none(),
        "no room, no claim"
    );
    let request = plan.next(&slots, 10, &config, now).expect("a claim starts");

    assert_eq!(request.limit, 10);
}

#[tokio::test]
async fn endpoints_at_their_low_water_are_refilled_by_name_before_anyone_is_scanned() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let failing = EndpointId::new();
    for _ in 0..9 {
        slots.assign(failing);
    }
    assert!(
        slots.release(failing, false),
        "9 → 8: a failing endpoint's low water"
    );
    let answering = EndpointId::new();
    for _ in 0..33 {
        slots.assign(answering);
    }
    assert!(
        slots.release(answering, true),
        "33 → 32: an answering one's"
    );
    let busy = EndpointId::new();
    for _ in 0..16 {
        slots.assign(busy);
    }
    let mut plan = ClaimPlan::new(now);

    let (_, refill) = start(&mut plan, &slots, now);
    let scan = plan
        .next(&slots, ROOM, &config, now)
        .expect("a scan starts beside it");

    let mut refilled = vec![(failing, 16), (answering, 32)];
    refilled.sort_unstable();
    assert_eq!(refill.scope, ClaimScope::Endpoints(refilled));
    let ClaimScope::AnyExcept(except) = scan.scope else {
        panic!("expected a claim over every endpoint, got {:?}", scan.scope);
    };
    assert_eq!(
        sorted(except),
        sorted(vec![failing, answering, busy]),
        "the scan leaves out the full endpoint and those being refilled"
    );
}

#[tokio::test]
async fn only_one_claim_over_every_endpoint_runs_at_a_time() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);
    start(&mut plan, &slots, now);

    plan.new_work();

    assert!(plan.next(&slots, ROOM, &config, now).is_none());
    assert_eq!(
        plan.wake_at(),
        None,
        "its return wakes the dispatcher, not a timer"
    );
}

#[tokio::test]
async fn a_failed_claim_backs_off_doubling_to_five_seconds_and_a_success_resets_it() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);

    let first = plan.failed(now);

    assert_eq!(first, ms(100));
    assert!(
        plan.next(&slots, ROOM, &config, now + ms(99)).is_none(),
        "paused"
    );
    assert_eq!(plan.wake_at(), Some(now + ms(100)));
    let mut pauses = vec![first];
    pauses.extend((0..7).map(|_| plan.failed(now)));
    assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(ms),);
    assert_eq!(plan.wake_at(), Some(now + ms(5000)));
    let resumed = now + ms(5000);
    let (id, request) = start(&mut plan, &slots, resumed);
    returned(&mut plan, id, &request, 1, ms(1), resumed);
    assert_eq!(
        plan.failed(resumed),
        ms(100),
        "a success resets the backoff"
    );
}

#[tokio::test]
async fn a_claim_over_every_endpoint_that_finds_nothing_pauses_the_next_for_four_times_as_long() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);
    let (id, request) = start(&mut plan, &slots, now);
    plan.new_work();
    let back = now + ms(50);

    returned(&mut plan, id, &request, 0, ms(50), back);

    assert_eq!(plan.wake_at(), Some(back + ms(200)));
    assert!(plan.next(&slots, ROOM, &config, back + ms(199)).is_none());
    let next = plan.next(&slots, ROOM, &config, back + ms(200));
    assert!(matches!(
        next.map(|request| request.scope),
        Some(ClaimScope::AnyExcept(_))
    ));
}

#[tokio::test]
async fn a_full_claim_over_every_endpoint_is_followed_by_another_at_once() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);
    let (id, request) = start(&mut plan, &slots, now);
    let back = now + ms(50);

    returned(
        &mut plan,
        id,
        &request,
        request.limit as usize,
        ms(50),
        back,
    );

    assert_eq!(plan.wake_at(), Some(now));
    let next = plan.next(&slots, ROOM, &config, back);
    assert!(matches!(
        next.map(|request| request.scope),
        Some(ClaimScope::AnyExcept(_))
    ));
}

#[tokio::test]
async fn after_a_claim_that_found_some_the_next_scan_waits_for_the_poll() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);
    let (id, request) = start(&mut plan, &slots, now);
    let back = now + ms(50);

    returned(&mut plan, id, &request, 3, ms(50), back);

    let poll = now + config.poll_interval;
    assert_eq!(plan.wake_at(), Some(poll));
    assert!(plan.next(&slots, ROOM, &config, back).is_none());
    let next = plan.next(&slots, ROOM, &config, poll);
    assert!(matches!(
        next.map(|request| request.scope),
        Some(ClaimScope::AnyExcept(_))
    ));
}

/// A plan whose first claim over every endpoint, started and back at `now`, found some: the
/// next waits for the poll.
fn after_a_scan_that_found_some(slots: &EndpointSlots, now: Instant) -> ClaimPlan {
    let mut plan = ClaimPlan::new(now);
    let (id, scan) = start(&mut plan, slots, now);
    returned(&mut plan, id, &scan, 3, ms(10), now);
    plan
}

/// An answering endpoint at its low water (32 of 16 slots × 2 assigned).
fn at_low_water(slots: &EndpointSlots) -> EndpointId {
    let endpoint = EndpointId::new();
    for _ in 0..33 {
        slots.assign(endpoint);
    }
    assert!(slots.release(endpoint, true), "33 → 32: its low water");
    endpoint
}

#[tokio::test]
async fn a_refill_that_a_scan_left_out_while_work_came_in_is_followed_by_another_scan() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = after_a_scan_that_found_some(&slots, now);
    let answering = at_low_water(&slots);
    let (refill_id, refill) = start(&mut plan, &slots, now);
    assert_eq!(refill.scope, ClaimScope::Endpoints(vec![(answering, 32)]));
    assert_eq!(
        refill.limit, 32,
        "a refill holds back only what it asks for"
    );
    // A publish (to that endpoint, maybe) while the refill is on its way: the scan it starts
    // leaves the endpoint out, and finds nothing.
    plan.new_work();
    let (scan_id, scan) = start(&mut plan, &slots, now);
    assert!(matches!(&scan.scope, ClaimScope::AnyExcept(except) if except.contains(&answering)));
    let back = now + ms(10);
    returned(&mut plan, scan_id, &scan, 0, ms(10), back);
    assert_eq!(plan.wake_at(), Some(now + config.poll_interval));

    returned(&mut plan, refill_id, &refill, 5, ms(10), back);

    let paced = back + ms(10) * EMPTY_SCAN_PAUSE;
    assert_eq!(
        plan.wake_at(),
        Some(paced),
        "another scan, after the empty one's pause and before the poll"
    );
    let again = plan.next(&slots, ROOM, &config, paced);
    assert!(matches!(
        again.map(|request| request.scope),
        Some(ClaimScope::AnyExcept(_))
    ));
}

#[tokio::test]
async fn a_refill_that_a_scan_left_out_while_no_work_came_in_asks_for_no_scan() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = after_a_scan_that_found_some(&slots, now);
    let answering = at_low_water(&slots);
    let (refill_id, refill) = start(&mut plan, &slots, now);
    // The poll's scan, beside the refill.
    let poll = now + config.poll_interval;
    let (scan_id, scan) = start(&mut plan, &slots, poll);
    assert!(matches!(&scan.scope, ClaimScope::AnyExcept(except) if except.contains(&answering)));
    returned(&mut plan, scan_id, &scan, 3, ms(10), poll);

    returned(&mut plan, refill_id, &refill, 5, ms(10), poll);

    assert!(plan.next(&slots, ROOM, &config, poll).is_none());
    assert_eq!(
        plan.wake_at(),
        Some(poll + config.poll_interval),
        "the next scan waits for the poll"
    );
}

#[tokio::test]
async fn while_a_scan_is_on_its_way_the_endpoints_it_may_claim_wait_for_their_refill() {
    let (now, slots, config) = (
        Instant::now(),
        EndpointSlots::new(16),
        WorkerConfig::default(),
    );
    let mut plan = ClaimPlan::new(now);
    let (scan_id, scan) = start(&mut plan, &slots, now);
    let answering = at_low_water(&slots);

    assert!(
        plan.next(&slots, ROOM, &config, now).is_none(),
        "the scan may be claiming for it"
    );
    returned(&mut plan, scan_id, &scan, 3, ms(10), now);
    let refill = plan
        .next(&slots, ROOM, &config, now)
        .expect("its refill starts once the scan is back");
    assert_eq!(refill.scope, ClaimScope::Endpoints(vec![(answering, 32)]));
}
