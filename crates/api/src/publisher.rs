//! Group commit for publishing. Concurrent publish requests are gathered into one store
//! transaction: durability stays exactly as strong (the 202 still waits for the commit), but
//! one fsync covers every request that arrived while the previous commit was in progress, so
//! throughput grows with concurrency instead of being capped by the disk's sync rate.

use std::fmt;
use std::sync::Arc;

use herald_domain::Event;
use herald_store::{PublishedEvent, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

/// Most events one gathered transaction holds.
const MAX_EVENTS_PER_COMMIT: usize = 2_000;

/// Hands events to the committing task and waits for their commit.
#[derive(Debug, Clone)]
pub struct Publisher {
    requests: mpsc::Sender<PublishRequest>,
}

#[derive(Debug)]
struct PublishRequest {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<PublishedEvent>, StoreError>>,
}

impl Publisher {
    /// Starts the committing task; it ends when the last `Publisher` clone is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (requests, receiver) = mpsc::channel(1_024);
        tokio::spawn(commit_loop(store, receiver));
        Self { requests }
    }

    /// Publishes `events` and returns once they and their fan-out are committed, with one
    /// answer per event in order.
    pub async fn publish(&self, events: Vec<Event>) -> Result<Vec<PublishedEvent>, StoreError> {
        // The publish's span, a child of the request's (so in the caller's trace): from the
        // hand-over to the commit that covered these events. A debug span: exported when
        // tracing is on, and with tracing off and `info` logging disabled at its call site,
        // its fields never formatted.
        let span = tracing::debug_span!(
            "publish",
            "herald.org.id" = %OrgIds(&events),
            "herald.event.count" = events.len(),
            "herald.event.ids" = %EventIds(&events),
        );
        async {
            let (reply, answer) = oneshot::channel();
            self.requests
                .send(PublishRequest { events, reply })
                .await
                .map_err(|_| StoreError::Corrupt("the publisher has stopped"))?;
            answer
                .await
                .map_err(|_| StoreError::Corrupt("the publisher dropped a request"))?
        }
        .instrument(span)
        .await
    }
}

/// The events' ids, comma-separated, for the publish span.
struct EventIds<'a>(&'a [Event]);

impl fmt::Display for EventIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, event) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", event.id)?;
        }
        Ok(())
    }
}

/// The events' organizations, each once, comma-separated (a batch of the admin API may
/// publish for several).
struct OrgIds<'a>(&'a [Event]);

impl fmt::Display for OrgIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, event) in self.0.iter().enumerate() {
            if self.0[..index]
                .iter()
                .any(|earlier| earlier.org_id == event.org_id)
            {
                continue;
            }
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", event.org_id)?;
        }
        Ok(())
    }
}

async fn commit_loop(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<PublishRequest>) {
    while let Some(first) = receiver.recv().await {
        let mut gathered = vec![first];
        let mut total = gathered[0].events.len();
        while total < MAX_EVENTS_PER_COMMIT {
            match receiver.try_recv() {
                Ok(next) => {
                    total += next.events.len();
                    gathered.push(next);
                }
                Err(_) => break,
            }
        }
        commit(store.as_ref(), gathered).await;
    }
}

/// Commits the gathered requests together; if that fails, each request is committed on its
/// own, so one request's failure is never another's and every caller gets its own error.
async fn commit(store: &dyn Store, gathered: Vec<PublishRequest>) {
    if gathered.len() > 1 {
        let all: Vec<Event> = gathered
            .iter()
            .flat_map(|request| request.events.iter().cloned())
            .collect();
        if let Ok(mut published) = store.publish_events(&all).await {
            for request in gathered {
                let rest = published.split_off(request.events.len());
                let _ = request.reply.send(Ok(published));
                published = rest;
            }
            return;
        }
    }
    for request in gathered {
        let answer = store.publish_events(&request.events).await;
        let _ = request.reply.send(answer);
    }
}
