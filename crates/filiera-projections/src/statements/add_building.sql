-- A building generation at position 0 with timeline format $2, numbered after every other; the
-- partial unique index `projection_generations_one_building` refuses a second one.
INSERT INTO projection_generations (projection, generation, status, position, format)
SELECT $1, coalesce(max(generation), 0) + 1, 'building', 0, $2
FROM projection_generations WHERE projection = $1
RETURNING generation
