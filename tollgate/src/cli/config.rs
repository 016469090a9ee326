//! The last choices of `tollgate launch` (`<config dir>/tollgate/launch.json`): gateway URL,
//! harness, model, small model, MCP on/off. Never the key (that is in the [`super::keystore`]).
//! Pure (de)serialisation plus two small file operations.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::harness::{Choices, Harness};

/// The default gateway URL (the all-in-one's listener).
pub const DEFAULT_GATEWAY: &str = "http://localhost:8080";

/// What `launch.json` holds. Every field optional: an older or hand-edited file still loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<Harness>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<bool>,
}

impl Saved {
    /// The complete choices it holds, if it holds them all.
    pub fn choices(&self) -> Option<Choices> {
        Some(Choices {
            gateway: self.gateway.clone()?,
            harness: self.harness?,
            model: self.model.clone()?,
            small_model: self.small_model.clone(),
            mcp: self.mcp.unwrap_or(true),
        })
    }

    pub fn from_choices(c: &Choices) -> Saved {
        Saved {
            gateway: Some(c.gateway.clone()),
            harness: Some(c.harness),
            model: Some(c.model.clone()),
            small_model: c.small_model.clone(),
            mcp: Some(c.mcp),
        }
    }
}

/// `<config dir>/tollgate/launch.json`.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("tollgate").join("launch.json")
}

/// The saved choices; a missing file is empty, an unreadable one an error that names it.
pub fn load(path: &Path) -> anyhow::Result<Saved> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid (delete it to start over)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn save(path: &Path, saved: &Saved) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(saved)?;
    text.push(b'\n');
    super::keystore::write_private(path, &text)
}

/// The gateway URL in one normal form: lower-case scheme and host, no default port (`:443`
/// for https, `:80` for http), no trailing `/`; http(s) only, without `user:pass@` (a secret in
/// a URL would be saved to `launch.json` and shown in summaries: the key goes in the key store).
/// `tollgate login`, `launch`, `status` and `doctor` all look keys up under this form.
pub fn gateway_url(raw: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(raw.trim())
        .with_context(|| format!("the gateway URL {raw:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        anyhow::bail!(
            "the gateway URL must be an http:// or https:// URL, such as https://gateway.example.com"
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        anyhow::bail!(
            "the gateway URL must not contain a user name or password (user:pass@): give the \
             virtual key at the key prompt, with --key-stdin or TOLLGATE_API_KEY instead"
        );
    }
    Ok(normal_form(&url))
}

/// `url` as [`gateway_url`] gives it (the `url` crate already lower-cases the scheme and
/// host and drops a default port).
pub fn normal_form(url: &reqwest::Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_round_trip_and_partial_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert_eq!(load(&p).unwrap(), Saved::default());
        let c = Choices {
            gateway: "http://gw:8080".into(),
            harness: Harness::Codex,
            model: "claude-opus-4-6".into(),
            small_model: None,
            mcp: false,
        };
        save(&p, &Saved::from_choices(&c)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"harness\": \"codex\""), "{text}");
        assert_eq!(load(&p).unwrap().choices(), Some(c));
        std::fs::write(&p, r#"{"gateway":"http://x"}"#).unwrap();
        let partial = load(&p).unwrap();
        assert_eq!(partial.gateway.as_deref(), Some("http://x"));
        assert_eq!(partial.choices(), None);
        std::fs::write(&p, "not json").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("launch.json"));
    }

    #[test]
    fn gateway_urls_are_checked_and_trimmed() {
        assert_eq!(
            gateway_url(" https://gw.example.com/ ").unwrap(),
            "https://gw.example.com"
        );
        assert!(gateway_url("ftp://x").is_err());
        // One form for every spelling of the same gateway (the key store's lookup name).
        for same in [
            "http://localhost:8080",
            "HTTP://LocalHost:8080/",
            "http://localhost:8080//",
        ] {
            assert_eq!(
                gateway_url(same).unwrap(),
                "http://localhost:8080",
                "{same}"
            );
        }
        for same in ["https://GW.example.com:443/", "https://gw.example.com"] {
            assert_eq!(
                gateway_url(same).unwrap(),
                "https://gw.example.com",
                "{same}"
            );
        }
        assert_eq!(gateway_url("http://gw:80").unwrap(), "http://gw");
        assert_eq!(
            gateway_url("https://gw.example.com/base/").unwrap(),
            "https://gw.example.com/base"
        );
        assert!(gateway_url("not a url").is_err());
    }

    #[test]
    fn gateway_urls_with_credentials_are_refused() {
        for raw in [
            "https://user:sk-tg-secret@gw.example.com",
            "https://user@gw.example.com",
            "http://:pw@localhost:8080",
        ] {
            let e = gateway_url(raw).unwrap_err().to_string();
            assert!(e.contains("user name or password"), "{raw}: {e}");
            assert!(!e.contains("sk-tg-secret"), "{e}");
        }
    }
}
