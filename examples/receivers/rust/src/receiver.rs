//! The receiving route: verify, dedupe, queue, answer; and the worker that processes what was
//! queued, catching up on missed sequence numbers first (catch_up.rs). No TLS or configuration
//! here (main.rs).
//!
//! The order is the point of the example: nothing about a request is trusted or remembered
//! before its signature is verified over the raw body bytes; the event id it dedupes on comes
//! from the signed body; and the answer goes out as soon as the event is queued, so slow work
//! never makes Herald time out and retry.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use herald_verify::{
    DEFAULT_TOLERANCE, Secret, Verified, VerifyError, header, unix_now, verify_amcore, verify_v1a,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::catch_up::{Feed, Progress};

/// How many event ids the receiver remembers. Herald retries a delivery for about three days, so
/// a real receiver keeps ids at least that long, in its database; the example keeps the most
/// recent ones in memory.
const REMEMBERED_EVENTS: usize = 100_000;

/// The parts of the envelope this receiver reads (docs/api.md#the-envelope).
#[derive(Debug, Deserialize)]
pub(crate) struct Event {
    /// `evt_…`: the same on every attempt of this event, so it is the deduplication key.
    pub(crate) id: String,
    /// The event type, e.g. `wallet.balance_low`.
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    /// The event's payload.
    pub(crate) data: serde_json::Value,
}

/// An accepted delivery on its way to the worker.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) event: Event,
    /// `X-AmCore-Sequence`; `None` on a test send.
    pub(crate) sequence: Option<u64>,
}

/// The ids of events already taken, shared by the route and the worker.
pub(crate) type Seen = Arc<Mutex<SeenEvents>>;

/// What deliveries are verified with.
pub(crate) enum Key {
    /// The endpoint secret: `X-AmCore-Signature` (HMAC-SHA256, compared in constant time).
    Secret(Secret),
    /// The organization's Ed25519 public key (`GET /v1/webhook-keys`): the `v1a` entry of
    /// `webhook-signature`. The receiver then holds no secret at all.
    PublicKey([u8; 32]),
}

impl Key {
    /// Verifies the delivery's signature headers over the raw `body`, with a 5-minute tolerance.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, VerifyError> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .ok_or(VerifyError::Malformed)
        };
        match self {
            Self::Secret(secret) => verify_amcore(
                text(header::SIGNATURE)?,
                body,
                &[secret],
                unix_now(),
                DEFAULT_TOLERANCE,
            ),
            Self::PublicKey(public_key) => verify_v1a(
                text(header::WEBHOOK_ID)?,
                text(header::WEBHOOK_TIMESTAMP)?,
                text(header::WEBHOOK_SIGNATURE)?,
                body,
                public_key,
                unix_now(),
                DEFAULT_TOLERANCE,
            ),
        }
    }
}

/// What the route needs: the key, the ids already seen, and the queue to the worker.
#[derive(Clone)]
pub(crate) struct AppState {
    key: Arc<Key>,
    seen: Seen,
    queue: mpsc::Sender<Delivery>,
}

impl AppState {
    /// State verifying with `key`, remembering ids in `seen` and handing accepted deliveries to
    /// `queue`.
    pub(crate) fn new(key: Key, seen: Seen, queue: mpsc::Sender<Delivery>) -> Self {
        Self {
            key: Arc::new(key),
            seen,
            queue,
        }
    }
}

/// `POST /webhooks`.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks", post(receive))
        .with_state(state)
}

/// Works through the queue, one delivery at a time, after the answers have gone. When a
/// delivery's sequence number skips ahead, the missed events are processed first: fetched from
/// the catch-up feed when `feed` is configured, otherwise only logged.
pub(crate) async fn process_events(
    mut queue: mpsc::Receiver<Delivery>,
    seen: Seen,
    feed: Option<Feed>,
) {
    let mut progress = Progress::default();
    while let Some(Delivery { event, sequence }) = queue.recv().await {
        // A test send has no sequence number and is processed as before.
        if let Some(sequence) = sequence {
            let caught_up = match progress.gap_before(sequence) {
                None => true,
                Some(last) => {
                    tracing::warn!(last, sequence, "sequence gap");
                    fill_gap(feed.as_ref(), &seen, last, sequence).await
                }
            };
            if caught_up {
                progress.advance_to(sequence);
            }
        }
        process(&event);
    }
}

