//! `filiera backup DEST`: a consistent copy of the embedded store, taken while `serve` runs,
//! as a folder that can be used as `FILIERA_DATA_DIR` as it is.
//!
//! The folder holds `filiera.db` (events, personal-data vault, read model, relay and
//! projection checkpoints, all as of one commit: [`filiera_store::Store::backup_into`]) and the
//! data folder's secrets, `master.key` (without it the vault's personal data cannot be read)
//! and `auth-secret`, when they are files there. Everything is owner-only, like the originals
//! (folder 0700, files 0600). The copy is built in a hidden folder beside DEST and renamed to
//! DEST once complete and synced, so DEST never holds half a backup; nothing is ever written
//! over an existing backup or store. Before the rename the copy is checked: SQLite's
//! integrity check, and its vault opened with the master key it will be used with.
//!
//! There is no `restore` command: a backup folder *is* a data folder. Restoring is pointing
//! `FILIERA_DATA_DIR` at it (or at a copy of it), with the old store's `serve` stopped
//! (docs/operations.md, "Backup and restore").

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use filiera_store::{BackupError, BackupSummary, Pool, Store};

use crate::settings::Settings;

/// The database file of an embedded data folder.
const DATABASE_FILE: &str = "filiera.db";
/// The vault's master key file of a data folder (`Settings::master_key`).
const MASTER_KEY_FILE: &str = "master.key";

/// `filiera backup DEST`
pub async fn backup(settings: Settings, dest: &Path) -> anyhow::Result<()> {
    let source = database_file(&settings)?;
    if !source.is_file() {
        bail!(
            "there is no embedded store at {}: is FILIERA_DATA_DIR (or `data_dir`) the data \
             folder of the store to back up?",
            source.display()
        );
    }
    check_destination(dest)?;
    let name = dest
        .file_name()
        .with_context(|| format!("{} does not name a folder", dest.display()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let filled = fill(&settings, &staging).await;
    let finished = filled.and_then(|done| {
        sync_folder(&staging)?;
        // rename(2) replaces an empty folder, and fails on a non-empty one.
        std::fs::rename(&staging, dest).with_context(|| {
            format!(
                "cannot move the finished backup to {} (did something write there meanwhile?)",
                dest.display()
            )
        })?;
        sync_folder(&parent)?;
        Ok(done)
    });
    let (summary, files) = match finished {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    if settings.master_key.is_some() {
        eprintln!(
            "filiera: the master key is configured (FILIERA_MASTER_KEY), not a file of the data \
             folder: the backup does not hold it; keep it with the backup, the personal data \
             cannot be read without it"
        );
    }
    if settings.auth_secret.is_some() {
        eprintln!(
            "filiera: the token secret is configured (FILIERA_AUTH_SECRET): the backup does not \
             hold it"
        );
    }
    tracing::info!(
        dest = %dest.display(),
        position = summary.position,
        events = summary.events,
        "backup finished"
    );
    println!(
        "{}",
        serde_json::json!({
            "backup": dest.display().to_string(),
            "position": summary.position,
            "events": summary.events,
            "bytes": summary.bytes,
            "files": files,
        })
    );
    Ok(())
}

/// The SQLite file of this configuration; PostgreSQL is refused.
fn database_file(settings: &Settings) -> anyhow::Result<PathBuf> {
    let url = settings.store_url();
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(BackupError::NotEmbedded.into());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    Ok(PathBuf::from(path))
}

/// A backup goes to a new folder, or an empty one: never over anything.
fn check_destination(dest: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty: a backup goes to a new (or empty) folder, never \
                     over an existing one",
                    dest.display()
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if dest.exists() => Err(error).with_context(|| {
            format!(
                "{} exists and is not a folder: a backup goes to a new folder",
                dest.display()
            )
        }),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", dest.display())),
    }
}

/// Copies the database and the secret files into `staging` and checks the copy; returns what
/// it holds and the files written.
async fn fill(
    settings: &Settings,
    staging: &Path,
) -> anyhow::Result<(BackupSummary, Vec<&'static str>)> {
    // Connected without migrating: backing up never changes the live store.
    let store = crate::startup::connect(settings).await?;
    let copy = staging.join(DATABASE_FILE);
    // Created empty and owner-only first, so that the copy is never readable by others.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&copy)
        .with_context(|| format!("cannot create {}", copy.display()))?;
    let summary = store.backup_into(&copy).await?;
    close(&store).await;
    std::fs::File::open(&copy)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot sync {}", copy.display()))?;
    let mut files = vec![DATABASE_FILE];
    for name in [MASTER_KEY_FILE, filiera_auth::SECRET_FILE] {
        if copy_secret(&settings.data_dir.join(name), &staging.join(name))? {
            files.push(name);
        }
    }
    check_vault(settings, staging).await?;
    Ok((summary, files))
}

/// Copies the secret file `from` (if there is one) to the new file `to`, owner-only and
/// synced. `false` when there is no such file.
fn copy_secret(from: &Path, to: &Path) -> anyhow::Result<bool> {
    let bytes = match std::fs::read(from) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", from.display())),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(true)
}

/// Opens the copy's personal-data vault with the master key it will be used with: the
/// configured one, or the copied key file. A key that does not open it (a rotation between
/// the copy and the key) fails the backup. Nothing to check when neither exists: the vault
/// was never used.
async fn check_vault(settings: &Settings, staging: &Path) -> anyhow::Result<()> {
    let key_file = staging.join(MASTER_KEY_FILE);
    let key = match &settings.master_key {
        Some(_) => settings.master_key()?,
        None if key_file.is_file() => filiera_vault::MasterKey::load(&key_file)
            .with_context(|| format!("cannot read {}", key_file.display()))?,
        None => return Ok(()),
    };
    let url = format!("sqlite://{}", staging.join(DATABASE_FILE).display());
    let copy = Store::connect_with(
        &url,
        settings.services()?,
        settings.database.store_options()?,
    )
    .await
    .context("cannot open the copy")?;
    let opened = filiera_vault::Vault::open(copy.database(), key).await;
    close(&copy).await;
    closed(&staging.join(DATABASE_FILE)).await;
    opened.context(
        "the master key does not open the copy's personal-data vault (was it rotated during \
         the backup?)",
    )?;
    Ok(())
}

/// Closes the store's SQLite connections, so that the last one checkpoints and removes its
/// WAL before the folder is moved.
async fn close(store: &Store) {
    let database = store.database();
    for pool in [database.reader(), database.writer()] {
        if let Pool::Sqlite(pool) = pool {
            pool.close().await;
        }
    }
}

/// Waits (up to 5 s) until SQLite has removed `database`'s `-wal` and `-shm` files: a closed
/// pool's connections are closed by their worker threads a moment after the pool says so, and
/// the last one checkpoints and removes them. Were they still there, the backup would merely
/// carry an empty WAL along.
async fn closed(database: &Path) {
    let companions = ["-wal", "-shm"].map(|suffix| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while companions.iter().any(|file| file.exists()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Syncs a folder, so that the files created or renamed in it survive a power cut.
fn sync_folder(folder: &Path) -> anyhow::Result<()> {
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", folder.display()))
}
