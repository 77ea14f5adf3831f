-- Recovery (POST /v1/webhooks/{id}/recover): an endpoint's dead or missed events delivered
-- again, in chunks, by whichever node takes the next chunk.
--
-- A recovered delivery keeps its attempt count (attempt numbers go on) but starts a fresh
-- retry schedule: `schedule_base` is the number of attempts made before its current
-- schedule began.
ALTER TABLE deliveries ADD COLUMN schedule_base INTEGER NOT NULL DEFAULT 0;

CREATE TABLE recoveries (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL,
    endpoint_id BLOB NOT NULL,
    -- `queued`, `running` or `done`.
    status TEXT NOT NULL,
    since INTEGER NOT NULL,
    until INTEGER NOT NULL,
    -- JSON array of event types, or NULL for every type.
    event_types TEXT,
    include_missing INTEGER NOT NULL,
    dry_run INTEGER NOT NULL,
    -- The request as given, so an identical one while this runs answers this one.
    fingerprint TEXT NOT NULL,
    matched INTEGER NOT NULL,
    enqueued INTEGER NOT NULL,
    -- Where the next chunk starts: the (created_at, id) of the last event handled.
    cursor_created_at INTEGER,
    cursor_event_id BLOB,
    -- Chunks done; a chunk commits only if nobody did this one meanwhile.
    chunks INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;

CREATE UNIQUE INDEX recoveries_unfinished_request ON recoveries (endpoint_id, fingerprint) WHERE status <> 'done';
CREATE INDEX recoveries_unfinished ON recoveries (created_at) WHERE status <> 'done';
