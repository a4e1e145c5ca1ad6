//! The vault against real databases: every test body runs on SQLite and on PostgreSQL.

mod common;

use anyhow::ensure;
use common::{Bind, Harness, copy, person};
use filiera_testkit::Backend;
use filiera_vault::{
    AccessAction, AccessLogQuery, Erasure, MasterKey, Person, PersonError, Reader, Vault,
    VaultError,
};
use uuid::Uuid;

filiera_testkit::on_both_backends!(
    harness = crate::common::Harness::on;
    round_trip_stores_once_and_logs_every_read,
    wrong_master_key_is_refused,
    swapped_ciphertexts_fail_instead_of_answering_another_person,
    blind_index_lookup_normalises_its_input,
    erasure_shreds_and_leaves_a_tombstone,
    rotation_rewraps_every_key,
    rotation_with_an_unreadable_data_key_changes_nothing,
    dump_holds_no_personal_data_in_clear,
    access_log_pages_newest_first,
    racing_stores_of_one_fiscal_code_index_it_once,
    key_file_rotation_replaces_the_file_last,
);
filiera_testkit::on_both_backends!(migrators_share_the_ledger);

const ROSSI: (&str, &str, &str) = ("RSSMRA80A01H501U", "Graziella", "Quattrocchi");
const BIANCHI: (&str, &str, &str) = ("BNCLCU85M41F205Z", "Ludovica", "Pellegatti");
const VERDI: (&str, &str, &str) = ("VRDGPP90T10L219K", "Ottavio", "Zanfretta");

fn of((code, given, family): (&str, &str, &str)) -> Person {
    person(code, given, family)
}

fn operator(name: &str) -> Reader {
    Reader {
        subject: name.to_owned(),
        role: "operator".to_owned(),
    }
}

/// Stored identities read back normalised; a second store, a taken fiscal code and an unknown
/// beneficiary are answered apart; each read writes one access-log row.
async fn round_trip_stores_once_and_logs_every_read(h: &Harness) -> anyhow::Result<()> {
    let key = MasterKey::generate();
    let vault = h.open(&key).await?;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    let mut messy = person(" rssmra 80a01h501u", "  Graziella ", "Quattrocchi");
    messy.birth_date = "1980-01-01".parse().ok();
    vault.store_person(one, &messy).await?;

    let mut expected = of(ROSSI);
    expected.birth_date = messy.birth_date;
    for _ in 0..3 {
        let read = vault.read_person(one, &operator("op-1")).await?;
        ensure!(read.as_ref() == Some(&expected), "read back normalised");
    }
    ensure!(vault.read_person(two, &operator("op-1")).await?.is_none());

    ensure!(matches!(
        vault.store_person(one, &of(BIANCHI)).await,
        Err(VaultError::AlreadyStored)
    ));
    ensure!(matches!(
        vault
            .store_person(two, &person("RSSMRA80A01H501U", "Other", "Person"))
            .await,
        Err(VaultError::FiscalCodeTaken)
    ));
    ensure!(
        vault.read_person(two, &operator("op-1")).await?.is_none(),
        "a refused store writes nothing"
    );
    let invalid = vault
        .store_person(two, &person("RSSMRA80A01H501", "A", "B"))
        .await;
    ensure!(matches!(
        invalid,
        Err(VaultError::InvalidPerson(PersonError::FiscalCode))
    ));
    vault.store_person(two, &of(BIANCHI)).await?;

    let log = vault.access_log(&AccessLogQuery::default()).await?;
    ensure!(log.entries.len() == 3, "one row per read that answered");
    for entry in &log.entries {
        ensure!(entry.beneficiary_id == one && entry.action == AccessAction::Read);
        ensure!(entry.subject == "op-1" && entry.role.as_deref() == Some("operator"));
    }
    ensure!(log.next_before.is_none());
    Ok(())
}