/// Processes the events numbered after `last` and before `sequence` that were not taken yet;
/// false when the feed could not be read, so that the next delivery asks again.
async fn fill_gap(feed: Option<&Feed>, seen: &Seen, last: u64, sequence: u64) -> bool {
    let Some(feed) = feed else {
        return true; // not configured: the gap is only logged
    };
    let is_new = |id: &str| seen.lock().expect("seen-events lock").insert(id);
    match feed.catch_up(last, sequence, is_new, process).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "catch-up failed");
            false
        }
    }
}

/// The slow part: here, only logging the event.
fn process(event: &Event) {
    tracing::info!(event_id = %event.id, event_type = %event.event_type, data = %event.data, "processed");
}

async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // 1. Verify the signature over the raw bytes, before parsing anything. A missing or
    // malformed header is a 400, a stale or wrong signature a 401.
    if let Err(error) = state.key.verify(&headers, &body) {
        tracing::warn!(reason = %error, "rejected");
        return match error {
            VerifyError::Malformed => StatusCode::BAD_REQUEST,
            VerifyError::TimestampOutOfTolerance | VerifyError::NoMatchingSignature => {
                StatusCode::UNAUTHORIZED
            }
            // The key was checked at start (main.rs), so this does not happen.
            VerifyError::InvalidPublicKey => StatusCode::INTERNAL_SERVER_ERROR,
        };
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(reason = %error, "rejected");
            return StatusCode::BAD_REQUEST;
        }
    };

    // 2. Dedupe on the signed event id: a retry of an event already taken is answered 2xx, so
    // Herald stops sending it, and is not processed again.
    let event_id = event.id.clone();
    if !state
        .seen
        .lock()
        .expect("seen-events lock")
        .insert(&event_id)
    {
        tracing::info!(%event_id, "duplicate");
        return StatusCode::OK;
    }

    // 3. Queue the work and answer at once. The sequence number is not signed: it only tells
    // the worker when to ask the catch-up feed, which answers from Herald itself.
    let sequence = headers
        .get(header::SEQUENCE)
        .and_then(|value| value.to_str().ok()?.parse().ok());
    let event_type = event.event_type.clone();
    if state.queue.try_send(Delivery { event, sequence }).is_err() {
        // Full: forget the id so Herald's retry is taken later, and ask for that retry.
        state
            .seen
            .lock()
            .expect("seen-events lock")
            .remove(&event_id);
        tracing::warn!(%event_id, reason = "queue full", "deferred");
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    tracing::info!(%event_id, %event_type, "accepted");
    StatusCode::NO_CONTENT
}

/// The most recent [`REMEMBERED_EVENTS`] event ids, oldest forgotten first.
#[derive(Default)]
pub(crate) struct SeenEvents {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenEvents {
    /// Remembers `id`; false when it was already remembered.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED_EVENTS {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        true
    }

