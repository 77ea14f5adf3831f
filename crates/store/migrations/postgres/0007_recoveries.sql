-- Recovery (POST /v1/webhooks/{id}/recover): an endpoint's dead or missed events delivered
-- again, in chunks, by whichever node takes the next chunk.
--
-- A recovered delivery keeps its attempt count (attempt numbers go on) but starts a fresh
-- retry schedule: `schedule_base` is the number of attempts made before its current
-- schedule began.
ALTER TABLE deliveries ADD COLUMN schedule_base BIGINT NOT NULL DEFAULT 0;

CREATE TABLE recoveries (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL,
    endpoint_id UUID NOT NULL,
    -- `queued`, `running` or `done`.
    status TEXT NOT NULL,
    since BIGINT NOT NULL,
    until BIGINT NOT NULL,
    -- JSON array of event types, or NULL for every type.
    event_types TEXT,
    include_missing BOOLEAN NOT NULL,
    dry_run BOOLEAN NOT NULL,
    -- The request as given, so an identical one while this runs answers this one.
    fingerprint TEXT NOT NULL,
    matched BIGINT NOT NULL,
    enqueued BIGINT NOT NULL,
    -- Where the next chunk starts: the (created_at, id) of the last event handled.
    cursor_created_at BIGINT,
    cursor_event_id UUID,
    -- Chunks done; a chunk commits only if nobody did this one meanwhile.
    chunks BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);

CREATE UNIQUE INDEX recoveries_unfinished_request ON recoveries (endpoint_id, fingerprint) WHERE status <> 'done';
CREATE INDEX recoveries_unfinished ON recoveries (created_at) WHERE status <> 'done';