/// A vault written with one master key refuses to open with another, naming both fingerprints.
async fn wrong_master_key_is_refused(h: &Harness) -> anyhow::Result<()> {
    let key = MasterKey::generate();
    let vault = h.open(&key).await?;
    let id = Uuid::new_v4();
    vault.store_person(id, &of(ROSSI)).await?;

    let other = MasterKey::generate();
    match h.open(&other).await.map(|_| ()) {
        Err(error) => match error.downcast_ref::<VaultError>() {
            Some(VaultError::WrongMasterKey {
                expected,
                given,
                version: 1,
            }) => {
                ensure!(*expected == key.fingerprint() && *given == other.fingerprint());
                ensure!(error.to_string().contains("wrong master key"));
            }
            _ => anyhow::bail!("expected WrongMasterKey, got {error:#}"),
        },
        Ok(()) => anyhow::bail!("opened with the wrong key"),
    }
    let again = h.open(&key).await?;
    ensure!(again.read_person(id, &operator("op")).await?.is_some());
    Ok(())
}

/// Rows whose ciphertexts (or whole encrypted contents) were swapped fail their integrity
/// check: the beneficiary id is associated data of both the ciphertext and the wrapped key.
async fn swapped_ciphertexts_fail_instead_of_answering_another_person(
    h: &Harness,
) -> anyhow::Result<()> {
    let vault = h.open(&MasterKey::generate()).await?;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    vault.store_person(one, &of(ROSSI)).await?;
    vault.store_person(two, &of(BIANCHI)).await?;
    let (a, b) = (h.person_row(one).await?, h.person_row(two).await?);

    let set = "UPDATE vault_people SET nonce = $1, ciphertext = $2 WHERE beneficiary_id = $3";
    let swap =
        |row: &common::PersonBytes| (row.nonce.clone().unwrap(), row.ciphertext.clone().unwrap());
    let ((a_nonce, a_ct), (b_nonce, b_ct)) = (swap(&a), swap(&b));
    let (s1, s2) = (one.to_string(), two.to_string());
    h.execute(
        set,
        &[Bind::Bytes(&b_nonce), Bind::Bytes(&b_ct), Bind::Text(&s1)],
    )
    .await?;
    h.execute(
        set,
        &[Bind::Bytes(&a_nonce), Bind::Bytes(&a_ct), Bind::Text(&s2)],
    )
    .await?;
    for id in [one, two] {
        let read = vault.read_person(id, &operator("op")).await;
        ensure!(matches!(read, Err(VaultError::Tampered)), "{read:?}");
    }

    // The wrapped keys too: every encrypted column of the two rows swapped.
    let set_key = "UPDATE vault_people SET wrapped_key = $1 WHERE beneficiary_id = $2";
    h.execute(
        set_key,
        &[
            Bind::Bytes(b.wrapped_key.as_deref().unwrap()),
            Bind::Text(&s1),
        ],
    )
    .await?;
    h.execute(
        set_key,
        &[
            Bind::Bytes(a.wrapped_key.as_deref().unwrap()),
            Bind::Text(&s2),
        ],
    )
    .await?;
    for id in [one, two] {
        let read = vault.read_person(id, &operator("op")).await;
        ensure!(matches!(read, Err(VaultError::Tampered)), "{read:?}");
    }
    let log = vault.access_log(&AccessLogQuery::default()).await?;
    ensure!(
        log.entries.is_empty(),
        "a failed read hands out nothing and logs nothing"
    );
    Ok(())
}

/// The blind index finds a beneficiary whatever the case and spacing of the code asked for,
/// refuses a malformed code, and answers `None` for an unknown one.
async fn blind_index_lookup_normalises_its_input(h: &Harness) -> anyhow::Result<()> {
    let vault = h.open(&MasterKey::generate()).await?;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    vault.store_person(one, &of(ROSSI)).await?;
    vault.store_person(two, &of(BIANCHI)).await?;
    for asked in [
        "RSSMRA80A01H501U",
        " rssmra80a01h501u ",
        "RSS MRA 80A01 H501U",
    ] {
        ensure!(
            vault.find_by_fiscal_code(asked).await? == Some(one),
            "{asked}"
        );
    }
    ensure!(vault.find_by_fiscal_code("bnclcu85m41f205z").await? == Some(two));
    ensure!(vault.find_by_fiscal_code(VERDI.0).await?.is_none());
    ensure!(matches!(
        vault.find_by_fiscal_code("RSSMRA80A01").await,
        Err(VaultError::InvalidPerson(PersonError::FiscalCode))
    ));
    let digest = h.digest_of(one).await?.unwrap_or_default();
    ensure!(digest.len() == 32, "a SHA-256 HMAC, not the code");
    Ok(())
}

