//! Encryption of provider secrets at rest, the master key, and virtual-key values.
//!
//! * [`SecretBox`] seals a secret with AES-256-GCM under the caller-supplied 32-byte key. Every
//!   value gets a fresh random 96-bit nonce; the associated data binds a ciphertext to the row and
//!   field it was written for, so ciphertexts cannot be swapped between keys or fields.
//!   Sealed text is `v1:` followed by base64 (standard alphabet) of `nonce || ciphertext || tag`.
//! * [`load_or_create_key_file`] and [`key_from_base64`] produce the master key.
//! * [`generate_virtual_key`] makes a virtual-key value (`sk-tg-` + 43 characters of base64url of
//!   32 random bytes) and [`sha256`] its digest, the only form that is stored.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Prefix of every virtual-key value issued by Tollgate.
pub const VIRTUAL_KEY_PREFIX: &str = "sk-tg-";
const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Errors of this module. None of them carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the secret key must be 32 bytes encoded as base64, got {0} bytes")]
    KeyLength(usize),
    #[error("the secret key is not valid base64")]
    KeyEncoding,
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the operating system random number generator failed")]
    Random,
    #[error("encryption failed")]
    Seal,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("decryption failed (wrong secret key, or the stored value was altered)")]
    Open,
}

/// Decodes a 32-byte key given as base64 (standard or URL-safe alphabet, padding optional).
/// Surrounding whitespace is ignored.
pub fn key_from_base64(s: &str) -> Result<[u8; 32], CryptoError> {
    let s = s.trim();
    let bytes = STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .map_err(|_| CryptoError::KeyEncoding)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| CryptoError::KeyLength(bytes.len()))
}

/// Reads the base64 key stored in `path`, or creates the file with a fresh random key.
///
/// A new file (and any missing parent directory) is created with owner-only permissions (0600
/// on Unix); creation is race-free (`create_new`), so two processes starting together end up with
/// the same key. An existing file readable by others is used but logged as a warning.
pub fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], CryptoError> {
    let file_err = |source| CryptoError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            warn_if_group_or_world_readable(path);
            return key_from_base64(&text);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_err(e)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(file_err)?;
    }
    let key = random_bytes::<32>()?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            let mut line = STANDARD.encode(key);
            line.push('\n');
            file.write_all(line.as_bytes()).map_err(file_err)?;
            file.sync_all().map_err(file_err)?;
            tracing::info!(path = %path.display(), "created a new secret key file");
            Ok(key)
        }
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            key_from_base64(&fs::read_to_string(path).map_err(file_err)?)
        }
        Err(e) => Err(file_err(e)),
    }
}

#[cfg(unix)]
fn warn_if_group_or_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the secret key file is accessible by other users; it should be 0600"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_group_or_world_readable(_path: &Path) {}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|_| CryptoError::Random)?;
    Ok(buf)
}

/// A new virtual-key value: `sk-tg-` followed by base64url (no padding) of 32 random bytes.
pub fn generate_virtual_key() -> Result<String, CryptoError> {
    let bytes = random_bytes::<32>()?;
    Ok(format!(
        "{VIRTUAL_KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A key for one purpose derived from the master key (HMAC-SHA256 of the purpose), so a
/// value derived with it reveals nothing about keys of other purposes.
pub fn derive_key(master: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

/// The first characters of a virtual key's value (`sk-tg-AbCd`), stored to recognise the key in
/// listings.
pub fn virtual_key_prefix(value: &str) -> String {
    value.chars().take(VIRTUAL_KEY_SHOWN_CHARS).collect()
}

/// Characters of a virtual key's value kept (and shown) to recognise it: `sk-tg-` and four more.
const VIRTUAL_KEY_SHOWN_CHARS: usize = 10;

/// SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// AES-256-GCM sealing of secrets under the master key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key redacted>)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Encrypts `plaintext` with a fresh nonce; `aad` must be given again to [`SecretBox::open`].
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(blob)))
    }

    /// Decrypts a value produced by [`SecretBox::seal`] with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::Malformed)?;
        let blob = STANDARD
            .decode(encoded)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let sb = SecretBox::new(&[7u8; 32]);
        let a = sb.seal("AKIASECRET", b"ctx").unwrap();
        let b = sb.seal("AKIASECRET", b"ctx").unwrap();
        assert_ne!(a, b, "each seal must use a new nonce");
        assert!(!a.contains("AKIASECRET"));
        assert_eq!(sb.open(&a, b"ctx").unwrap(), "AKIASECRET");
        assert_eq!(sb.open(&b, b"ctx").unwrap(), "AKIASECRET");
    }

    #[test]
    fn open_rejects_wrong_key_wrong_aad_and_tampering() {
        let sb = SecretBox::new(&[1u8; 32]);
        let sealed = sb.seal("hunter2", b"row-1/value").unwrap();
        assert!(matches!(
            SecretBox::new(&[2u8; 32]).open(&sealed, b"row-1/value"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            sb.open(&sealed, b"row-2/value"),
            Err(CryptoError::Open)
        ));
        let mut blob = STANDARD.decode(&sealed[3..]).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!("v1:{}", STANDARD.encode(blob));
        assert!(matches!(
            sb.open(&tampered, b"row-1/value"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(sb.open("plain", b""), Err(CryptoError::Malformed)));
        assert!(matches!(
            sb.open("v1:AAAA", b""),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn key_from_base64_accepts_both_alphabets_and_checks_length() {
        let key = [0xfbu8; 32];
        assert_eq!(key_from_base64(&STANDARD.encode(key)).unwrap(), key);
        assert_eq!(key_from_base64(&URL_SAFE_NO_PAD.encode(key)).unwrap(), key);
        assert_eq!(
            key_from_base64(&format!("  {}\n", STANDARD.encode(key))).unwrap(),
            key
        );
        assert!(matches!(
            key_from_base64(&STANDARD.encode([0u8; 16])),
            Err(CryptoError::KeyLength(16))
        ));
        assert!(matches!(
            key_from_base64("not base64!"),
            Err(CryptoError::KeyEncoding)
        ));
    }

    #[test]
    fn key_file_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/secret.key");
        let first = load_or_create_key_file(&path).unwrap();
        let second = load_or_create_key_file(&path).unwrap();
        assert_eq!(first, second, "an existing key file must be reused");
        assert_ne!(first, [0u8; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let other = dir.path().join("other.key");
        assert_ne!(load_or_create_key_file(&other).unwrap(), first);
    }

    #[test]
    fn virtual_keys_have_the_documented_shape() {
        let a = generate_virtual_key().unwrap();
        let b = generate_virtual_key().unwrap();
        assert_ne!(a, b);
        let body = a.strip_prefix("sk-tg-").unwrap();
        assert_eq!(body.len(), 43);
        assert!(
            body.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
    }
}
