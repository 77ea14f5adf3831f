-- Nodes learn of deliveries stored by another node at once instead of at their next poll: every
-- statement that inserts deliveries (a publish's fan-out, a replay, a recovery) announces it on
-- the channel `herald_deliveries`, which every node LISTENs on (crates/store/src/postgres/listen.rs).
-- A statement-level trigger costs no round trip; PostgreSQL sends the notification at commit, only
-- if the transaction commits, and folds repeats within one transaction into one. The poll stays
-- as the fallback for a notification lost while a listener reconnects.
CREATE FUNCTION herald_announce_new_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_deliveries', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_announce
    AFTER INSERT ON deliveries
    FOR EACH STATEMENT
    EXECUTE FUNCTION herald_announce_new_deliveries();
