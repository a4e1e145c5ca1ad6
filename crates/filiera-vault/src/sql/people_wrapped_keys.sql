SELECT beneficiary_id, wrapped_key, key_version
FROM vault_people
WHERE erased_at IS NULL
ORDER BY beneficiary_id
