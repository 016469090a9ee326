//! Where a gateway's virtual key is kept between runs (`tollgate login`, `tollgate launch`,
//! `status`, `doctor`): the OS keyring (the `keyring` crate: Secret Service on Linux, Keychain
//! on macOS, Credential Manager on Windows), entry service `tollgate`, user `<gateway URL>`.
//!
//! Where no keyring answers (no D-Bus session, no Secret Service daemon: servers, containers,
//! CI) the key goes to a file readable by the user only, `<config dir>/tollgate/keys/
//! <host>_<port>.key` (0600 in a 0700 directory), with a warning on stderr each time it is
//! written. A directory of ours open to others is set to 0700, another user's refused; a key
//! file that is not a regular 0600 file of this user is refused when read (as ssh does). The
//! fallback location is for Linux and macOS (`$XDG_CONFIG_HOME`, else `~/.config`). Reads try the keyring, then the file (keys stored by earlier versions of
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
        let gateway = &entry_name(gateway);
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
        let gateway = &entry_name(gateway);
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

/// The keyring user name of `gateway`: its normal form ([`super::config::gateway_url`]:
/// lower-case scheme and host, no default port, no trailing `/`), so that every spelling of one
/// gateway, by `login` or `launch`, finds the same key.
fn entry_name(gateway: &str) -> String {
    super::config::gateway_url(gateway).unwrap_or_else(|_| gateway.to_owned())
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

/// The stored key in `path`, if there is one. On Unix the file must be a regular file (not a
/// symlink) of this user, readable by them only (like ssh with its keys): anything else is
/// refused with how to fix it, rather than trusting a key others could read or have planted.
fn read_key(path: &Path) -> anyhow::Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let shown = path.display();
        if !meta.file_type().is_file() {
            anyhow::bail!(
                "{shown} is not a regular file (a symlink?): the key file must be a plain file; \
                 delete it and store the key again (tollgate login, or tollgate launch)"
            );
        }
        if meta.uid() != euid() {
            anyhow::bail!(
                "{shown} belongs to another user (uid {}): refusing to use its key; delete it and \
                 store the key again",
                meta.uid()
            );
        }
        if meta.mode() & 0o077 != 0 {
            anyhow::bail!(
                "{shown} can be read by others (mode {:o}): refusing to use its key; run \
                 `chmod 600 {shown}` (and consider the key leaked: revoke it and store a new one)",
                meta.mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|k| !k.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// This process's effective user id.
#[cfg(unix)]
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `dir` made private to this user: created 0700 if missing; an existing one of ours with
/// group or other permissions is set to 0700; another user's is refused.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let meta =
            std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if meta.uid() != euid() {
            anyhow::bail!(
                "{} belongs to another user (uid {}): tollgate keeps keys and settings only in a \
                 directory of yours; remove it, or set XDG_CONFIG_HOME to another directory",
                dir.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private (chmod 700)", dir.display()))?;
        }
    }
    Ok(())
}

/// Writes a file readable by this user only: in a private directory ([`private_dir`]), a 0600
/// file under a random name (created new: an existing file or symlink there is never followed
/// or reused) renamed over the old one.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("the path has no directory")?;
    private_dir(dir)?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut created = false;
    let result = (|| {
        use std::io::Write as _;
        let mut f = options.open(&tmp)?;
        created = true;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() && created {
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

    #[cfg(unix)]
    #[test]
    fn a_key_directory_open_to_others_is_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("tollgate/keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = KeyStore::file_only(dir.path());
        store.save("http://127.0.0.1:8080", "sk-tg-1").unwrap();
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["127.0.0.1_8080.key"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_or_a_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::file_only(dir.path());
        let gw = "http://127.0.0.1:8080";
        store.save(gw, "sk-tg-1").unwrap();
        let path = store.file(gw).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = format!("{:#}", store.load(gw).unwrap_err());
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(store.load(gw).unwrap().unwrap().0, "sk-tg-1");
        // A symlink in its place (to a file of ours, 0600) is refused too.
        let elsewhere = dir.path().join("planted");
        std::fs::write(&elsewhere, "sk-tg-planted\n").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let e = format!("{:#}", store.load(gw).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        // Saving replaces the symlink (renamed over), never writes through it.
        store.save(gw, "sk-tg-2").unwrap();
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            "sk-tg-planted\n"
        );
        assert_eq!(store.load(gw).unwrap().unwrap().0, "sk-tg-2");
    }

    #[test]
    fn every_spelling_of_a_gateway_finds_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::file_only(dir.path());
        store.save("HTTP://LocalHost:8080/", "sk-tg-1").unwrap();
        let (key, _) = store.load("http://localhost:8080").unwrap().unwrap();
        assert_eq!(key, "sk-tg-1");
        store.save("https://gw.example.com", "sk-tg-2").unwrap();
        let (key, _) = store.load("https://GW.example.com:443/").unwrap().unwrap();
        assert_eq!(key, "sk-tg-2");
        assert_eq!(
            entry_name("https://GW.example.com:443/"),
            "https://gw.example.com"
        );
    }

    #[test]
    fn keys_are_redacted_to_their_last_four_characters() {
        assert_eq!(redact("sk-tg-abcdefghijklmnop"), "sk-tg-…mnop");
        assert_eq!(redact("0123456789abcdef"), "…cdef");
        assert_eq!(redact("short"), "****");
    }
}
