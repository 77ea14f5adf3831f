-- Leases carried by the due time, and owned by a token.
--
-- A claim moves a delivery's `next_attempt_at` to the end of its lease and stamps it with a
-- fresh `lease_token`. So the claim query reads only rows it may take (a leased row is simply
-- not due until its lease lapses), and recording an attempt changes the delivery only while
-- the recorder's token is still the delivery's: a worker whose lease lapsed and was taken
-- over by another can no longer overwrite the newer claimant's outcome.

UPDATE deliveries SET next_attempt_at = lease_until
 WHERE status = 'pending' AND lease_until IS NOT NULL AND lease_until > next_attempt_at;
ALTER TABLE deliveries DROP COLUMN lease_until;
ALTER TABLE deliveries ADD COLUMN lease_token BLOB;

-- Covering the claim's scan (due order, the endpoint for per-endpoint limits, the id to take),
-- so it never reads the table for rows it skips. `status` is there only because SQLite's
-- planner does not count a partial index as covering unless it holds the columns of its own
-- WHERE clause.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, endpoint_id, id, status) WHERE status = 'pending';

-- One endpoint's due deliveries in due order: refilling an endpoint that has a free slot
-- reads just the rows it takes.
DROP INDEX deliveries_pending_by_endpoint;
CREATE INDEX deliveries_pending_by_endpoint ON deliveries (endpoint_id, next_attempt_at, id, status) WHERE status = 'pending';
