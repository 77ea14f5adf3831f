-- Why an endpoint is inactive (`failing`, `gone` or `manual`; NULL while active), beside
-- `failing_since` (migration 0002), both shown on the endpoint object.
--
-- Endpoints already inactive get the reason their state suggests: one still failing was set
-- inactive by Herald for its failures (a 410 also starts a streak, so a `gone` endpoint from
-- before this migration reads `failing`), any other was set inactive by its organization.
ALTER TABLE endpoints ADD COLUMN disabled_reason TEXT;
UPDATE endpoints
   SET disabled_reason = CASE WHEN failing_since IS NULL THEN 'manual' ELSE 'failing' END
 WHERE NOT active;
