//! The token signing secret: configured (`FILIERA_AUTH_SECRET`), or kept in the file
//! [`SECRET_FILE`] of the data folder, generated on first use (32 random bytes, standard
//! base64) and created readable by its owner only (mode 0600).
//!
//! The secret is used as given: the bytes of the string are the HMAC key, so a configured
//! secret must be at least 32 bytes long (e.g. `openssl rand -base64 32`).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// The file name of the generated secret inside the data folder.
pub const SECRET_FILE: &str = "auth-secret";

/// The token signing secret. Never printed: `Debug` is secrecy's redacted one.
#[derive(Debug, Clone)]
pub struct AuthSecret(SecretString);

impl AuthSecret {
    /// A secret from its text.
    pub fn new(secret: SecretString) -> Self {
        Self(secret)
    }

    /// The HMAC key: the bytes of the secret's text.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl From<SecretString> for AuthSecret {
    fn from(secret: SecretString) -> Self {
        Self(secret)
    }
}

/// Where the secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `FILIERA_AUTH_SECRET` / `auth_secret`.
    Configured,
    /// The data folder's file, as found.
    File(PathBuf),
    /// The data folder's file, generated just now: the first start.
    Generated(PathBuf),
}

/// The configured secret if any; otherwise the data folder's [`SECRET_FILE`], generated if
/// missing. A file readable by anyone but its owner is refused.
pub fn load_or_generate(
    configured: Option<&SecretString>,
    data_dir: &Path,
) -> io::Result<(AuthSecret, SecretSource)> {
    if let Some(secret) = configured {
        return Ok((AuthSecret(secret.clone()), SecretSource::Configured));
    }
    let path = data_dir.join(SECRET_FILE);
    match read(&path) {
        Ok(secret) => return Ok((secret, SecretSource::File(path))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    let text = STANDARD.encode(bytes);
    bytes.fill(0);
    // Written whole to a temporary file, then hard-linked into place (which fails if the
    // file exists): a process starting at the same moment never reads a half-written secret.
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| io::Error::other(e.to_string()))?;
    let temporary = data_dir.join(format!(
        ".{SECRET_FILE}.{}.{}",
        std::process::id(),
        u64::from_le_bytes(tag)
    ));
    let created = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::hard_link(&temporary, &path)
    })();
    let _ = fs::remove_file(&temporary);
    match created {
        Ok(()) => Ok((
            AuthSecret(SecretString::from(text)),
            SecretSource::Generated(path),
        )),
        // Another process generated it first: use theirs.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            Ok((read(&path)?, SecretSource::File(path)))
        }
        Err(err) => Err(err),
    }
}

fn read(path: &Path) -> io::Result<AuthSecret> {
    let metadata = fs::metadata(path)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable by others (mode {mode:o}); make it owner-only with `chmod 600`",
                path.display()
            ),
        ));
    }
    let text = fs::read_to_string(path)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is empty; delete it to generate a new secret",
                path.display()
            ),
        ));
    }
    Ok(AuthSecret(SecretString::from(text.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_secret_wins() {
        let dir = tempfile::tempdir().unwrap();
        let configured = SecretString::from("configured secret, long enough to sign......");
        let (secret, source) = load_or_generate(Some(&configured), dir.path()).unwrap();
        assert_eq!(source, SecretSource::Configured);
        assert_eq!(
            secret.expose_bytes(),
            b"configured secret, long enough to sign......"
        );
        assert!(!dir.path().join(SECRET_FILE).exists());
    }

    #[test]
    fn generated_once_owner_only_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("filiera-data");
        let (first, source) = load_or_generate(None, &data).unwrap();
        let path = data.join(SECRET_FILE);
        assert_eq!(source, SecretSource::Generated(path.clone()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let decoded = STANDARD.decode(first.expose_bytes()).unwrap();
        assert_eq!(decoded.len(), 32);
        let (second, source) = load_or_generate(None, &data).unwrap();
        assert_eq!(source, SecretSource::File(path.clone()));
        assert_eq!(first.expose_bytes(), second.expose_bytes());
        // Debug never shows it.
        let text = std::str::from_utf8(first.expose_bytes()).unwrap();
        assert!(!format!("{first:?}").contains(text));
        // Another data folder gets another secret.
        let (other, _) = load_or_generate(None, &dir.path().join("other")).unwrap();
        assert_ne!(other.expose_bytes(), first.expose_bytes());
    }

    /// Processes starting together on one data folder all get the one secret, never a file
    /// still being written, and no temporary file is left behind.
    #[test]
    fn concurrent_first_starts_share_one_whole_secret() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let secrets: Vec<String> = std::thread::scope(|scope| {
                let starts: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| load_or_generate(None, &data)))
                    .collect();
                starts
                    .into_iter()
                    .map(|start| {
                        let (secret, _) = start.join().unwrap().unwrap();
                        secret.0.expose_secret().to_owned()
                    })
                    .collect()
            });
            assert!(secrets.windows(2).all(|w| w[0] == w[1]));
            let files: Vec<_> = std::fs::read_dir(&data)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(files, [SECRET_FILE], "no temporary file is left behind");
        }
    }

    #[test]
    fn a_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_FILE);
        fs::write(&path, "a secret someone else could read, long enough\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_generate(None, dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("someone else"), "{err}");
    }
}
