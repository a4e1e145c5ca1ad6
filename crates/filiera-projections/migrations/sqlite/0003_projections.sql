-- Read models of the projections (crate filiera-projections). See the PostgreSQL migration of
-- the same number for the design: generations with a checkpoint advanced by compare-and-set in
-- the same transaction as the rows, and one timeline row per beneficiary and generation.

CREATE TABLE projection_generations
(
    projection   text    NOT NULL,
    generation   integer NOT NULL CHECK (generation >= 1),
    status       text    NOT NULL CHECK (status IN ('building', 'active', 'retired')),
    position     integer NOT NULL DEFAULT 0 CHECK (position >= 0),
    -- ISO-8601 UTC with milliseconds, like `events.recorded_at`.
    started_at   text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    activated_at text,
    retired_at   text,
    PRIMARY KEY (projection, generation)
) STRICT;

CREATE UNIQUE INDEX projection_generations_one_active
    ON projection_generations (projection) WHERE status = 'active';
CREATE UNIQUE INDEX projection_generations_one_building
    ON projection_generations (projection) WHERE status = 'building';

CREATE TABLE projection_timelines
(
    projection       text    NOT NULL,
    generation       integer NOT NULL,
    beneficiary_id   text    NOT NULL,
    -- The beneficiary's `Timeline` as JSON text.
    timeline         text    NOT NULL,
    updated_position integer NOT NULL,
    PRIMARY KEY (projection, generation, beneficiary_id),
    FOREIGN KEY (projection, generation) REFERENCES projection_generations (projection, generation)
) STRICT;

CREATE INDEX projection_timelines_updated
    ON projection_timelines (projection, generation, updated_position);
