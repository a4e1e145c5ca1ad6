-- Leadership leases: exactly one runner per named job (a projection, the NATS relay) among the
-- processes sharing this database file. A holder renews its lease while it runs; a lease whose
-- `expires_at` has passed may be taken by another process.
CREATE TABLE leases
(
    job        text    PRIMARY KEY,
    holder     text    NOT NULL,
    -- Unix time in milliseconds.
    expires_at integer NOT NULL
) STRICT;
