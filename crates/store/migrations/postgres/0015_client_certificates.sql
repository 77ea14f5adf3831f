-- An endpoint's client certificate for mutual TLS (docs/api.md#client-certificates): the pair
-- sealed like the secret (JSON {"cert_pem", "key_pem"} encrypted with HERALD_SECRETS_KEY), and
-- what answers show of it in the clear. All NULL when it has none.
ALTER TABLE endpoints ADD COLUMN client_certificate BYTEA;
ALTER TABLE endpoints ADD COLUMN client_certificate_subject TEXT;
ALTER TABLE endpoints ADD COLUMN client_certificate_not_after BIGINT;
