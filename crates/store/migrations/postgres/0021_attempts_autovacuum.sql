-- Autovacuum for the attempt records, where the server runs it. Attempts are only inserted (the
-- retention purge deletes them later), so they leave no dead rows, but only a vacuum marks
-- their pages all-visible, and until one does, the feed's counts and the endpoint statistics
-- visit each counted attempt's row instead of reading their index alone. PostgreSQL's default
-- vacuums an insert-only table once a fifth of it is new: on a table of ten million records,
-- the newest two million, the ones organizations read most, would stay unmarked. This vacuums
-- after every 10,000 inserts, the point at which Herald vacuums the table itself when
-- autovacuum does not (crates/store/src/postgres/upkeep.rs). Such a vacuum reads only the pages
-- not yet all-visible and no index, so its cost follows the rows since the last one, not the
-- table's size. Dead rows (the purge's) keep PostgreSQL's default thresholds; without the
-- cost-based pauses and without truncating the table's empty tail pages, as for deliveries.
ALTER TABLE attempts SET (
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
