-- Checkpoints of the relays that publish the global feed elsewhere (crate filiera-relay). See
-- the PostgreSQL migration of the same number: the position of the last event published and
-- acknowledged, advanced by compare-and-set over a contiguous acknowledged prefix only.

CREATE TABLE relay_checkpoints
(
    name       text    PRIMARY KEY,
    position   integer NOT NULL DEFAULT 0 CHECK (position >= 0),
    -- ISO-8601 UTC with milliseconds, like `events.recorded_at`.
    updated_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
