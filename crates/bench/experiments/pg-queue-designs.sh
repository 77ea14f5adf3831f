#!/usr/bin/env bash
# Three designs of PostgreSQL's delivery queue, and what an attempt's indexes cost, timed with
# pgbench on Herald's own schema (issue 19; the figures are in BENCHMARKS.md, "2026-12-04
# (tenth session)"):
#
#   current  a claim moves `next_attempt_at` (indexed) to the lease's end; the settle moves
#            `status` (a partial indexes' predicate): neither update is HOT.
#   hot      a claim stamps an unindexed `leased_until` instead (fillfactor 70), so it can be
#            HOT; the claim skips leased rows by reading them.
#   queue    a separate small queue table (fillfactor 70, lease unindexed) whose row is
#            deleted at the settle; the record (`records`: `deliveries` without its pending
#            indexes, fillfactor 80, so its one update, the settle, can be HOT) is updated once.
#   attempts6, attempts2
#            100 attempt rows inserted (ids time-ordered, as Herald's UUIDv7), into `attempts`
#            with its six indexes, and into a copy with only the primary key and
#            `attempts_by_event`.
#
# Each pgbench transaction set is one endpoint's cycle of 100 deliveries: insert them,
# claim them, settle them as delivered. Reported per design and round: pgbench's mean
# latency of the set, the WAL it wrote, and how many updates were HOT.
#
# Usage: crates/bench/experiments/pg-queue-designs.sh [rounds] [sets]   (default 3 500)
# Needs psql and pgbench, and PostgreSQL at $PGHOST (127.0.0.1) as $PGUSER (postgres).
# PGOPTIONS='-c synchronous_commit=off' in the environment takes the commits' WAL flushes out
# of the times (BENCHMARKS.md gives both).
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds="${1:-3}"
sets="${2:-500}"
export PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-postgres}"
database="herald_queue_designs"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"; psql -q -d postgres -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null' EXIT

psql -q -d postgres -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" \
    -c "CREATE DATABASE $database" >/dev/null
