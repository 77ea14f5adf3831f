-- The deliveries feed's `event_id` filter (every attempt of one event, docs/api.md#list-deliveries):
-- without it the filter would scan the organization's attempts. Event ids are UUIDv7, so new
-- attempts land near the index's end.
CREATE INDEX attempts_by_event ON attempts (event_id);
