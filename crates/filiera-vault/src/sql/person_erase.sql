UPDATE vault_people
SET wrapped_key = NULL, nonce = NULL, ciphertext = NULL, key_version = NULL, erased_at = $2
WHERE beneficiary_id = $1 AND erased_at IS NULL
