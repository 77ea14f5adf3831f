-- Events, deliveries and attempts (CONTRACT.md sections 5 and 8); see the SQLite migration of
-- the same name for the meaning of each table.

CREATE TABLE events (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id),
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    idempotency_key TEXT,
    origin TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE UNIQUE INDEX events_idempotency ON events (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_by_age ON events (created_at);

CREATE TABLE deliveries (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL,
    event_id UUID NOT NULL,
    endpoint_id UUID NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    created_at BIGINT NOT NULL
);

-- The claim query walks this partial index in due order; finished deliveries leave it, so it
-- stays as small as the backlog however long history grows.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_pending_by_endpoint ON deliveries (endpoint_id) WHERE status = 'pending';
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE attempts (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL,
    delivery_id UUID NOT NULL,
    endpoint_id UUID NOT NULL,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    response_status BIGINT,
    response_time_ms BIGINT NOT NULL,
    request_body_sha256 TEXT NOT NULL,
    request_body_bytes BIGINT NOT NULL,
    request_headers TEXT NOT NULL,
    response_body_excerpt TEXT,
    error TEXT,
    next_attempt_at BIGINT,
    occurred_at BIGINT NOT NULL
);

CREATE INDEX attempts_by_org ON attempts (org_id, id);
CREATE INDEX attempts_by_endpoint ON attempts (org_id, endpoint_id, id);
CREATE INDEX attempts_by_age ON attempts (occurred_at);

ALTER TABLE endpoints ADD COLUMN failing_since BIGINT;
