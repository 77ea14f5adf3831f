-- Kept in step with PostgreSQL's 0019, which tunes autovacuum for the delivery queue. SQLite
-- reuses a deleted or replaced row's space at once: nothing to store.
SELECT 1;
