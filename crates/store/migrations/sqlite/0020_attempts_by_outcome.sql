-- The deliveries feed's `outcome` filter (docs/api.md#list-deliveries): "this organization's
-- dead (or retried) deliveries", the portal's failures view. Through `attempts_by_org
-- (org_id, id)` the filter read every one of the organization's records to keep the few that
-- match, for the count and again for a page with fewer matches than its limit: on PostgreSQL,
-- an organization with 20,000 successful records in a table of 10,000,000 took 13 ms for each
-- of the two, and 0.1 ms with this index (BENCHMARKS.md, twelfth session). With it the filter
-- costs what it finds.
--
-- It replaces `attempts_by_org` rather than joining it, so recording an attempt updates no
-- more indexes than before: within one outcome the index is in id order, and the feed's page
-- without an outcome filter reads the newest of the three outcomes' ranges and merges them
-- (`crates/store/src/shared/delivery.rs`, `feed_page`). Building it on an existing table of
-- 10,000,000 records took 11 s on PostgreSQL, during which the migration holds writes to
-- `attempts`.
CREATE INDEX attempts_by_org_outcome ON attempts (org_id, outcome, id);
DROP INDEX attempts_by_org;
