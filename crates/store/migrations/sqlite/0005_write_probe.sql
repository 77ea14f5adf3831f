-- One row that readiness rewrites, at most once a second and only while writes fail, to find
-- out whether the store accepts writes again (a full disk, an I/O error). The ballast makes
-- the probe as large as a typical group commit (herald_store::sql::WRITE_PROBE_BYTES).
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    probes BIGINT NOT NULL,
    ballast BLOB NOT NULL
);
