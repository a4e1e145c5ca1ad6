-- Overwrite freed bytes with zeros, so that a destroyed key does not linger in free space of
-- the file. A setting of the connection: it stays on for the write connection's later writes.
PRAGMA secure_delete = ON
