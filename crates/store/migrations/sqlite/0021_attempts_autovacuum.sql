-- Kept in step with PostgreSQL's 0021, which tunes autovacuum for the attempt records. SQLite
-- has no visibility map to keep: a count reads its covering index alone already.
SELECT 1;
