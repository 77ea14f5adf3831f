//! The receiving route: verify, dedupe, queue, answer. No TLS or configuration here (main.rs).
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
use herald_verify::{DEFAULT_TOLERANCE, Secret, VerifyError, header, unix_now, verify_amcore};
use serde::Deserialize;
use tokio::sync::mpsc;

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

/// What the route needs: the secret, the ids already seen, and the queue to the worker.
#[derive(Clone)]
pub(crate) struct AppState {
    secret: Arc<Secret>,
    seen: Arc<Mutex<SeenEvents>>,
    queue: mpsc::Sender<Event>,
}

impl AppState {
    /// State verifying with `secret` and handing accepted events to `queue`.
    pub(crate) fn new(secret: Secret, queue: mpsc::Sender<Event>) -> Self {
        Self {
            secret: Arc::new(secret),
            seen: Arc::default(),
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

/// Does the slow part, after the answer has gone: here, only logging the event.
pub(crate) async fn process_events(mut queue: mpsc::Receiver<Event>) {
    while let Some(event) = queue.recv().await {
        tracing::info!(event_id = %event.id, event_type = %event.event_type, data = %event.data, "processed");
    }
}

async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // 1. Verify the signature over the raw bytes, before parsing anything.
    let Some(signature) = headers
        .get(header::SIGNATURE)
        .and_then(|value| value.to_str().ok())
    else {
        tracing::warn!(reason = "missing X-AmCore-Signature", "rejected");
        return StatusCode::BAD_REQUEST;
    };
    let verified = verify_amcore(
        signature,
        &body,
        &[&state.secret],
        unix_now(),
        DEFAULT_TOLERANCE,
    );
    if let Err(error) = verified {
        tracing::warn!(reason = %error, "rejected");
        return match error {
            VerifyError::Malformed => StatusCode::BAD_REQUEST,
            VerifyError::TimestampOutOfTolerance | VerifyError::NoMatchingSignature => {
                StatusCode::UNAUTHORIZED
            }
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

    // 3. Queue the work and answer at once.
    let event_type = event.event_type.clone();
    if state.queue.try_send(event).is_err() {
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
struct SeenEvents {
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
    use herald_verify::sign_v1;
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

    fn app() -> (Router, mpsc::Receiver<Event>) {
        let (sender, receiver) = mpsc::channel(8);
        (router(AppState::new(secret(), sender)), receiver)
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
            queue.recv().await.map(|event| event.id),
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
