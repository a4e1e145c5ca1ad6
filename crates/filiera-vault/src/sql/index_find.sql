SELECT beneficiary_id FROM vault_blind_index WHERE digest = $1
