UPDATE vault_people
SET wrapped_key = $2, key_version = $3
WHERE beneficiary_id = $1 AND erased_at IS NULL AND key_version = $4
