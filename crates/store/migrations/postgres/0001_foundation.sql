-- Herald's foundation schema on PostgreSQL. It mirrors migrations/sqlite column for column,
-- so one set of row mappers (rows.rs) serves both backends.
--
-- Instants are BIGINT microseconds since the Unix epoch, as on SQLite: one representation
-- everywhere, integer comparisons, exact round trips. For ad-hoc queries,
-- `to_timestamp(created_at / 1e6)` gives a timestamptz. Ids are UUIDv7, so `ORDER BY id`
-- is creation order. Secrets are stored sealed (nonce || ciphertext, see cipher.rs).

CREATE TABLE orgs (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    webhook_secret BYTEA,
    webhook_secret_rotated_at BIGINT
);

CREATE TABLE api_keys (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id),
    -- SHA-256 of the whole key; lookups go through this unique index.
    key_hash BYTEA NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    -- Comma-separated scope names.
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE INDEX api_keys_by_org ON api_keys (org_id, id);

CREATE TABLE endpoints (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id),
    url TEXT NOT NULL,
    description TEXT,
    -- JSON array of event type names (text, byte-identical to SQLite's).
    events TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    api_version TEXT NOT NULL,
    secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);

-- Live endpoints of an organization, newest first: the list, the cap count and fan-out.
CREATE INDEX endpoints_live_by_org ON endpoints (org_id, id) WHERE deleted_at IS NULL;

CREATE TABLE audit_log (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id),
    api_key_id UUID,
    action TEXT NOT NULL,
    target_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    request_id TEXT,
    reason TEXT
);

CREATE INDEX audit_log_by_org ON audit_log (org_id, id);

-- Generic cell rate algorithm state, shared by every node on the database.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
