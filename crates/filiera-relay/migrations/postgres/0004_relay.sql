-- Checkpoints of the relays that publish the global feed elsewhere (crate filiera-relay).
--
-- `position` is the global position (SPEC 4.2) of the last event the relay named `name` has
-- published and seen acknowledged by the server (for NATS JetStream: the stream's publish ack).
-- The relay advances it with a compare-and-set on its previous value, only over a contiguous
-- acknowledged prefix of the feed, so a crash leaves it at or behind what was published, never
-- ahead; the relay's start-up check against the stream's last message covers the gap.

CREATE TABLE relay_checkpoints
(
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