/// Erasure destroys the wrapped key, the ciphertext and the index entry, leaves a tombstone
/// (reads answer Erased, the id cannot be given an identity again), logs who erased, and
/// leaves no byte of what was destroyed in any table.
async fn erasure_shreds_and_leaves_a_tombstone(h: &Harness) -> anyhow::Result<()> {
    let key = MasterKey::generate();
    let vault = h.open(&key).await?;
    let (gone, kept) = (Uuid::new_v4(), Uuid::new_v4());
    vault.store_person(gone, &of(ROSSI)).await?;
    vault.store_person(kept, &of(BIANCHI)).await?;
    let before = h.person_row(gone).await?;
    let digest = h.digest_of(gone).await?.expect("indexed");

    let erasure = vault.erase(gone, "admin-1").await?;
    let Erasure::Erased { at } = erasure else {
        anyhow::bail!("expected Erased, got {erasure:?}");
    };
    ensure!(vault.erase(gone, "admin-1").await? == Erasure::AlreadyErased { at });
    ensure!(matches!(
        vault.erase(Uuid::new_v4(), "admin-1").await,
        Err(VaultError::NotFound)
    ));

    ensure!(matches!(
        vault.read_person(gone, &operator("op")).await,
        Err(VaultError::Erased { at: when }) if when == at
    ));
    ensure!(vault.find_by_fiscal_code(ROSSI.0).await?.is_none());
    ensure!(matches!(
        vault.store_person(gone, &of(ROSSI)).await,
        Err(VaultError::Erased { .. })
    ));
    // Even with the master key, a fresh vault finds nothing to decrypt.
    let reopened = h.open(&key).await?;
    ensure!(matches!(
        reopened.read_person(gone, &operator("op")).await,
        Err(VaultError::Erased { .. })
    ));
    let after = h.person_row(gone).await?;
    ensure!(after.wrapped_key.is_none() && after.nonce.is_none() && after.ciphertext.is_none());
    ensure!(h.digest_of(gone).await?.is_none());

    // No table or column anywhere in the database holds what was destroyed.
    let dump = h.dump().await?;
    for (what, bytes) in [
        ("wrapped key", before.wrapped_key.as_deref().unwrap()),
        ("ciphertext", before.ciphertext.as_deref().unwrap()),
        ("blind-index digest", &digest[..]),
    ] {
        ensure!(
            !dump.contains_bytes(bytes),
            "the erased {what} is still in the database"
        );
    }
    // …while the other beneficiary's data is found that way, so the scan does see rows.
    let kept_row = h.person_row(kept).await?;
    ensure!(dump.contains_bytes(kept_row.ciphertext.as_deref().unwrap()));

    ensure!(vault.read_person(kept, &operator("op")).await?.is_some());
    // The fiscal code is free again, for a new beneficiary.
    let newcomer = Uuid::new_v4();
    vault.store_person(newcomer, &of(ROSSI)).await?;
    ensure!(vault.find_by_fiscal_code(ROSSI.0).await? == Some(newcomer));

    let log = vault
        .access_log(&AccessLogQuery {
            beneficiary: Some(gone),
            ..AccessLogQuery::default()
        })
        .await?;
    ensure!(log.entries.len() == 1, "one erase row: {:?}", log.entries);
    let entry = &log.entries[0];
    ensure!(entry.action == AccessAction::Erase && entry.subject == "admin-1" && entry.at == at);
    Ok(())
}

