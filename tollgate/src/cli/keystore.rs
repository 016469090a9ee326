//! Where a gateway's virtual key is kept between runs (`tollgate login`, `tollgate launch`,
//! `status`, `doctor`): the OS keyring (the `keyring` crate: Secret Service on Linux, Keychain
//! on macOS, Credential Manager on Windows), entry service `tollgate`, user `<gateway URL>`.
//!
//! Where no keyring answers (no D-Bus session, no Secret Service daemon: servers, containers,
//! CI) the key goes to a file readable by the user only, `<config dir>/tollgate/keys/
//! <host>_<port>.key` (0600 in a 0700 directory), with a warning on stderr each time it is
//! written. Reads try the keyring, then the file (keys stored by earlier versions of
//! `tollgate login` are there). `TOLLGATE_KEYRING=off` skips the keyring (file only).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

/// The keyring entry's service name.
const SERVICE: &str = "tollgate";

/// Where a stored key came from, or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Keyring,
    /// The 0600 fallback file.
    File(PathBuf),
    /// Not stored: the `TOLLGATE_API_KEY` variable (`status`, `doctor`).
    Env,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Keyring => f.write_str("the OS keyring"),
            Place::File(p) => write!(f, "{}", p.display()),
            Place::Env => f.write_str("TOLLGATE_API_KEY"),
        }
    }
}

/// The key store of one user (their config directory).
#[derive(Debug, Clone)]
pub struct KeyStore {
    config_dir: PathBuf,
    use_keyring: bool,
}

impl KeyStore {
    /// The store of this user: `$XDG_CONFIG_HOME`, else `~/.config`.
    pub fn from_env() -> anyhow::Result<KeyStore> {
        let config_dir = config_dir().ok_or_else(|| {
            anyhow!("cannot find a configuration directory: set XDG_CONFIG_HOME or HOME")
        })?;
        let use_keyring = !std::env::var("TOLLGATE_KEYRING").is_ok_and(|v| v == "off");
        Ok(KeyStore {
            config_dir,
            use_keyring,
        })
    }

    #[cfg(test)]
    pub fn file_only(config_dir: &Path) -> KeyStore {
        KeyStore {
            config_dir: config_dir.to_owned(),
            use_keyring: false,
        }
    }

    /// The fallback file of `gateway`.
    pub fn file(&self, gateway: &str) -> anyhow::Result<PathBuf> {
        key_file(&self.config_dir, gateway)
    }

    /// The stored key of `gateway`, and where it was found.
    pub fn load(&self, gateway: &str) -> anyhow::Result<Option<(String, Place)>> {
        if self.use_keyring
            && let Ok(entry) = keyring::Entry::new(SERVICE, gateway)
            && let Ok(key) = entry.get_password()
            && !key.trim().is_empty()
        {
            return Ok(Some((key.trim().to_owned(), Place::Keyring)));
        }
        let path = self.file(gateway)?;
        Ok(read_key(&path)?.map(|k| (k, Place::File(path))))
    }

    /// Stores the key of `gateway`: in the keyring, else in the 0600 file with a warning on
    /// stderr. A key stored in the keyring removes an older file copy.
    pub fn save(&self, gateway: &str, key: &str) -> anyhow::Result<Place> {
        let path = self.file(gateway)?;
        let why = if self.use_keyring {
            match keyring::Entry::new(SERVICE, gateway).and_then(|e| e.set_password(key)) {
                Ok(()) => {
                    if path.exists() {
                        let _ = std::fs::remove_file(&path);
                    }
                    return Ok(Place::Keyring);
                }
                Err(e) => e.to_string(),
            }
        } else {
            "TOLLGATE_KEYRING=off".to_owned()
        };
        write_key(&path, key)?;
        eprintln!(
            "warning: no OS keyring available ({why}); the virtual key is stored in plain text in \
             {} (readable by you only, mode 0600). Anyone who can read your files as you can use it.",
            path.display()
        );
        Ok(Place::File(path))
    }
}

/// `<config dir>/tollgate/keys/<host>_<port>.key`.
pub fn key_file(dir: &Path, gateway: &str) -> anyhow::Result<PathBuf> {
    let url = reqwest::Url::parse(gateway)?;
    let host: String = url
        .host_str()
        .unwrap_or("gateway")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let port = url.port_or_known_default().unwrap_or(0);
    Ok(dir
        .join("tollgate")
        .join("keys")
        .join(format!("{host}_{port}.key")))
}

/// `$XDG_CONFIG_HOME`, else `$HOME/.config`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config"))
}

fn read_key(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|k| !k.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a file readable by this user only: a 0700 directory, a 0600 file written next to
/// the old one and renamed over it.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("the path has no directory")?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        use std::io::Write as _;
        let mut f = options.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn write_key(path: &Path, key: &str) -> anyhow::Result<()> {
    write_private(path, format!("{key}\n").as_bytes())
}

/// `sk-tg-…` with all but the last 4 characters hidden, for display.
pub fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "****".to_owned();
    }
    let prefix: String = if key.starts_with("sk-tg-") {
        "sk-tg-".to_owned()
    } else {
        String::new()
    };
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_named_after_host_and_port() {
        let dir = Path::new("/cfg");
        assert_eq!(
            key_file(dir, "https://gw.example.com").unwrap(),
            Path::new("/cfg/tollgate/keys/gw.example.com_443.key")
        );
        assert_eq!(
            key_file(dir, "http://127.0.0.1:8080").unwrap(),
            Path::new("/cfg/tollgate/keys/127.0.0.1_8080.key")
        );
        assert_eq!(
            key_file(dir, "http://[::1]:9").unwrap(),
            Path::new("/cfg/tollgate/keys/___1__9.key")
        );
    }

    #[test]
    fn the_file_fallback_is_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::file_only(dir.path());
        let gw = "http://127.0.0.1:8080";
        assert_eq!(store.load(gw).unwrap(), None);
        let place = store.save(gw, "sk-tg-1").unwrap();
        let path = dir.path().join("tollgate/keys/127.0.0.1_8080.key");
        assert_eq!(place, Place::File(path.clone()));
        store.save(gw, "sk-tg-2").unwrap();
        assert_eq!(
            store.load(gw).unwrap(),
            Some(("sk-tg-2".to_owned(), Place::File(path.clone())))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o700);
        }
        // Another gateway has its own key.
        assert_eq!(store.load("https://other.example.com").unwrap(), None);
    }

    #[test]
    fn keys_are_redacted_to_their_last_four_characters() {
        assert_eq!(redact("sk-tg-abcdefghijklmnop"), "sk-tg-…mnop");
        assert_eq!(redact("0123456789abcdef"), "…cdef");
        assert_eq!(redact("short"), "****");
    }
}
