//! The server's HMAC keys (CSRF tokens, emailed-code hashes), kept outside the database they
//! protect, so a stolen database or backup gives no live code and no CSRF token away
//! (OWASP ASVS V6.4.1).
//!
//! Either `CLEF_SECRET_KEY` (base64url values, comma-separated: the first signs, all verify), or
//! `secret.key` (signs) and `secret.previous` (verifies only) in the keys folder, mode 0600.
//! Every instance must see the same keys: the same variable, or the same keys folder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::keys::{self, KeyError};
use crate::secret::{b64url, b64url_decode, ct_eq, hmac_b64};

pub const CURRENT_FILE: &str = "secret.key";
pub const PREVIOUS_FILE: &str = "secret.previous";
/// HMAC-SHA256 wants a key as long as its output (RFC 2104 §3).
const MIN_BYTES: usize = 32;

/// A fresh key value, as `CLEF_SECRET_KEY` or `secret.key` hold it.
pub fn new_value() -> String {
    crate::secret::random_token(MIN_BYTES)
}

/// Parses a list of base64url keys (commas or newlines between them); errors say which one.
pub fn parse_list(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for (i, item) in text.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()).enumerate() {
        let bytes = b64url_decode(item).ok_or_else(|| format!("key {} is not base64url", i + 1))?;
        if bytes.len() < MIN_BYTES {
            return Err(format!("key {} is shorter than {MIN_BYTES} bytes", i + 1));
        }
        out.push(bytes);
    }
    if out.is_empty() {
        return Err("no key given".to_owned());
    }
    Ok(out)
}

enum Source {
    Env,
    Folder(PathBuf),
}

struct Inner {
    source: Source,
    /// Never empty; the first key signs.
    ring: RwLock<Arc<Vec<Vec<u8>>>>,
    /// When a value no key matched last made us re-read the folder early.
    early_reload: std::sync::Mutex<Option<std::time::Instant>>,
    /// Bumped by every reload that changed the keys, whoever triggered it.
    generation: std::sync::atomic::AtomicU64,
}

/// The live key ring, cheap to clone.
#[derive(Clone)]
pub struct SecretKeys(Arc<Inner>);

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKeys([redacted])")
    }
}

impl SecretKeys {
    /// From `CLEF_SECRET_KEY`, else from the keys folder, creating `secret.key` when missing.
    pub fn load(config: &Config) -> Result<SecretKeys, KeyError> {
        let (source, ring) = match &config.secret_key {
            Some(s) => (
                Source::Env,
                parse_list(s.expose()).map_err(|e| KeyError::Invalid("CLEF_SECRET_KEY".into(), e))?,
            ),
            None => (Source::Folder(config.keys_dir.clone()), read_folder(&config.keys_dir, true)?),
        };
        Ok(SecretKeys(Arc::new(Inner {
            source,
            ring: RwLock::new(Arc::new(ring)),
            early_reload: std::sync::Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
        })))
    }

