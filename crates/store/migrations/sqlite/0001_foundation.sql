-- Herald's foundation schema on SQLite.
--
-- Ids are UUIDv7 stored as 16-byte BLOBs: byte order is creation order, so `ORDER BY id`
-- is newest-last without a separate timestamp index. Instants are INTEGER microseconds since
-- the Unix epoch, so comparisons are integer comparisons. Secrets are stored encrypted
-- (nonce || ciphertext, see cipher.rs); the plaintext never touches the database.

CREATE TABLE orgs (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    webhook_secret BLOB,
    webhook_secret_rotated_at INTEGER
) STRICT;

CREATE TABLE api_keys (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id),
    -- SHA-256 of the whole key; lookups go through this unique index.
    key_hash BLOB NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    -- Comma-separated scope names.
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE INDEX api_keys_by_org ON api_keys (org_id, id);

CREATE TABLE endpoints (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id),
    url TEXT NOT NULL,
    description TEXT,
    -- JSON array of event type names.
    events TEXT NOT NULL,
    active INTEGER NOT NULL,
    api_version TEXT NOT NULL,
    secret BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
) STRICT;

-- Live endpoints of an organization, newest first: the list, the cap count and fan-out.
CREATE INDEX endpoints_live_by_org ON endpoints (org_id, id) WHERE deleted_at IS NULL;

CREATE TABLE audit_log (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id),
    api_key_id BLOB,
    action TEXT NOT NULL,
    target_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    request_id TEXT,
    reason TEXT
) STRICT;

CREATE INDEX audit_log_by_org ON audit_log (org_id, id);

-- Generic cell rate algorithm state: one row per limited key, holding the theoretical
-- arrival time. Kept in the database so limits hold across processes sharing it.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
) STRICT;
