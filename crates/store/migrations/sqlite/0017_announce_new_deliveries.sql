-- Kept in step with PostgreSQL's 0017, which has every node LISTEN for new deliveries. SQLite
-- has one node, whose publishers wake its worker in memory: nothing to store.
SELECT 1;
