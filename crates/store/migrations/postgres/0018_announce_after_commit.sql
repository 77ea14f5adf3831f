-- New deliveries are announced after their transaction commits, by the node that stored them
-- (crates/store/src/postgres/announce.rs), no longer by 0017's trigger inside it: PostgreSQL
-- holds one database-wide lock from a notifying transaction's commit until that commit is on
-- disk, so the trigger made every publish wait for every other publish's disk flush in turn.
DROP TRIGGER deliveries_announce ON deliveries;
DROP FUNCTION herald_announce_new_deliveries();
