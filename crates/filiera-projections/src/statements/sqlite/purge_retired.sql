-- Up to $2 timeline rows of the projection's retired generations.
DELETE FROM projection_timelines
WHERE rowid IN (
    SELECT t.rowid FROM projection_timelines t
    JOIN projection_generations g ON g.projection = t.projection AND g.generation = t.generation
    WHERE t.projection = $1 AND g.status = 'retired'
    LIMIT $2)
