//! Sequence numbers and the catch-up feed (docs/receiving.md#sequence-numbers-and-catching-up).
//!
//! Every delivery carries `X-AmCore-Sequence`: 1, 2, 3 … per endpoint, without gaps. The worker
//! keeps the number up to which it has processed everything; when a delivery skips ahead, it
//! logs the gap and, if the feed is configured, fetches the missed events from
//! `GET /v1/webhooks/{id}/events` and processes them first.

use serde::Deserialize;

use crate::receiver::Event;

/// Most entries one page of the feed holds.
const PAGE_LIMIT: u32 = 200;

/// The sequence number up to which every event has been processed.
///
/// In memory, so a restart forgets it: the first numbered delivery after a start is taken as
/// the starting point. A real receiver stores it with its work, in its database, and catches up
/// from there after a restart.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    last: Option<u64>,
}

impl Progress {
    /// The sequence to fetch after when `sequence` skips ahead of the last one (`None` when
    /// nothing is missing: the next number, a retry, a late delivery, or the first one seen).
    pub(crate) fn gap_before(&self, sequence: u64) -> Option<u64> {
        self.last.filter(|last| sequence > last.saturating_add(1))
    }

    /// Records that everything up to `sequence` has been processed.
    pub(crate) fn advance_to(&mut self, sequence: u64) {
        self.last = Some(self.last.map_or(sequence, |last| last.max(sequence)));
    }
}

/// Herald's API, where the feed is read: `HERALD_API_URL`, `HERALD_API_KEY` (a key with
/// `webhooks:read`) and `HERALD_ENDPOINT_ID`.
pub(crate) struct Feed {
    client: reqwest::Client,
    url: String,
    api_key: String,
}

/// One page of the feed; only the fields this receiver reads.
#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<Entry>,
    meta: PageMeta,
}

#[derive(Debug, Deserialize)]
struct Entry {
    sequence: u64,
    event_id: String,
    /// `pending` (still being delivered or retried), `delivered` or `dead`.
    status: String,
    /// The envelope exactly as delivered.
    body: Event,
}

#[derive(Debug, Deserialize)]
struct PageMeta {
    /// `None` when there is nothing after this page.
    next_after_sequence: Option<u64>,
}

impl Feed {
    /// The feed of endpoint `endpoint_id` on the Herald at `api_url`, read with `api_key`.
    pub(crate) fn new(api_url: &str, api_key: String, endpoint_id: &str) -> Self {
        // The workspace's lints keep Herald's own outbound HTTP on its SSRF-checked client; this
        // is a receiver calling Herald's API, so a plain client is right.
        #[expect(
            clippy::disallowed_methods,
            reason = "a client of Herald's API, not a delivery"
        )]
        let client = reqwest::Client::new();
        Self {
            client,
            url: format!(
                "{}/v1/webhooks/{endpoint_id}/events",
                api_url.trim_end_matches('/')
            ),
            api_key,
        }
    }

    /// Hands `process` each event after `after` and before `before`, by ascending sequence,
    /// whose id `is_new` accepts (the receiver's dedupe), following the pages.
    pub(crate) async fn catch_up(
        &self,
        after: u64,
        before: u64,
        mut is_new: impl FnMut(&str) -> bool,
        mut process: impl FnMut(&Event),
    ) -> reqwest::Result<()> {
        let mut after = after;
        loop {
            let page: Page = self
                .client
                .get(&self.url)
                .bearer_auth(&self.api_key)
                .query(&[("after_sequence", after), ("limit", PAGE_LIMIT.into())])
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for entry in page.data {
                if entry.sequence >= before {
                    // This delivery, and what follows it, arrive as deliveries of their own.
                    return Ok(());
                }
                if is_new(&entry.event_id) {
                    let Entry {
                        sequence,
                        event_id,
                        status,
                        ..
                    } = &entry;
                    tracing::info!(%event_id, sequence, %status, "caught up");
                    process(&entry.body);
                }
            }
            match page.meta.next_after_sequence {
                Some(next) => after = next,
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_gap_is_a_number_past_the_next_one() {
        let mut progress = Progress::default();
        assert_eq!(progress.gap_before(7), None, "the first number is a start");
        progress.advance_to(7);

        assert_eq!(progress.gap_before(8), None, "the next number");
        assert_eq!(progress.gap_before(7), None, "a retry keeps its number");
        assert_eq!(progress.gap_before(3), None, "a late delivery");
        assert_eq!(progress.gap_before(9), Some(7), "8 is missing");

        progress.advance_to(9);
        progress.advance_to(4);
        assert_eq!(progress.gap_before(10), None, "it never goes back");
    }

    /// A feed of sequences 1 to 5, two per page, that records the `after_sequence` asked for.
    async fn feed(
        State(asked): State<Arc<Mutex<Vec<u64>>>>,
        headers: HeaderMap,
        Query(query): Query<Vec<(String, String)>>,
    ) -> Result<Json<Value>, StatusCode> {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer key") {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let after: u64 = query
            .iter()
            .find(|(name, _)| name == "after_sequence")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or(StatusCode::BAD_REQUEST)?;
        asked.lock().expect("lock").push(after);
        let data: Vec<Value> = (after + 1..=5)
            .take(2)
            .map(|sequence| {
                json!({
                    "sequence": sequence, "event_id": format!("evt_{sequence}"),
                    "type": "t", "ordering_key": null, "created_at": "2026-04-26T12:00:00Z",
                    "status": "delivered",
                    "body": {"id": format!("evt_{sequence}"), "type": "t", "data": {}},
                })
            })
            .collect();
        let next = (data.len() == 2).then_some(after + 2);
        Ok(Json(
            json!({"success": true, "data": data, "meta": {"limit": 2, "next_after_sequence": next}}),
        ))
    }

    #[tokio::test]
    async fn the_feed_fills_a_gap_page_by_page_skipping_what_was_seen() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/webhooks/ep_1/events", axum::routing::get(feed))
            .with_state(Arc::clone(&asked));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let feed = Feed::new(&format!("http://{address}/"), "key".to_owned(), "ep_1");
        let mut processed = Vec::new();
        // Seen 1 and then 5: 2, 3 and 4 are missing, and 3 came in meanwhile.
        feed.catch_up(
            1,
            5,
            |id| id != "evt_3",
            |event| processed.push(event.id.clone()),
        )
        .await
        .expect("catch-up");

        assert_eq!(processed, ["evt_2", "evt_4"]);
        assert_eq!(*asked.lock().expect("lock"), [1, 3]);
    }
}
