-- One writer at a time already (the single write connection): no lock to take.
SELECT master_version FROM vault_keys WHERE id = 1
