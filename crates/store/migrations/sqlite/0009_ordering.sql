-- Ordered delivery per key, per-endpoint sequence numbers, and the catch-up feed
-- (docs/api.md#ordering-and-sequence-numbers).
--
-- Every delivery gets, at fan-out, the next number of its endpoint's sequence
-- (`endpoint_sequences`, bumped in the publishing transaction: on PostgreSQL the row lock
-- orders concurrent publishes, so numbers follow commit order without gaps). A table of its
-- own, not a column of `endpoints`, so that its locks never meet those the recorder takes on
-- endpoint rows. Deliveries made before this migration have none and are not in the feed.
ALTER TABLE events ADD COLUMN ordering_key TEXT;
CREATE TABLE endpoint_sequences (
    endpoint_id BLOB PRIMARY KEY,
    last_sequence INTEGER NOT NULL
) STRICT;
ALTER TABLE deliveries ADD COLUMN sequence INTEGER;
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE attempts ADD COLUMN sequence INTEGER;
ALTER TABLE attempts ADD COLUMN ordering_key TEXT;

-- The catch-up feed: an endpoint's deliveries by sequence.
CREATE INDEX deliveries_by_sequence ON deliveries (endpoint_id, sequence) WHERE sequence IS NOT NULL;

-- A key's pending deliveries to an endpoint, in sequence order: only the first is ever due;
-- the rest are parked (due at the end of time) until the one before them ends.
CREATE INDEX deliveries_pending_by_key ON deliveries (endpoint_id, ordering_key, sequence)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;