/// Rotation re-wraps every data key and the index key: reads and lookups work with the new
/// key, the old key is refused, a vault still holding the old key is told to restart, and a
/// rotation from the wrong key or to the same key is refused.
async fn rotation_rewraps_every_key(h: &Harness) -> anyhow::Result<()> {
    let old = MasterKey::generate();
    let vault = h.open(&old).await?;
    let (one, two, erased) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    vault.store_person(one, &of(ROSSI)).await?;
    vault.store_person(two, &of(BIANCHI)).await?;
    vault.store_person(erased, &of(VERDI)).await?;
    vault.erase(erased, "admin").await?;
    let before = h.person_row(one).await?;

    let new = MasterKey::generate();
    ensure!(matches!(
        Vault::rotate(&h.database, &new, &MasterKey::generate()).await,
        Err(VaultError::WrongMasterKey { .. })
    ));
    ensure!(matches!(
        Vault::rotate(&h.database, &old, &copy(&old)).await,
        Err(VaultError::SameMasterKey)
    ));
    let rotation = Vault::rotate(&h.database, &old, &new).await?;
    ensure!(
        rotation.version == 2 && rotation.data_keys == 2,
        "{rotation:?}"
    );

    let after = h.person_row(one).await?;
    ensure!(after.wrapped_key != before.wrapped_key, "re-wrapped");
    ensure!(
        after.ciphertext == before.ciphertext,
        "ciphertexts untouched"
    );

    let rotated = h.open(&new).await?;
    ensure!(rotated.master_version() == 2);
    ensure!(rotated.read_person(one, &operator("op")).await? == Some(of(ROSSI)));
    ensure!(rotated.read_person(two, &operator("op")).await? == Some(of(BIANCHI)));
    ensure!(rotated.find_by_fiscal_code(BIANCHI.0).await? == Some(two));
    ensure!(matches!(
        h.open(&old)
            .await
            .map(|_| ())
            .map_err(|e| e.downcast::<VaultError>()),
        Err(Ok(VaultError::WrongMasterKey { version: 2, .. }))
    ));
    ensure!(matches!(
        vault.read_person(one, &operator("op")).await,
        Err(VaultError::MasterKeyRotated {
            opened: 1,
            stored: 2
        })
    ));
    ensure!(matches!(
        vault.store_person(Uuid::new_v4(), &of(VERDI)).await,
        Err(VaultError::MasterKeyRotated { .. })
    ));
    // A second rotation goes on from the new key.
    let newer = MasterKey::generate();
    ensure!(Vault::rotate(&h.database, &new, &newer).await?.version == 3);
    ensure!(
        h.open(&newer)
            .await?
            .read_person(one, &operator("op"))
            .await?
            == Some(of(ROSSI))
    );
    Ok(())
}

/// A data key that does not unwrap under the old key stops the rotation before anything is
/// committed: the old key still opens the vault and reads the other rows.
async fn rotation_with_an_unreadable_data_key_changes_nothing(h: &Harness) -> anyhow::Result<()> {
    let old = MasterKey::generate();
    let vault = h.open(&old).await?;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    vault.store_person(one, &of(ROSSI)).await?;
    vault.store_person(two, &of(BIANCHI)).await?;
    let mut broken = h.person_row(two).await?.wrapped_key.unwrap();
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    let id = two.to_string();
    h.execute(
        "UPDATE vault_people SET wrapped_key = $1 WHERE beneficiary_id = $2",
        &[Bind::Bytes(&broken), Bind::Text(&id)],
    )
    .await?;
    let before = h.person_row(one).await?;

    let new = MasterKey::generate();
    ensure!(matches!(
        Vault::rotate(&h.database, &old, &new).await,
        Err(VaultError::Tampered)
    ));
    ensure!(h.person_row(one).await? == before, "rolled back");
    ensure!(h.open(&new).await.is_err());
    let again = h.open(&old).await?;
    ensure!(again.read_person(one, &operator("op")).await? == Some(of(ROSSI)));
    Ok(())
}

