-- Which version of `Timeline` (filiera-domain, `Timeline::FORMAT`) a generation's rows were
-- built with. Generations made before this column existed hold format 1 (timelines without
-- needs assessments or providers). A runner finding the active generation older than its own
-- format starts a rebuild, and queries refuse to read it until the rebuild is swapped in.
ALTER TABLE projection_generations ADD COLUMN format integer NOT NULL DEFAULT 1;
