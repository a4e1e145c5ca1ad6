//! The primitives, in one place: 256-bit keys that wipe themselves, AES-256-GCM sealing with a
//! random nonce and associated data, key wrapping, and HMAC-SHA-256.
//!
//! Every ciphertext is bound to what it belongs to through its associated data (a label naming
//! its kind and version, and for per-beneficiary data the beneficiary id): a ciphertext or a
//! wrapped key copied to another row, or used as another kind of thing, fails to open.

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret as _, SecretBox};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Bytes in a key (AES-256, HMAC-SHA-256).
pub(crate) const KEY_LEN: usize = 32;
/// Bytes in an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;

/// Associated data of the blind-index key, wrapped by the master key.
pub(crate) const INDEX_KEY_LABEL: &[u8] = b"filiera-vault/index-key/v1";
/// The message whose MAC under the master key is its check value.
pub(crate) const MASTER_CHECK_LABEL: &[u8] = b"filiera-vault/master-check/v1";
/// Prefix of a data key's associated data (then the beneficiary id).
const DATA_KEY_LABEL: &[u8] = b"filiera-vault/data-key/v1\0";
/// Prefix of an identity's associated data (then the beneficiary id).
const PERSON_LABEL: &[u8] = b"filiera-vault/person/v1\0";
/// Prefix of a blind-index entry's message (then the normalised fiscal code).
const FISCAL_CODE_LABEL: &[u8] = b"filiera-vault/fiscal-code/v1\0";

/// A 256-bit key, wiped from memory when dropped, never printed.
pub(crate) struct SecretKey(SecretBox<[u8; KEY_LEN]>);

/// A ciphertext or wrapped key did not open: the wrong key, or bytes that were altered or
/// moved to another row.
#[derive(Debug)]
pub(crate) struct Unsealable;

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub(crate) fn random() -> Self {
        Self(SecretBox::init_with_mut(|bytes: &mut [u8; KEY_LEN]| {
            OsRng.fill_bytes(bytes);
        }))
    }

    /// A key made of `bytes`, which the caller wipes.
    pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self(SecretBox::init_with_mut(|key: &mut [u8; KEY_LEN]| {
            key.copy_from_slice(bytes);
        }))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.expose().into())
    }

    /// AES-256-GCM of `plaintext` under a random nonce: `(nonce, ciphertext || tag)`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let mut nonce = [0_u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        (nonce, ciphertext)
    }

    /// The plaintext of [`SecretKey::seal`]'s output, if the key, nonce, ciphertext and
    /// associated data all match.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Unsealable> {
        if nonce.len() != NONCE_LEN {
            return Err(Unsealable);
        }
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Unsealable)
    }

    /// `key` sealed under this one, as one blob: `nonce || ciphertext || tag`.
    pub(crate) fn wrap(&self, aad: &[u8], key: &SecretKey) -> Vec<u8> {
        let (nonce, ciphertext) = self.seal(aad, key.expose());
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        blob
    }

    /// The key inside a blob made by [`SecretKey::wrap`].
    pub(crate) fn unwrap_key(&self, aad: &[u8], blob: &[u8]) -> Result<SecretKey, Unsealable> {
        if blob.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plain = self.open(aad, nonce, ciphertext)?;
        let bytes: &[u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| Unsealable)?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// HMAC-SHA-256 of `message` under this key.
    pub(crate) fn mac(&self, message: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.expose())
            .expect("HMAC takes keys of any length");
        for part in message {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Associated data of a beneficiary's wrapped data key.
pub(crate) fn data_key_aad(beneficiary: Uuid) -> Vec<u8> {
    labelled(DATA_KEY_LABEL, beneficiary)
}

/// Associated data of a beneficiary's identity ciphertext.
pub(crate) fn person_aad(beneficiary: Uuid) -> Vec<u8> {
    labelled(PERSON_LABEL, beneficiary)
}

/// The blind-index digest of a normalised fiscal code.
pub(crate) fn fiscal_code_digest(index_key: &SecretKey, normalised: &str) -> [u8; 32] {
    index_key.mac(&[FISCAL_CODE_LABEL, normalised.as_bytes()])
}

fn labelled(label: &[u8], beneficiary: Uuid) -> Vec<u8> {
    let mut aad = label.to_vec();
    aad.extend_from_slice(beneficiary.as_bytes());
    aad
}

/// Lower-case hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_associated_data() {
        let key = SecretKey::random();
        let (nonce, sealed) = key.seal(b"a", b"hello");
        assert_eq!(
            key.open(b"a", &nonce, &sealed).unwrap().as_slice(),
            b"hello"
        );
        assert!(key.open(b"b", &nonce, &sealed).is_err());
        assert!(SecretKey::random().open(b"a", &nonce, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(key.open(b"a", &nonce, &flipped).is_err());
        assert!(key.open(b"a", &nonce[..4], &sealed).is_err());
    }

    #[test]
    fn wrapped_keys_unwrap_only_for_their_beneficiary() {
        let master = SecretKey::random();
        let data = SecretKey::random();
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let blob = master.wrap(&data_key_aad(one), &data);
        let back = master.unwrap_key(&data_key_aad(one), &blob).unwrap();
        assert_eq!(back.expose(), data.expose());
        assert!(master.unwrap_key(&data_key_aad(two), &blob).is_err());
        assert!(master.unwrap_key(&person_aad(one), &blob).is_err());
        assert!(master.unwrap_key(&data_key_aad(one), &blob[..5]).is_err());
    }

    #[test]
    fn two_seals_of_one_message_differ() {
        let key = SecretKey::random();
        assert_ne!(key.seal(b"", b"x").1, key.seal(b"", b"x").1);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
