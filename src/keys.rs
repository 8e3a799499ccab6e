//! Signing keys: load or generate under `keys/`, sign JWTs, publish the JWKS, rotate.
//!
//! Files are `{created_unix}-{alg}.pem` (PKCS#8). Per algorithm the newest key signs; an older
//! one stays published until every token it could have signed has expired.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::{b64url, b64url_decode};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a usable key ({1})")]
    Invalid(String, String),
    #[error("signing failed")]
    Sign,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature or claims: {0}")]
    Rejected(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    ES256,
}

impl Alg {
    pub const ALL: [Alg; 2] = [Alg::RS256, Alg::ES256];
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }
    fn file_tag(self) -> &'static str {
        match self {
            Alg::RS256 => "rs256",
            Alg::ES256 => "es256",
        }
    }
}

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

pub struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    pub created_at: i64,
    pub file: PathBuf,
    material: Material,
    jwk: serde_json::Value,
    /// Parsed once: rebuilding an RSA key per verification costs more than the check itself.
    public: ParsedPublicKey,
}

impl SigningKey {
    fn from_pkcs8(alg: Alg, der: &[u8], created_at: i64, file: PathBuf) -> Result<SigningKey, KeyError> {
        let name = file.display().to_string();
        let invalid = |e: String| KeyError::Invalid(name.clone(), e);
        let (material, public, members) = match alg {
            Alg::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(|e| invalid(e.to_string()))?;
                if kp.public_modulus_len() < 256 {
                    return Err(invalid("RSA keys must be 2048 bits or more".into()));
                }
                let public = kp.public_key();
                let n = b64url(public.modulus().big_endian_without_leading_zero());
                let e = b64url(public.exponent().big_endian_without_leading_zero());
                let public =
                    ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, kp.public_key().as_ref()).map_err(|e| invalid(e.to_string()))?;
                (Material::Rsa(kp), public, vec![("e", e), ("kty", "RSA".to_owned()), ("n", n)])
            }
            Alg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|e| invalid(e.to_string()))?;
                let point = kp.public_key().as_ref();
                // Uncompressed SEC1 point: 0x04 || x || y.
                if point.len() != 65 {
                    return Err(invalid("unexpected P-256 public key encoding".into()));
                }
                let (x, y) = (b64url(&point[1..33]), b64url(&point[33..65]));
                let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|e| invalid(e.to_string()))?;
                (
                    Material::Ec(kp),
                    public,
                    vec![("crv", "P-256".to_owned()), ("kty", "EC".to_owned()), ("x", x), ("y", y)],
                )
            }
        };
        // RFC 7638: the thumbprint hashes the required members in lexicographic order, no spaces.
        let canonical = format!(
            "{{{}}}",
            members
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let kid = b64url(&Sha256::digest(canonical.as_bytes()));
        let mut jwk = serde_json::Map::new();
        for (k, v) in &members {
            jwk.insert((*k).to_owned(), serde_json::Value::String(v.clone()));
        }
        jwk.insert("kid".into(), kid.clone().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), alg.as_str().into());
        Ok(SigningKey {
            kid,
            alg,
            created_at,
            file,
            material,
            jwk: jwk.into(),
            public,
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Material::Ec(kp) => Ok(kp.sign(&rng, msg).map_err(|_| KeyError::Sign)?.as_ref().to_vec()),
        }
    }
}

/// One consistent view of the keys folder.
pub struct KeySet {
    current: HashMap<Alg, Arc<SigningKey>>,
    by_kid: HashMap<String, Arc<SigningKey>>,
    /// The JWKS document, serialised once.
    pub jwks_json: Arc<str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: &'static str,
    pub created_at: i64,
    pub status: &'static str,
    pub file: String,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'a str,
    kid: &'a str,
}

impl KeySet {
    pub fn current(&self, alg: Alg) -> Option<&Arc<SigningKey>> {
        self.current.get(&alg)
    }