    fn ring(&self) -> Arc<Vec<Vec<u8>>> {
        match self.0.ring.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// HMAC under the signing key.
    pub fn mac(&self, parts: &[&str]) -> String {
        hmac_b64(&self.ring()[0], parts)
    }

    /// HMAC under every key, signing key first: what a value made before a rotation may be.
    pub fn macs(&self, parts: &[&str]) -> Vec<String> {
        self.ring().iter().map(|k| hmac_b64(k, parts)).collect()
    }

    /// Whether `presented` is the HMAC of `parts` under any key. Every key is tried, each
    /// compare in constant time, so the answer's timing says nothing about which matched.
    ///
    /// Several instances share the folder: a value signed by an instance that already read a
    /// key rotated moments ago matches nothing here until our next periodic reload, so a miss
    /// re-reads the folder once (at most once a second, so bad values cannot turn into a file
    /// read per request) and tries again.
    pub fn verify(&self, parts: &[&str], presented: &str) -> bool {
        let check = || self.macs(parts).iter().fold(false, |ok, m| ok | ct_eq(m, presented));
        if check() {
            return true;
        }
        let due = {
            let mut last = self.0.early_reload.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        due && matches!(self.reload(), Ok(true)) && check()
    }

    /// Every key, signing key first, for keys derived to other purposes (crate::secret_box).
    pub(crate) fn ring_for_derivation(&self) -> Arc<Vec<Vec<u8>>> {
        self.ring()
    }

    /// Re-reads the folder after `clef keys rotate-secret`. Returns whether the keys changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Source::Folder(dir) = &self.0.source else {
            return Ok(false);
        };
        let fresh = read_folder(dir, false)?;
        if *self.ring() == fresh {
            return Ok(false);
        }
        match self.0.ring.write() {
            Ok(mut g) => *g = Arc::new(fresh),
            Err(p) => *p.into_inner() = Arc::new(fresh),
        }
        self.0.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// Changes with every reload that found new keys (early ones in `verify` included), so
    /// work that follows a key change is not skipped when someone else did the reload.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new signing key in the folder; the old one moves to `secret.previous`, where it still
    /// verifies what it signed. Keys older than that are dropped: codes and forms live minutes.
    pub fn rotate(dir: &Path) -> Result<(), KeyError> {
        keys::ensure_dir(dir)?;
        let _lock = keys::lock_folder(dir)?;
        let old = read_one(&dir.join(CURRENT_FILE))?;
        let new = new_value();
        if let Some(old) = old {
            keys::write_atomic(dir, PREVIOUS_FILE, format!("{}\n", b64url(&old)).as_bytes(), true)?;
        }
        keys::write_atomic(dir, CURRENT_FILE, format!("{new}\n").as_bytes(), true)?;
        Ok(())
    }
}

fn read_one(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut list = parse_list(&text).map_err(|e| KeyError::Invalid(path.display().to_string(), e))?;
            Ok(Some(list.remove(0)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::Io(path.display().to_string(), e)),
    }
}

/// `secret.key` then `secret.previous`. With `create`, a missing `secret.key` is generated
/// under the folder lock, so instances starting together end with the same one.
fn read_folder(dir: &Path, create: bool) -> Result<Vec<Vec<u8>>, KeyError> {
    let current = dir.join(CURRENT_FILE);
    if create {
        keys::ensure_dir(dir)?;
        let _lock = keys::lock_folder(dir)?;
        if !current.exists() {
            keys::write_atomic(dir, CURRENT_FILE, format!("{}\n", new_value()).as_bytes(), false)?;
            tracing::info!(file = %current.display(), "generated the server secret key");
        }
    }
    keys::tighten_mode(&current, 0o600)?;
    let mut ring = vec![read_one(&current)?.ok_or_else(|| {
        KeyError::Io(
            current.display().to_string(),
            std::io::Error::new(std::io::ErrorKind::NotFound, "missing"),
        )
    })?];
    let previous = dir.join(PREVIOUS_FILE);
    match std::fs::read_to_string(&previous) {
        Ok(text) => {
            keys::tighten_mode(&previous, 0o600)?;
            ring.extend(parse_list(&text).map_err(|e| KeyError::Invalid(previous.display().to_string(), e))?);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(KeyError::Io(previous.display().to_string(), e)),
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_name_the_bad_key() {
        let (a, b) = (new_value(), new_value());
        assert_eq!(parse_list(&format!("{a}, {b}")).unwrap().len(), 2);
        assert_eq!(parse_list(&format!("{a},c2hvcnQ")).unwrap_err(), "key 2 is shorter than 32 bytes");
        assert_eq!(parse_list("not base64!").unwrap_err(), "key 1 is not base64url");
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn rotation_keeps_the_previous_key_verifying() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let config = crate::config::RawConfig {
            keys_dir: Some(keys_dir.display().to_string()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let ring = SecretKeys::load(&config).unwrap();
        let before = ring.mac(&["csrf", "seed"]);
        SecretKeys::rotate(&keys_dir).unwrap();
        assert!(ring.reload().unwrap());
        assert_ne!(ring.mac(&["csrf", "seed"]), before, "the new key signs");
        assert!(ring.verify(&["csrf", "seed"], &before), "the old key still verifies");
        assert!(!ring.verify(&["csrf", "other"], &before));
        SecretKeys::rotate(&keys_dir).unwrap();
        ring.reload().unwrap();
        assert!(!ring.verify(&["csrf", "seed"], &before), "two rotations retire a key");
        use std::os::unix::fs::PermissionsExt;
        for f in [CURRENT_FILE, PREVIOUS_FILE] {
            let mode = std::fs::metadata(keys_dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
}
