-- Claims read the per-endpoint index only (a refill reads one endpoint's range; a claim over
-- every endpoint finds the endpoints by a loose scan of it), so the due index is written on
-- every delivery insert and update and read by nothing but the queue gauges, which count
-- every pending delivery anyway.
DROP INDEX deliveries_due;
