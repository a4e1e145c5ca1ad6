SELECT wrapped_key, nonce, ciphertext, key_version, erased_at
FROM vault_people
WHERE beneficiary_id = $1
