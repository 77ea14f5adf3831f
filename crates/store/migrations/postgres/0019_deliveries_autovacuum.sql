-- Autovacuum for the delivery queue, where the server runs it: each delivery is inserted and
-- updated twice (claimed, settled), and every replaced row version keeps an entry in the claim
-- index until a vacuum removes it, ahead of the live entries every claim reads. The default
-- (a vacuum once a fifth of the table is dead) lets millions of dead entries pile up in a
-- table that keeps history; this vacuums after 10,000 dead rows plus a twentieth of the live
-- ones, the same point at which Herald vacuums the table itself when autovacuum does not
-- (crates/store/src/postgres/upkeep.rs); without the cost-based pauses, which would stretch
-- each vacuum over the time the next one is due in; and without truncating the table's empty
-- tail pages, which takes a lock that every insert and update waits for, for pages a queue
-- fills again at once.
ALTER TABLE deliveries SET (
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
