-- One row that `/readyz` rewrites, only while commands are failing, to learn whether the store
-- can commit again (disk space back, database writable again). `filler` makes the probe write
-- as much as a large command would, so that a nearly full disk does not pass it by luck.

CREATE TABLE store_probe
(
    id         integer PRIMARY KEY CHECK (id = 1),
    written_at text    NOT NULL,
    filler     blob    NOT NULL
) STRICT;