for migration in crates/store/migrations/postgres/*.sql; do
    psql -q -d "$database" -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done
psql -q -d "$database" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
ALTER TABLE deliveries ADD COLUMN leased_until BIGINT;
-- The queue design's tables: the record without its pending indexes, and the queue.
CREATE TABLE records (LIKE deliveries INCLUDING DEFAULTS) WITH (fillfactor = 80);
ALTER TABLE records ADD PRIMARY KEY (id);
CREATE INDEX records_by_event ON records (event_id);
CREATE INDEX records_by_sequence ON records (endpoint_id, sequence) WHERE sequence IS NOT NULL;
CREATE TABLE delivery_queue (id UUID PRIMARY KEY, endpoint_id UUID NOT NULL,
    next_attempt_at BIGINT NOT NULL, leased_until BIGINT, lease_token UUID) WITH (fillfactor = 70);
CREATE INDEX delivery_queue_due ON delivery_queue (endpoint_id, next_attempt_at, id);
-- The attempt rows with two of their six indexes.
CREATE TABLE attempts_two (LIKE attempts INCLUDING DEFAULTS);
ALTER TABLE attempts_two ADD PRIMARY KEY (id);
CREATE INDEX attempts_two_by_event ON attempts_two (event_id);
-- A time-ordered UUID, like Herald's UUIDv7 ids (PostgreSQL 15 has no uuidv7()).
CREATE FUNCTION time_ordered_uuid() RETURNS UUID LANGUAGE sql AS $$
  SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000000)::bigint), 14, '0')
          || substr(md5(random()::text), 1, 18))::uuid $$;
SQL

# What every design inserts: 100 deliveries of one of 10 endpoints, due at once.
new_rows="SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', gen_random_uuid(),
  ('00000000-0000-0000-0000-00000000000' || :e)::uuid, 'pending', 0, 5, g, :base + g
  FROM generate_series(1, 100) g"
columns="id, org_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, sequence"
header='\set e random(0, 9)
\set base random(1, 1000000000)
CREATE TEMP TABLE IF NOT EXISTS claimed_ids (id UUID);
TRUNCATE claimed_ids;'

cat > "$scratch/current.sql" <<SQL
$header
INSERT INTO deliveries ($columns) $new_rows;
WITH claimed AS (UPDATE deliveries SET next_attempt_at = 9000000000, lease_token = gen_random_uuid()
  WHERE id IN (SELECT id FROM deliveries WHERE endpoint_id = ('00000000-0000-0000-0000-00000000000' || :e)::uuid
    AND status = 'pending' AND next_attempt_at <= 1000000 ORDER BY next_attempt_at LIMIT 100 FOR UPDATE SKIP LOCKED)
  RETURNING id) INSERT INTO claimed_ids SELECT id FROM claimed;
UPDATE deliveries SET status = 'succeeded', attempts = 1, lease_token = NULL WHERE id IN (SELECT id FROM claimed_ids);
SQL

cat > "$scratch/hot.sql" <<SQL
$header
INSERT INTO deliveries ($columns) $new_rows;
WITH claimed AS (UPDATE deliveries SET leased_until = 9000000000, lease_token = gen_random_uuid()
  WHERE id IN (SELECT id FROM deliveries WHERE endpoint_id = ('00000000-0000-0000-0000-00000000000' || :e)::uuid
    AND status = 'pending' AND next_attempt_at <= 1000000 AND (leased_until IS NULL OR leased_until <= 1000000)
    ORDER BY next_attempt_at LIMIT 100 FOR UPDATE SKIP LOCKED)
  RETURNING id) INSERT INTO claimed_ids SELECT id FROM claimed;
UPDATE deliveries SET status = 'succeeded', attempts = 1, lease_token = NULL WHERE id IN (SELECT id FROM claimed_ids);
SQL

cat > "$scratch/queue.sql" <<SQL
$header
WITH stored AS (INSERT INTO records ($columns) $new_rows RETURNING id, endpoint_id, next_attempt_at)
  INSERT INTO delivery_queue (id, endpoint_id, next_attempt_at) SELECT * FROM stored;
WITH claimed AS (UPDATE delivery_queue SET leased_until = 9000000000, lease_token = gen_random_uuid()
  WHERE id IN (SELECT id FROM delivery_queue WHERE endpoint_id = ('00000000-0000-0000-0000-00000000000' || :e)::uuid
    AND next_attempt_at <= 1000000 AND (leased_until IS NULL OR leased_until <= 1000000)
    ORDER BY next_attempt_at LIMIT 100 FOR UPDATE SKIP LOCKED)
  RETURNING id) INSERT INTO claimed_ids SELECT id FROM claimed;
DELETE FROM delivery_queue WHERE id IN (SELECT id FROM claimed_ids);
UPDATE records SET status = 'succeeded', attempts = 1, lease_token = NULL WHERE id IN (SELECT id FROM claimed_ids);
SQL

attempt_insert() {
    cat <<SQL
\\set base random(1, 1000000000)
INSERT INTO $1 (id, org_id, delivery_id, endpoint_id, event_id, event_type, url, attempt, outcome,
  response_status, response_time_ms, request_body_sha256, request_body_bytes, request_headers,
  occurred_at)
SELECT time_ordered_uuid(), '00000000-0000-0000-0000-000000000001', time_ordered_uuid(),
  ('00000000-0000-0000-0000-00000000000' || (g % 10))::uuid, time_ordered_uuid(), 'invoice.paid',
  'https://example.com/hook', 1, 'success', 200, 3,
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 120,
  '{"content-type":"application/json","webhook-id":"msg_x","webhook-signature":"[redacted]"}',
  :base + g FROM generate_series(1, 100) g;
SQL
}
attempt_insert attempts > "$scratch/attempts6.sql"
attempt_insert attempts_two > "$scratch/attempts2.sql"

printf '%-9s %5s %12s %8s  %s\n' design round "ms per set" "WAL MB" "HOT updates / updates"
for round in $(seq "$rounds"); do
    for design in current hot queue attempts6 attempts2; do
        fillfactor=100
        [ "$design" = hot ] && fillfactor=70
        psql -q -d "$database" -v ON_ERROR_STOP=1 \
            -c "TRUNCATE deliveries, records, delivery_queue, attempts, attempts_two" \
            -c "ALTER TABLE deliveries SET (fillfactor = $fillfactor)" -c "CHECKPOINT" \
            -c "SELECT pg_stat_reset()" >/dev/null
        lsn="$(psql -Atq -d "$database" -c "SELECT pg_current_wal_lsn()")"
        if ! pgbench -n -f "$scratch/$design.sql" -t "$sets" "$database" >"$scratch/out" 2>&1; then
            echo "pgbench failed on the $design design:" >&2
            cat "$scratch/out" >&2
            exit 1
        fi
        latency="$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$scratch/out")"
        sleep 1 # the statistics collector reports a moment later
        psql -Atq -d "$database" -F ' ' -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn') / 1048576.0, 1),
            string_agg(relname || ' ' || n_tup_hot_upd || '/' || n_tup_upd, ', ')
            FROM pg_stat_user_tables WHERE n_tup_upd > 0" |
            while read -r wal hot; do
                printf '%-9s %5s %12s %8s  %s\n' "$design" "$round" "$latency" "$wal" "$hot"
            done
    done
done
