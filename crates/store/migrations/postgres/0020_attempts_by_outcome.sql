-- The deliveries feed's `outcome` filter (docs/api.md#list-deliveries): "this organization's
-- dead (or retried) deliveries", the portal's failures view. Through `attempts_by_org
-- (org_id, id)` alone the filter read every one of the organization's records to keep the few
-- that match, for the count and again for a page with fewer matches than its limit: on
-- PostgreSQL, an organization with 20,000 successful records in a table of 10,000,000 took
-- 13 ms for each of the two, and 0.1 ms with this index (BENCHMARKS.md, twelfth session).
-- With it the filter costs what it finds; within one outcome the index is in id order, so a
-- page is one range read backwards.
--
-- It is added beside `attempts_by_org`, not in its place: a page without an outcome filter
-- made of the three outcomes' ranges, merged, let PostgreSQL's planner read the primary key
-- backwards past every newer record of other organizations when an outcome was rare in the
-- organization's recent records. Building it on 10,000,000 records took 11 s on PostgreSQL,
-- during which the migration holds writes to `attempts`.
--
-- The pool's statement timeout (15 s) would cancel the build on a larger table, and every
-- node would fail its start the same way: this migration's transaction has none.
SET LOCAL statement_timeout = 0;
CREATE INDEX attempts_by_org_outcome ON attempts (org_id, outcome, id);