/// The database files (SQLite, WAL included) and a `pg_dump` hold no fiscal code, given name or
/// family name in clear, nor any other part of an identity; the access log has one row per
/// read.
async fn dump_holds_no_personal_data_in_clear(h: &Harness) -> anyhow::Result<()> {
    let vault = h.open(&MasterKey::generate()).await?;
    let people = [ROSSI, BIANCHI, VERDI];
    let mut ids = Vec::new();
    for who in people {
        let id = Uuid::new_v4();
        let mut p = of(who);
        p.birth_date = "1979-11-23".parse().ok();
        vault.store_person(id, &p).await?;
        ids.push(id);
    }
    for id in &ids {
        vault.read_person(*id, &operator("op-dump")).await?;
    }
    vault.read_person(ids[0], &operator("op-dump")).await?;

    let dump = h.dump().await?;
    ensure!(dump.len() > 0);
    for (code, given, family) in people {
        for clear in [code, given, family, &code[..6], &code[6..11]] {
            ensure!(
                !dump.contains_text(clear),
                "`{clear}` in clear in the database"
            );
        }
    }
    ensure!(!dump.contains_text("1979-11-23"), "birth date in clear");
    ensure!(
        !dump.contains_text("fiscal_code"),
        "an identity's JSON in clear"
    );
    // Sanity: the dump does hold what is not secret.
    ensure!(dump.contains_text(&ids[0].to_string()));
    ensure!(dump.contains_text("op-dump"));

    let log = vault.access_log(&AccessLogQuery::default()).await?;
    ensure!(log.entries.len() == 4, "one row per read");
    ensure!(
        log.entries
            .iter()
            .filter(|entry| entry.beneficiary_id == ids[0])
            .count()
            == 2
    );
    Ok(())
}

/// The access log pages newest first with a `before` cursor, and filters by beneficiary.
async fn access_log_pages_newest_first(h: &Harness) -> anyhow::Result<()> {
    let vault = h.open(&MasterKey::generate()).await?;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    vault.store_person(one, &of(ROSSI)).await?;
    vault.store_person(two, &of(BIANCHI)).await?;
    for i in 0..5 {
        let id = if i % 2 == 0 { one } else { two };
        vault.read_person(id, &operator(&format!("op-{i}"))).await?;
    }
    let mut subjects = Vec::new();
    let mut query = AccessLogQuery {
        limit: Some(2),
        ..AccessLogQuery::default()
    };
    loop {
        let page = vault.access_log(&query).await?;
        ensure!(page.entries.len() <= 2);
        subjects.extend(page.entries.iter().map(|e| e.subject.clone()));
        match page.next_before {
            Some(before) => query.before = Some(before),
            None => break,
        }
    }
    ensure!(
        subjects == ["op-4", "op-3", "op-2", "op-1", "op-0"],
        "{subjects:?}"
    );
    let only_two = vault
        .access_log(&AccessLogQuery {
            beneficiary: Some(two),
            ..AccessLogQuery::default()
        })
        .await?;
    let subjects: Vec<_> = only_two
        .entries
        .iter()
        .map(|e| e.subject.as_str())
        .collect();
    ensure!(subjects == ["op-3", "op-1"], "{subjects:?}");
    Ok(())
}

/// The store's and the vault's migrators share sqlx's ledger: each runs after the other, in
/// either order and again, without complaining about the other's versions.
async fn migrators_share_the_ledger(backend: Backend) -> anyhow::Result<()> {
    let fresh = || Harness::unmigrated(backend);
    // Vault first, then the store, then both again.
    let h = fresh().await?;
    ensure!(matches!(
        Vault::open(h.database.clone(), MasterKey::generate()).await,
        Err(VaultError::NotMigrated)
    ));
    Vault::migrate(&h.database).await?;
    h.store.migrate().await?;
    Vault::migrate(&h.database).await?;
    h.store.migrate().await?;
    let ledger = h.ledger().await?;
    ensure!(
        ledger.first() == Some(&1) && ledger.last() == Some(&1001),
        "{ledger:?}"
    );
    h.open(&MasterKey::generate())
        .await?
        .store_person(Uuid::new_v4(), &of(ROSSI))
        .await?;

    // Store first, then the vault, then both again.
    let h = fresh().await?;
    h.store.migrate().await?;
    Vault::migrate(&h.database).await?;
    h.store.migrate().await?;
    Vault::migrate(&h.database).await?;
    ensure!(h.ledger().await? == ledger);
    Ok(())
}

