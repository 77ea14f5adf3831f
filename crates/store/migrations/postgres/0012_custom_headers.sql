-- An endpoint's custom headers (docs/api.md#custom-headers): their names in the clear, for
-- answers, and the whole set sealed like the secret (the values may be credentials): JSON
-- [[name, value], …] encrypted with HERALD_SECRETS_KEY. Both NULL when it has none.
ALTER TABLE endpoints ADD COLUMN header_names TEXT;
ALTER TABLE endpoints ADD COLUMN headers BYTEA;
