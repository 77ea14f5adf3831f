-- Events, deliveries and attempts (CONTRACT.md sections 5 and 8).
--
-- An event is what the platform published. A delivery is one (event, endpoint) pair: the unit
-- of work the worker claims, with its schedule and lease. An attempt is one try of a delivery:
-- the "delivery record" of the public API, immutable once written.

CREATE TABLE events (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id),
    event_type TEXT NOT NULL,
    -- The event's `data` object as JSON text, exactly as published.
    data TEXT NOT NULL,
    idempotency_key TEXT,
    -- `publish`, `replay` or `test`.
    origin TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- One live idempotency key per organization; a key older than 24 hours is released (set to
-- NULL) by the publish that reuses it.
CREATE UNIQUE INDEX events_idempotency ON events (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_by_age ON events (created_at);

CREATE TABLE deliveries (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    endpoint_id BLOB NOT NULL,
    -- `pending` until it ends as `success` or `dead`.
    status TEXT NOT NULL,
    -- Attempts made so far.
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    -- A claimed delivery belongs to its claimer until this instant; then anyone may take it.
    lease_until INTEGER,
    created_at INTEGER NOT NULL
) STRICT;

-- The claim query: pending deliveries in due order. Finished deliveries leave the index.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_pending_by_endpoint ON deliveries (endpoint_id) WHERE status = 'pending';
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE attempts (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL,
    delivery_id BLOB NOT NULL,
    endpoint_id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    response_status INTEGER,
    response_time_ms INTEGER NOT NULL,
    request_body_sha256 TEXT NOT NULL,
    request_body_bytes INTEGER NOT NULL,
    -- JSON object of the headers sent.
    request_headers TEXT NOT NULL,
    response_body_excerpt TEXT,
    error TEXT,
    next_attempt_at INTEGER,
    occurred_at INTEGER NOT NULL
) STRICT;

-- The deliveries feed: an organization's attempts, newest first, optionally by endpoint.
CREATE INDEX attempts_by_org ON attempts (org_id, id);
CREATE INDEX attempts_by_endpoint ON attempts (org_id, endpoint_id, id);
CREATE INDEX attempts_by_age ON attempts (occurred_at);

-- When an endpoint's unbroken run of failures began; NULL after any success. Drives the
-- automatic disable after days of failure.
ALTER TABLE endpoints ADD COLUMN failing_since INTEGER;
