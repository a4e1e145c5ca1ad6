INSERT INTO vault_access_log (at, subject, role, beneficiary_id, action)
VALUES ($1, $2, $3, $4, $5)