    /// Compact JWS with the current key of `alg`.
    pub fn sign<T: Serialize>(&self, alg: Alg, typ: &str, claims: &T) -> Result<String, KeyError> {
        let key = self.current.get(&alg).ok_or(KeyError::Sign)?;
        let header = serde_json::to_vec(&Header {
            alg: alg.as_str(),
            typ,
            kid: &key.kid,
        })
        .map_err(|_| KeyError::Sign)?;
        let body = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        let mut out = b64url(&header);
        out.push('.');
        out.push_str(&b64url(&body));
        let sig = key.sign(out.as_bytes())?;
        out.push('.');
        out.push_str(&b64url(&sig));
        Ok(out)
    }

    /// Verifies a compact JWS signed by one of our published keys and checks its issuer.
    /// Expiry is the caller's business, checked against `Clock`. Returns the header `typ` too.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, issuer: &str) -> Result<(T, Option<String>), VerifyError> {
        let mut parts = token.splitn(3, '.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(VerifyError::Malformed);
        };
        let header: JwsHeader = b64url_decode(h)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(VerifyError::Malformed)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.by_kid.get(k))
            .ok_or(VerifyError::UnknownKey)?;
        // RFC 8725 §3.1: the key decides the algorithm, never the token.
        if header.alg != key.alg.as_str() {
            return Err(VerifyError::Rejected("algorithm does not match the key".into()));
        }
        let sig = b64url_decode(s).ok_or(VerifyError::Malformed)?;
        let signed = &token[..h.len() + 1 + p.len()];
        key.public
            .verify_sig(signed.as_bytes(), &sig)
            .map_err(|_| VerifyError::Rejected("bad signature".into()))?;
        let payload = b64url_decode(p).ok_or(VerifyError::Malformed)?;
        let iss: IssOnly = serde_json::from_slice(&payload).map_err(|e| VerifyError::Rejected(e.to_string()))?;
        if iss.iss != issuer {
            return Err(VerifyError::Rejected("issued by someone else".into()));
        }
        let claims = serde_json::from_slice(&payload).map_err(|e| VerifyError::Rejected(e.to_string()))?;
        Ok((claims, header.typ))
    }
}

/// The claims of a compact JWS, signature unchecked: only for a token already proven ours,
/// such as one whose hash matched a row stored when we signed it.
pub fn payload_of<T: DeserializeOwned>(token: &str) -> Option<T> {
    let p = token.split('.').nth(1)?;
    serde_json::from_slice(&b64url_decode(p)?).ok()
}

#[derive(Deserialize)]
struct JwsHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

#[derive(Deserialize)]
struct IssOnly {
    iss: String,
}

/// The live key set, reloaded when the folder changes (after `clef keys rotate`).
pub struct Keys {
    dir: PathBuf,
    retention: i64,
    set: RwLock<Arc<KeySet>>,
    listing: Mutex<Vec<String>>,
    /// When a token with an unknown `kid` last made us look at the folder early.
    early_reload_at: std::sync::atomic::AtomicI64,
}

struct KeyFile {
    created_at: i64,
    alg: Alg,
    path: PathBuf,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |e| KeyError::Io(path.display().to_string(), e)
}

fn scan(dir: &Path) -> Result<Vec<KeyFile>, KeyError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".pem") else { continue };
        let Some((created, tag)) = stem.split_once('-') else { continue };
        let Ok(created_at) = created.parse::<i64>() else { continue };
        let Some(alg) = Alg::ALL.into_iter().find(|a| a.file_tag() == tag) else {
            continue;
        };
        files.push(KeyFile {
            created_at,
            alg,
            path: entry.path(),
        });
    }
    files.sort_by_key(|f| (f.alg.as_str(), f.created_at));
    Ok(files)
}

/// Key status by position: the newest per alg is current; an older one is retired when its
/// successor was created, and expires `retention` seconds later.
fn status_of(files: &[KeyFile], i: usize, retention: i64, now: i64) -> &'static str {
    let next = files[i + 1..].iter().find(|f| f.alg == files[i].alg);
    match next {
        None => "current",
        Some(n) if n.created_at + retention > now => "retired",
        Some(_) => "expired",
    }
}

