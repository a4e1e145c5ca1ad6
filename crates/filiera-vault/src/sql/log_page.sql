SELECT id, at, subject, role, beneficiary_id, action
FROM vault_access_log
WHERE id < $1 AND ($2 IS NULL OR beneficiary_id = $2)
ORDER BY id DESC
LIMIT $3
