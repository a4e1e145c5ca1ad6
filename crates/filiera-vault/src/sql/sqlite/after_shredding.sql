-- Copy the WAL into the database and empty it, so that earlier frames holding the destroyed
-- key leave the -wal file.
PRAGMA wal_checkpoint(TRUNCATE)
