-- Read models of the projections (crate filiera-projections).
--
-- A projection's read model lives in *generations*: normally one, `active`, that the runner
-- keeps up with the global feed and that queries read. A rebuild adds a `building` generation
-- filled from position 0 alongside; once it has caught up, one transaction makes it `active`
-- and the old one `retired`, whose rows are then deleted. `position` is the generation's
-- checkpoint: the global position of the last event applied to it. It is advanced in the same
-- transaction as the rows, with a compare-and-set on its previous value, so that an event is
-- never applied twice nor skipped, whatever crashes or competing runners.

CREATE TABLE projection_generations
(
    projection   text        NOT NULL,
    generation   bigint      NOT NULL CHECK (generation >= 1),
    status       text        NOT NULL CHECK (status IN ('building', 'active', 'retired')),
    position     bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    activated_at timestamptz,
    retired_at   timestamptz,
    PRIMARY KEY (projection, generation)
);

-- At most one active and one building generation per projection: a second concurrent rebuild
-- request fails on the index instead of racing.
CREATE UNIQUE INDEX projection_generations_one_active
    ON projection_generations (projection) WHERE status = 'active';
CREATE UNIQUE INDEX projection_generations_one_building
    ON projection_generations (projection) WHERE status = 'building';

-- One row per beneficiary and generation: the beneficiary's `Timeline` (filiera-domain) as
-- JSON, and the checkpoint of the batch that last changed it, so that query caches fetch only
-- what changed since they last looked. The JSON is kept as `text`, not `jsonb`: rows are only
-- ever written and read whole, and `text` is about twice as fast to write and four times as
-- fast to read back (cast to jsonb to inspect a row by hand).
CREATE TABLE projection_timelines
(
    projection       text   NOT NULL,
    generation       bigint NOT NULL,
    beneficiary_id   text   NOT NULL,
    timeline         text   NOT NULL,
    updated_position bigint NOT NULL,
    PRIMARY KEY (projection, generation, beneficiary_id),
    FOREIGN KEY (projection, generation) REFERENCES projection_generations (projection, generation)
);

CREATE INDEX projection_timelines_updated
    ON projection_timelines (projection, generation, updated_position);
