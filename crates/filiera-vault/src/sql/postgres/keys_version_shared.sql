-- Holds rotation off until the transaction ends, and sees the version it committed.
SELECT master_version FROM vault_keys WHERE id = 1 FOR SHARE
