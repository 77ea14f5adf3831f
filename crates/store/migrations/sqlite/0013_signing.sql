-- Rotation with overlap (docs/api.md#rotate-an-endpoint-secret): the secret a rotation replaced,
-- sealed like `secret`, and until when (Unix microseconds) deliveries are also signed with it.
-- Both are NULL when no grace period is running; a value past its time is simply not used.
ALTER TABLE endpoints ADD COLUMN previous_secret BLOB;
ALTER TABLE endpoints ADD COLUMN previous_secret_until INTEGER;

-- Each organization's Ed25519 signing key (docs/api.md#signatures, `v1a`), made on first need.
-- `sealed_key` is the 32-byte seed sealed with the secrets key; `public_key` is stored in the
-- clear so listing keys never opens a private one. The unique `org_id` is what makes a first
-- use from two requests or two nodes end with one key: both insert, one wins, both read it.
CREATE TABLE org_signing_keys (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL UNIQUE REFERENCES orgs (id),
    sealed_key BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
