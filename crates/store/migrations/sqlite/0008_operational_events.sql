-- Operational events and probing (docs/api.md#operational-events, #probing).
--
-- The operator's hook (HERALD_OPERATOR_WEBHOOK_URL) is an endpoint of a hidden organization,
-- the nil UUID, so deliveries to it are stored, claimed and retried like any other, under an
-- organization whose feed nobody can read. `herald serve` writes its endpoint (id 1) from its
-- settings at start; the store's organization reads leave this row out.
INSERT INTO orgs (id, name, created_at)
VALUES (X'00000000000000000000000000000000', 'herald operator hook', 0);

-- When Herald or the organization set the endpoint inactive (NULL while active), and when it
-- was last probed: an endpoint disabled for `failing` is probed every HERALD_PROBE_INTERVAL
-- for HERALD_PROBE_FOR after `disabled_at`.
ALTER TABLE endpoints ADD COLUMN disabled_at INTEGER;
ALTER TABLE endpoints ADD COLUMN probed_at INTEGER;
UPDATE endpoints SET disabled_at = updated_at WHERE NOT active;

-- The probe task's scan: only endpoints Herald disabled for their failures.
CREATE INDEX endpoints_to_probe ON endpoints (disabled_at)
    WHERE disabled_reason = 'failing' AND deleted_at IS NULL;
