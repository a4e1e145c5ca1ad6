INSERT INTO vault_people (beneficiary_id, wrapped_key, nonce, ciphertext, key_version, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (beneficiary_id) DO NOTHING