/// Beneficiaries racing to store the same fiscal code: exactly one is indexed, every other is
/// told the code is taken and keeps no row; the same beneficiary racing with itself stores once.
async fn racing_stores_of_one_fiscal_code_index_it_once(h: &Harness) -> anyhow::Result<()> {
    let key = MasterKey::generate();
    let vault = h.open(&key).await?;
    let ids: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (vault, id) = (vault.clone(), *id);
            tokio::spawn(async move { vault.store_person(id, &of(ROSSI)).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (id, task) in ids.iter().zip(tasks) {
        match task.await? {
            Ok(()) => winners.push(*id),
            Err(VaultError::FiscalCodeTaken) => {
                ensure!(vault.read_person(*id, &operator("op")).await?.is_none());
            }
            Err(other) => anyhow::bail!("unexpected {other:?}"),
        }
    }
    ensure!(winners.len() == 1, "{winners:?}");
    ensure!(vault.find_by_fiscal_code(ROSSI.0).await? == Some(winners[0]));

    let same = Uuid::new_v4();
    let twice = [
        tokio::spawn({
            let vault = vault.clone();
            async move { vault.store_person(same, &of(BIANCHI)).await }
        }),
        tokio::spawn({
            let vault = vault.clone();
            async move { vault.store_person(same, &of(BIANCHI)).await }
        }),
    ];
    let mut stored = 0;
    for task in twice {
        match task.await? {
            Ok(()) => stored += 1,
            Err(VaultError::AlreadyStored) => {}
            Err(other) => anyhow::bail!("unexpected {other:?}"),
        }
    }
    ensure!(stored == 1);
    let debug = format!("{vault:?}");
    ensure!(debug.contains(&key.fingerprint()) && !debug.contains(key.to_base64().as_str()));
    Ok(())
}

/// Rotating a key file: the new key is in the file afterwards (0600), the old one refused; a
/// leftover `.new` of an interrupted rotation stops the next one; a refused rotation leaves no
/// `.new` behind.
async fn key_file_rotation_replaces_the_file_last(h: &Harness) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("master.key");
    let pending = dir.path().join("master.key.new");
    let old = MasterKey::load_or_generate(&path)?;
    let id = Uuid::new_v4();
    h.open(&old).await?.store_person(id, &of(ROSSI)).await?;

    let rotation = Vault::rotate_key_file(&h.database, &path).await?;
    ensure!(rotation.version == 2 && rotation.data_keys == 1);
    ensure!(!pending.exists());
    let new = MasterKey::load(&path)?;
    ensure!(new.fingerprint() != old.fingerprint());
    ensure!(std::fs::metadata(&path)?.permissions().mode() & 0o777 == 0o600);
    ensure!(h.open(&new).await?.read_person(id, &operator("op")).await? == Some(of(ROSSI)));
    ensure!(h.open(&old).await.is_err());

    MasterKey::generate().write_new(&pending)?;
    ensure!(matches!(
        Vault::rotate_key_file(&h.database, &path).await,
        Err(VaultError::UnfinishedRotation { .. })
    ));
    ensure!(MasterKey::load(&path)?.fingerprint() == new.fingerprint());

    std::fs::remove_file(&pending)?;
    std::fs::remove_file(&path)?;
    MasterKey::generate().write_new(&path)?;
    ensure!(matches!(
        Vault::rotate_key_file(&h.database, &path).await,
        Err(VaultError::WrongMasterKey { .. })
    ));
    ensure!(
        !pending.exists(),
        "a refused rotation leaves no new key behind"
    );
    Ok(())
}
