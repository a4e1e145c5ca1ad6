//! [`MasterKey`]: the key that wraps every other key of the vault, from `FILIERA_MASTER_KEY`
//! or from a file of the embedded data folder.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::crypto::{self, KEY_LEN, MASTER_CHECK_LABEL, SecretKey};

/// The master key: 32 bytes that wrap each beneficiary's data key and the blind-index key.
/// Never stored in the database; losing it loses every identity in the vault.
///
/// Wiped from memory when dropped; `Debug` shows only its [fingerprint](MasterKey::fingerprint).
pub struct MasterKey {
    pub(crate) key: SecretKey,
}

/// Why a master key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not standard base64 (the key itself is never repeated).
    #[error("the master key is not standard base64")]
    Base64,
    /// The text decodes to the wrong number of bytes.
    #[error("the master key must be 32 bytes (44 characters of standard base64), not {len} bytes")]
    Length {
        /// Bytes it decoded to.
        len: usize,
    },
    /// The key file could not be read, created or written.
    #[error("master key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file can be read by others than its owner.
    #[error(
        "master key file {path} has mode {mode:o}: it must be readable by its owner only \
         (chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl MasterKey {
    /// A new random key (from the operating system's random source).
    pub fn generate() -> Self {
        Self {
            key: SecretKey::random(),
        }
    }

    /// Parses the standard-base64 form `FILIERA_MASTER_KEY` holds (surrounding white space
    /// ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| KeyError::Base64)?);
        let bytes: &[u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length { len: bytes.len() })?;
        Ok(Self {
            key: SecretKey::from_bytes(bytes),
        })
    }

    /// The standard-base64 form, for the operator to copy into `FILIERA_MASTER_KEY` or a
    /// secret manager. Handle with care.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.expose()))
    }

    /// Reads the key from `path` (its base64 form), or, if there is no such file, generates
    /// one and writes it there, readable by its owner only (mode 0600; parent folders are
    /// created). Refuses a key file that others may read.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let key = Self::generate();
        match key.write_new(path) {
            Ok(()) => {
                tracing::warn!(
                    path = %path.display(),
                    fingerprint = %key.fingerprint(),
                    "generated a new master key: back it up, without it the personal data \
                     cannot be read"
                );
                Ok(key)
            }
            // Another process created it first: use theirs.
            Err(KeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Self::load(path)
            }
            Err(error) => Err(error),
        }
    }

    /// Reads the key from `path`, which must be readable by its owner only.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Self::from_base64(&text)
    }

    /// Writes the key's base64 form to a new file `path` with mode 0600 (parent folders are
    /// created), synced to disk; fails if the file exists. For rotation: write the new key
    /// beside the old one before rotating, so that neither can be lost halfway.
    ///
    /// The file appears whole or not at all: the key is written and synced to a temporary file
    /// in the same folder, which is then hard-linked to `path` (which fails if `path` exists).
    /// A process starting at the same moment (two replicas on one data folder, a first start
    /// racing `filiera token issue`) therefore never reads a file still being written.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder).map_err(io)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = folder.join(format!(
            ".{name}.{}.{}",
            std::process::id(),
            crypto::hex(&SecretKey::random().expose()[..8])
        ));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            let mut text = self.to_base64();
            text.push('\n');
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&temporary, path)
        })();
        let _ = std::fs::remove_file(&temporary);
        written.map_err(io)?;
        // Make the new directory entry durable too.
        std::fs::File::open(folder)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// A short public name of the key (16 hex digits of its check value), for logs and for
    /// telling keys apart; reveals nothing of the key.
    pub fn fingerprint(&self) -> String {
        crypto::hex(&self.check_value()[..8])
    }

    /// HMAC-SHA-256 of a fixed label under the key, stored in `vault_keys` to recognise it.
    pub(crate) fn check_value(&self) -> [u8; 32] {
        self.key.mac(&[MASTER_CHECK_LABEL])
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes starting together on one data folder (two replicas, or `serve` and another
    /// command) all get the one key, never a file still being written: each writer's file
    /// appears whole.
    #[test]
    fn concurrent_first_starts_share_one_whole_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("data").join("master.key");
            let keys: Vec<String> = std::thread::scope(|scope| {
                let starts: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| MasterKey::load_or_generate(&path)))
                    .collect();
                starts
                    .into_iter()
                    .map(|start| start.join().unwrap().unwrap().fingerprint())
                    .collect()
            });
            assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
            let files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(files, ["master.key"], "no temporary file is left behind");
        }
    }

    #[test]
    fn base64_round_trip_and_refusals() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        let back = MasterKey::from_base64(&format!(" {}\n", text.as_str())).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(KeyError::Base64)
        ));
        assert!(matches!(
            MasterKey::from_base64("AAAA"),
            Err(KeyError::Length { len: 3 })
        ));
    }

    #[test]
    fn debug_shows_the_fingerprint_only() {
        let key = MasterKey::generate();
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.fingerprint()));
        assert!(!debug.contains(key.to_base64().as_str()));
        assert_ne!(key.fingerprint(), MasterKey::generate().fingerprint());
    }

    #[test]
    fn load_or_generate_writes_an_owner_only_file_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/master.key");
        let first = MasterKey::load_or_generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = MasterKey::load_or_generate(&path).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert!(matches!(
            first.write_new(&path),
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists
        ));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::load_or_generate(&path),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
    }
}