pub(crate) fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        // A folder we made ourselves: make sure git never picks a key up from it. Under the
        // lock, as every temp file is, so a starting instance's cleanup cannot take it away.
        let _lock = lock_folder(dir)?;
        write_atomic(dir, ".gitignore", b"*\n!.gitignore\n!README.md\n", false)?;
    }
    Ok(())
}

/// An exclusive lock on the keys folder, released on drop: instances starting together and
/// `clef keys rotate` take turns creating keys, so every one of them reads the same set after.
pub(crate) fn lock_folder(dir: &Path) -> Result<std::fs::File, KeyError> {
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    f.lock().map_err(io_err(&path))?;
    Ok(f)
}

/// Writes `name` in `dir` so that no reader ever sees it half-written: a 0600 temp file,
/// synced, then renamed over (`replace`) or hard-linked to the name, which fails if the name
/// exists (`Ok(false)`). A crash leaves only a `.*.tmp` file, which no scan reads.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8], replace: bool) -> Result<bool, KeyError> {
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::secret::random_token(6)));
    let target = dir.join(name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        if replace {
            std::fs::rename(&tmp, &target).map_err(io_err(&target))?;
            return Ok(true);
        }
        match std::fs::hard_link(&tmp, &target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&target)(e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    // The new name must survive a power cut too.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    result
}

/// Narrows a secret file readable by others to `mode`, saying so.
pub(crate) fn tighten_mode(path: &Path, mode: u32) -> Result<(), KeyError> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let current = meta.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
        tracing::warn!(file = %path.display(), was = format!("{current:o}"), now = format!("{mode:o}"), "secret file was readable by others; permissions narrowed");
    }
    Ok(())
}

/// Deletes temp files a crash left behind. Only under the folder lock, when nobody writes.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn generate(dir: &Path, alg: Alg, now: i64) -> Result<(), KeyError> {
    let der: Vec<u8> = match alg {
        Alg::RS256 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| KeyError::Invalid("RSA".into(), e.to_string()))?;
            let der: Pkcs8V1Der<'static> = kp.as_der().map_err(|e| KeyError::Invalid("RSA".into(), e.to_string()))?;
            der.as_ref().to_vec()
        }
        Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|e| KeyError::Invalid("EC".into(), e.to_string()))?
            .as_ref()
            .to_vec(),
    };
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    // Never overwrite a key: a clash in the same second moves to the next second.
    for created in now.. {
        if write_atomic(dir, &format!("{created}-{}.pem", alg.file_tag()), pem.as_bytes(), false)? {
            return Ok(());
        }
    }
    unreachable!("the loop only ends by returning")
}

fn listing(files: &[KeyFile]) -> Vec<String> {
    files.iter().map(|f| f.path.display().to_string()).collect()
}

/// Builds the key set from one scan of the folder.
fn build(files: &[KeyFile], retention: i64, now: i64) -> Result<KeySet, KeyError> {
    let mut current = HashMap::new();
    let mut by_kid = HashMap::new();
    let mut jwks = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let status = status_of(files, i, retention, now);
        if status == "expired" {
            continue;
        }
        let text = std::fs::read_to_string(&f.path).map_err(io_err(&f.path))?;
        let parsed = pem::parse(text).map_err(|e| KeyError::Invalid(f.path.display().to_string(), e.to_string()))?;
        let key = Arc::new(SigningKey::from_pkcs8(f.alg, parsed.contents(), f.created_at, f.path.clone())?);
        jwks.push(key.jwk.clone());
        if status == "current" {
            current.insert(f.alg, key.clone());
        }
        by_kid.insert(key.kid.clone(), key);
    }
    let jwks_json = serde_json::json!({ "keys": jwks }).to_string();
    Ok(KeySet {
        current,
        by_kid,
        jwks_json: jwks_json.into(),
    })
}

