-- Portal sessions (docs/api.md#the-portal) are API keys that expire and carry the portal's
-- settings: stored, hashed and checked like any key, so every /v1 rule holds for the portal.
-- `portal` is JSON ({"read_only", "return_url", "theme"}), NULL for a plain API key; an
-- expired session is deleted by the retention sweep a day after `expires_at`.
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN portal TEXT;

CREATE INDEX api_keys_expiring ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
