INSERT INTO vault_blind_index (digest, beneficiary_id)
VALUES ($1, $2)
ON CONFLICT (digest) DO NOTHING
