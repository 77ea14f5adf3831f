-- An endpoint's stats (docs/api.md#endpoint-stats) and trace context (docs/api.md#trace-context).
--
-- The stats read one endpoint's attempts of the last hour, day or week: their outcomes, their
-- latencies and the newest success. This index holds all four columns, so those reads are
-- index-only range scans of that endpoint's window (docs/operations.md#the-stats-query), never
-- a walk of the organization's history. `outcome` comes before `occurred_at` so the newest
-- success is one descent, however long the endpoint has been failing.
CREATE INDEX attempts_for_stats ON attempts (endpoint_id, outcome, occurred_at, response_time_ms);

-- The publisher's W3C `traceparent`, validated (`00-<trace id>-<parent id>-<flags>`), or NULL
-- when it sent none: the event's attempts then use the event id as their trace id.
ALTER TABLE events ADD COLUMN traceparent TEXT;