impl Keys {
    /// Loads the folder, generating any missing algorithm's first key.
    pub fn load_or_generate(dir: &Path, retention: i64, now: i64) -> Result<Keys, KeyError> {
        ensure_dir(dir)?;
        {
            // Check and create under the lock; whoever comes second finds the keys made.
            let _lock = lock_folder(dir)?;
            remove_leftovers(dir);
            let files = scan(dir)?;
            for alg in Alg::ALL.into_iter().filter(|a| !files.iter().any(|f| f.alg == *a)) {
                generate(dir, alg, now)?;
                tracing::info!(alg = alg.as_str(), dir = %dir.display(), "generated signing key");
            }
        }
        let files = scan(dir)?;
        Ok(Keys {
            dir: dir.to_owned(),
            retention,
            set: RwLock::new(Arc::new(build(&files, retention, now)?)),
            listing: Mutex::new(listing(&files)),
            early_reload_at: std::sync::atomic::AtomicI64::new(i64::MIN),
        })
    }

    pub fn get(&self) -> Arc<KeySet> {
        match self.set.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the folder when its file list changed or a retired key may have expired.
    pub fn reload(&self, now: i64) -> Result<bool, KeyError> {
        let files = scan(&self.dir)?;
        let names = listing(&files);
        let live = (0..files.len())
            .filter(|&i| status_of(&files, i, self.retention, now) != "expired")
            .count();
        let mut last = self.listing.lock().unwrap_or_else(|p| p.into_inner());
        if *last == names && live == self.get().by_kid.len() {
            return Ok(false);
        }
        let set = Arc::new(build(&files, self.retention, now)?);
        *last = names;
        match self.set.write() {
            Ok(mut g) => *g = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(true)
    }

    /// `KeySet::verify` on the live set. With several instances on one keys folder, another
    /// instance may sign with a key written after our last periodic reload: a token naming a
    /// `kid` we do not know makes one early reload (at most once a second, so forged kids
    /// cannot turn into a folder scan per request) and is checked again.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, issuer: &str, now: i64) -> Result<(T, Option<String>), VerifyError> {
        use std::sync::atomic::Ordering;
        match self.get().verify(token, issuer) {
            Err(VerifyError::UnknownKey) => {
                let last = self.early_reload_at.load(Ordering::Relaxed);
                if last >= now
                    || self
                        .early_reload_at
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_err()
                {
                    return Err(VerifyError::UnknownKey);
                }
                match self.reload(now) {
                    Ok(true) => {
                        tracing::info!("signing keys reloaded early: a token named a key written since the last reload");
                        self.get().verify(token, issuer)
                    }
                    Ok(false) => Err(VerifyError::UnknownKey),
                    Err(e) => {
                        tracing::error!(error = %e, "reloading signing keys failed; keeping the current set");
                        Err(VerifyError::UnknownKey)
                    }
                }
            }
            other => other,
        }
    }

    pub fn list(dir: &Path, retention: i64, now: i64) -> Result<Vec<KeyInfo>, KeyError> {
        let files = scan(dir)?;
        let mut out = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let text = std::fs::read_to_string(&f.path).map_err(io_err(&f.path))?;
            let parsed = pem::parse(text).map_err(|e| KeyError::Invalid(f.path.display().to_string(), e.to_string()))?;
            let key = SigningKey::from_pkcs8(f.alg, parsed.contents(), f.created_at, f.path.clone())?;
            out.push(KeyInfo {
                kid: key.kid,
                alg: f.alg.as_str(),
                created_at: f.created_at,
                status: status_of(&files, i, retention, now),
                file: f.path.display().to_string(),
            });
        }
        Ok(out)
    }

