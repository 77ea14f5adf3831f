-- An endpoint's payload filter (docs/api.md#filters), as the JSON text the organization wrote,
-- checked before it is stored; NULL when the endpoint takes every event it subscribes to.
-- Named `payload_filter`, not `filter`: FILTER is a keyword of both dialects' aggregate syntax.
-- Wildcard subscriptions (`prefix.*`, `*`) need no column: `events` keeps them as written and
-- fan-out, which already reads the organization's few live endpoints, matches them.
ALTER TABLE endpoints ADD COLUMN payload_filter TEXT;
