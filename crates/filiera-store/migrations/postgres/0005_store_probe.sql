-- One row that `/readyz` rewrites, only while commands are failing, to learn whether the store
-- can commit again (disk space back, database writable again). `filler` makes the probe write
-- as much as a large command would.

CREATE TABLE store_probe
(
    id         integer PRIMARY KEY CHECK (id = 1),
    written_at text    NOT NULL,
    filler     bytea   NOT NULL
);