    fn remove(&mut self, id: &str) {
        self.ids.remove(id);
        self.order.retain(|remembered| remembered != id);
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use herald_verify::{SigningKey, sign_v1, sign_v1a};
    use tower::ServiceExt as _;

    use super::*;

    const BODY: &str = r#"{"id":"evt_1","type":"wallet.balance_low","data":{"balance":"3.20"}}"#;

    fn secret() -> Secret {
        Secret::from_bytes([42; 32])
    }

    fn signed(key: &Secret, timestamp: i64, body: &str) -> String {
        format!(
            "t={timestamp},v1={}",
            sign_v1(key.as_bytes(), timestamp, body.as_bytes())
        )
    }

    async fn send(app: &Router, signature: Option<String>, body: &str) -> StatusCode {
        let mut request = Request::post("/webhooks");
        if let Some(signature) = signature {
            request = request.header(header::SIGNATURE, signature);
        }
        let request = request
            .body(Body::from(body.to_owned()))
            .expect("valid request");
        app.clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    fn app() -> (Router, mpsc::Receiver<Delivery>) {
        let (sender, receiver) = mpsc::channel(8);
        (
            router(AppState::new(
                Key::Secret(secret()),
                Seen::default(),
                sender,
            )),
            receiver,
        )
    }

    fn signing_key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    /// The Standard Webhooks headers of `BODY`'s event, with `entries` as `webhook-signature`.
    async fn send_v1a(app: &Router, timestamp: i64, entries: &str, body: &str) -> StatusCode {
        let request = Request::post("/webhooks")
            .header(header::WEBHOOK_ID, "evt_1")
            .header(header::WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(header::WEBHOOK_SIGNATURE, entries)
            .body(Body::from(body.to_owned()))
            .expect("valid request");
        app.clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    #[tokio::test]
    async fn with_a_public_key_only_a_valid_v1a_is_accepted() {
        let (sender, mut queue) = mpsc::channel(8);
        let public_key = signing_key().verifying_key().to_bytes();
        let app = router(AppState::new(
            Key::PublicKey(public_key),
            Seen::default(),
            sender,
        ));
        let now = unix_now();
        let v1a = |key: &SigningKey, timestamp| sign_v1a(key, "evt_1", timestamp, BODY.as_bytes());
        let other_key = SigningKey::from_bytes(&[8; 32]);

        let cases = [
            (now, v1a(&other_key, now), BODY, StatusCode::UNAUTHORIZED),
            (
                now,
                v1a(&signing_key(), now),
                &BODY.replace("3.20", "9.99"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                now - 600,
                v1a(&signing_key(), now - 600),
                BODY,
                StatusCode::UNAUTHORIZED,
            ),
            (now, "v1,AAAA".to_owned(), BODY, StatusCode::BAD_REQUEST),
            (
                now,
                format!("v1,AAAA {}", v1a(&signing_key(), now)),
                BODY,
                StatusCode::NO_CONTENT,
            ),
        ];
        for (timestamp, entries, body, expected) in cases {
            assert_eq!(
                send_v1a(&app, timestamp, &entries, body).await,
                expected,
                "{entries}"
            );
        }
        assert_eq!(
            queue.recv().await.map(|delivery| delivery.event.id),
            Some("evt_1".to_owned())
        );
        assert!(queue.try_recv().is_err(), "nothing rejected is queued");
    }

    #[tokio::test]
    async fn a_signed_delivery_is_accepted_once_and_queued() {
        let (app, mut queue) = app();
        let signature = signed(&secret(), unix_now(), BODY);

        let first = send(&app, Some(signature.clone()), BODY).await;
        let again = send(&app, Some(signature), BODY).await;

        assert_eq!(first, StatusCode::NO_CONTENT);
        assert_eq!(again, StatusCode::OK);
        assert_eq!(
            queue.recv().await.map(|delivery| delivery.event.id),
            Some("evt_1".to_owned())
        );
        assert!(queue.try_recv().is_err(), "a duplicate is not queued");
    }

    #[tokio::test]
    async fn forged_stale_and_unsigned_deliveries_are_rejected() {
        let (app, mut queue) = app();
        let now = unix_now();
        let tampered = BODY.replace("3.20", "9.99");

        let cases = [
            (
                Some(signed(&secret(), now, BODY)),
                tampered.as_str(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                Some(signed(&Secret::from_bytes([7; 32]), now, BODY)),
                BODY,
                StatusCode::UNAUTHORIZED,
            ),
            (
                Some(signed(&secret(), now - 600, BODY)),
                BODY,
                StatusCode::UNAUTHORIZED,
            ),
            (Some("v1=abc".to_owned()), BODY, StatusCode::BAD_REQUEST),
            (None, BODY, StatusCode::BAD_REQUEST),
        ];
        for (signature, body, expected) in cases {
            assert_eq!(
                send(&app, signature.clone(), body).await,
                expected,
                "{signature:?}"
            );
        }
        assert!(queue.try_recv().is_err(), "nothing rejected is queued");
    }

    #[tokio::test]
    async fn the_sequence_number_goes_to_the_worker() {
        let (app, mut queue) = app();
        let request = Request::post("/webhooks")
            .header(header::SIGNATURE, signed(&secret(), unix_now(), BODY))
            .header(header::SEQUENCE, "3")
            .body(Body::from(BODY))
            .expect("valid request");

        let status = app.oneshot(request).await.expect("infallible").status();

        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(queue.recv().await.and_then(|d| d.sequence), Some(3));
    }

    #[test]
    fn seen_events_forget_the_oldest_beyond_the_bound() {
        let mut seen = SeenEvents::default();
        for n in 0..=REMEMBERED_EVENTS {
            assert!(seen.insert(&format!("evt_{n}")));
        }

        assert!(!seen.insert(&format!("evt_{REMEMBERED_EVENTS}")));
        assert!(seen.insert("evt_0"), "the oldest id was forgotten");
    }
}
