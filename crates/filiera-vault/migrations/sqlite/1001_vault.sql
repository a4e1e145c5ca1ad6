-- The personal-data vault (crate filiera-vault, SPEC 5.2). Versions 1001… so that they never
-- collide with the store's (0001…) in the ledger both migrators share. Nothing here is ever in
-- clear: identities are AES-256-GCM ciphertexts, keys are wrapped by the master key, the fiscal
-- code is only present as a keyed digest. Timestamps are RFC 3339 text.

-- One row: the master key's check value and version, and the blind-index key wrapped by it.
-- `master_check` is HMAC-SHA-256(master key, a fixed label): it tells at start-up whether the
-- configured master key is the one the data was written with, and reveals nothing of it.
CREATE TABLE vault_keys
(
    id                integer PRIMARY KEY CHECK (id = 1),
    master_version    integer NOT NULL CHECK (master_version >= 1),
    master_check      blob    NOT NULL,
    wrapped_index_key blob    NOT NULL,
    created_at        text    NOT NULL,
    rotated_at        text
) STRICT;

-- One row per beneficiary whose identity was ever stored. `wrapped_key` is the beneficiary's
-- data key (nonce || AES-GCM of the key under the master key of `key_version`), `nonce` and
-- `ciphertext` the identity under the data key. Erasure sets all four to NULL and stamps
-- `erased_at`: the tombstone that makes later reads answer "erased". The vault erases with
-- `secure_delete` on, so that SQLite overwrites the freed bytes.
CREATE TABLE vault_people
(
    beneficiary_id text PRIMARY KEY,
    wrapped_key    blob,
    nonce          blob,
    ciphertext     blob,
    key_version    integer,
    created_at     text NOT NULL,
    erased_at      text,
    CHECK (CASE
               WHEN erased_at IS NULL
                   THEN wrapped_key IS NOT NULL AND nonce IS NOT NULL
                        AND ciphertext IS NOT NULL AND key_version IS NOT NULL
               ELSE wrapped_key IS NULL AND nonce IS NULL AND ciphertext IS NULL
                        AND key_version IS NULL
           END)
) STRICT;

-- HMAC-SHA-256 (blind-index key) of the normalised fiscal code → its beneficiary.
CREATE TABLE vault_blind_index
(
    digest         blob PRIMARY KEY,
    beneficiary_id text NOT NULL UNIQUE REFERENCES vault_people (beneficiary_id)
) STRICT;

-- Who read or erased whose identity, and when. Pseudonymous (beneficiary ids only); kept
-- after erasure, as the record that the erasure happened.
CREATE TABLE vault_access_log
(
    id             integer PRIMARY KEY,
    at             text    NOT NULL,
    subject        text    NOT NULL,
    role           text,
    beneficiary_id text    NOT NULL,
    action         text    NOT NULL CHECK (action IN ('read', 'erase'))
) STRICT;

CREATE INDEX vault_access_log_beneficiary ON vault_access_log (beneficiary_id, id);