    /// Makes a new key the signer for every algorithm and deletes keys that have expired.
    pub fn rotate(dir: &Path, retention: i64, now: i64) -> Result<Vec<KeyInfo>, KeyError> {
        ensure_dir(dir)?;
        let _lock = lock_folder(dir)?;
        let before = scan(dir)?;
        let newest = before.iter().map(|f| f.created_at).max().unwrap_or(0);
        // A rotation must sort after every existing key, even within the same second.
        let at = now.max(newest + 1);
        for alg in Alg::ALL {
            generate(dir, alg, at)?;
        }
        let files = scan(dir)?;
        for (i, f) in files.iter().enumerate() {
            if status_of(&files, i, retention, now) == "expired" {
                std::fs::remove_file(&f.path).map_err(io_err(&f.path))?;
            }
        }
        Keys::list(dir, retention, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 7 item 15: instances starting together on an empty folder all end with one key
    /// set, so none signs with a `kid` another does not publish; the same for the secret key.
    #[test]
    fn instances_starting_together_agree_on_one_key_set() {
        for trial in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let keys_dir = dir.path().join("keys");
            let config = crate::config::RawConfig {
                keys_dir: Some(keys_dir.display().to_string()),
                ..Default::default()
            }
            .validate()
            .unwrap();
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (keys_dir, barrier, config) = (keys_dir.clone(), barrier.clone(), config.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let keys = Keys::load_or_generate(&keys_dir, 3600, 1_700_000_000).unwrap();
                        let secret = crate::secret_key::SecretKeys::load(&config).unwrap();
                        (keys.get().jwks_json.to_string(), secret.mac(&["probe"]))
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert!(results.windows(2).all(|w| w[0] == w[1]), "trial {trial}: instances disagree");
            let pems = scan(&keys_dir).unwrap();
            assert_eq!(pems.len(), 2, "one key per algorithm, trial {trial}");
            for f in &pems {
                let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
    }

    /// A crash between writing and naming a key leaves a temp file: the next start neither
    /// reads it nor trips on it, and removes it.
    #[test]
    fn leftover_temp_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".1700000000-rs256.pem.abcd.tmp"), "-----BEGIN PRIV").unwrap();
        std::fs::write(dir.path().join(".secret.key.abcd.tmp"), "garbage").unwrap();
        let keys = Keys::load_or_generate(dir.path(), 3600, 1_700_000_000).unwrap();
        assert_eq!(keys.get().by_kid.len(), 2);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Issue 11: instance B signs with a key `keys rotate` wrote after instance A's last
    /// periodic reload; A still verifies B's token (one early reload), and a forged `kid`
    /// right after does not make A scan the folder again within the second.
    #[test]
    fn a_key_another_instance_already_uses_verifies_at_once() {
        #[derive(Serialize, Deserialize)]
        struct C {
            iss: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000;
        let a = Keys::load_or_generate(dir.path(), 3600, t0).unwrap();
        Keys::rotate(dir.path(), 3600, t0 + 5).unwrap();
        let b = Keys::load_or_generate(dir.path(), 3600, t0 + 5).unwrap();
        let claims = C {
            iss: "https://id.example".into(),
        };
        let tokens: Vec<String> = Alg::ALL.iter().map(|&alg| b.get().sign(alg, "JWT", &claims).unwrap()).collect();
        for token in &tokens {
            let stale = a.get().verify::<C>(token, "https://id.example");
            assert!(matches!(stale, Err(VerifyError::UnknownKey)));
        }
        for token in &tokens {
            let (got, _) = a.verify::<C>(token, "https://id.example", t0 + 6).unwrap();
            assert_eq!(got.iss, "https://id.example");
        }
        assert_eq!(a.get().jwks_json, b.get().jwks_json, "A now publishes what B does");
        // A token naming a kid nobody has: refused, and no second early reload this second.
        Keys::rotate(dir.path(), 3600, t0 + 7).unwrap();
        let forged = format!("{}.e30.AA", b64url(br#"{"alg":"ES256","kid":"nope"}"#));
        assert!(matches!(
            a.verify::<C>(&forged, "https://id.example", t0 + 6),
            Err(VerifyError::UnknownKey)
        ));
        assert_ne!(
            a.get().jwks_json,
            Keys::load_or_generate(dir.path(), 3600, t0 + 7).unwrap().get().jwks_json
        );
    }

    #[test]
    fn write_atomic_never_overwrites_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic(dir.path(), "a", b"one", false).unwrap());
        assert!(!write_atomic(dir.path(), "a", b"two", false).unwrap());
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        assert!(write_atomic(dir.path(), "a", b"three", true).unwrap());
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"three");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }
}
