-- Kept in step with PostgreSQL's 0018, which moves the announcement of new deliveries out of a
-- trigger. SQLite's one node is woken in memory: nothing to store.
SELECT 1;
