DELETE FROM vault_blind_index WHERE beneficiary_id = $1
