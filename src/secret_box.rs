//! Secrets the server must read back (TOTP seeds), sealed with AES-256-GCM under a key derived
//! from the server secret key ring: the key lives outside the database, so a stolen database
//! or backup opens none of them, and every instance sharing the ring opens all of them.
//!
//! A sealed value is `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id names
//! the ring key that sealed it, so a value sealed before `clef keys rotate-secret` still
//! opens with `secret.previous`; the associated data binds it to its row (the user id), so a
//! ciphertext copied to another row does not open.

use aws_lc_rs::{aead, hkdf};

use crate::secret::{b64url, b64url_decode};
use crate::secret_key::SecretKeys;

const VERSION: &str = "v1";
/// HKDF (RFC 5869) salt and info labels: a purpose of its own, so the AES key is unrelated to
/// the HMAC uses of the same ring key (CSRF tokens, code hashes).
const SALT: &[u8] = b"clef secret box";
const INFO_KEY: &[u8] = b"clef secret box v1 aes-256-gcm key";
const INFO_ID: &[u8] = b"clef secret box v1 key id";
/// AES-GCM nonce: 96 bits (NIST SP 800-38D §8.2.2, random construction). A random nonce per
/// seal is safe far beyond the number of values this key will ever seal (2^32).
const NONCE_LEN: usize = aead::NONCE_LEN;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoxError {
    #[error("sealed value is malformed")]
    Malformed,
    /// Tampered with, bound to another row, or sealed by a key no longer in the ring.
    #[error("no server secret key opens this sealed value")]
    NoKey,
    #[error("sealing failed")]
    Crypto,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), BoxError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(ikm);
    let infos = [info];
    prk.expand(&infos, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| BoxError::Crypto)
}

struct Derived {
    id: String,
    key: aead::LessSafeKey,
}

fn derived(ikm: &[u8]) -> Result<Derived, BoxError> {
    let mut key = [0u8; 32];
    derive(ikm, INFO_KEY, &mut key)?;
    let mut id = [0u8; 6];
    derive(ikm, INFO_ID, &mut id)?;
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &key).map_err(|_| BoxError::Crypto)?;
    Ok(Derived {
        id: b64url(&id),
        key: aead::LessSafeKey::new(unbound),
    })
}

/// Seals `plain` under the signing key of the ring, bound to `aad`.
pub fn seal(keys: &SecretKeys, aad: &[u8], plain: &[u8]) -> Result<String, BoxError> {
    let ring = keys.ring_for_derivation();
    let d = derived(ring.first().ok_or(BoxError::NoKey)?)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| BoxError::Crypto)?;
    let mut buf = plain.to_vec();
    d.key
        .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut buf)
        .map_err(|_| BoxError::Crypto)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(format!("{VERSION}.{}.{}", d.id, b64url(&out)))
}

/// Opens a value sealed by [`seal`] under any key of the ring (signing key first), with the
/// same `aad`.
pub fn open(keys: &SecretKeys, aad: &[u8], sealed: &str) -> Result<Vec<u8>, BoxError> {
    let (id, bytes) = parse(sealed)?;
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| BoxError::Malformed)?;
    for ikm in keys.ring_for_derivation().iter() {
        let d = derived(ikm)?;
        if d.id != id {
            continue;
        }
        let mut buf = body.to_vec();
        if let Ok(plain) = d
            .key
            .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut buf)
        {
            return Ok(plain.to_vec());
        }
    }
    Err(BoxError::NoKey)
}

/// Whether `sealed` was sealed by the ring's signing key; a value sealed by an older key is
/// sealed again when next opened, so it survives the next rotation too.
pub fn is_current(keys: &SecretKeys, sealed: &str) -> bool {
    let ring = keys.ring_for_derivation();
    match (parse(sealed), ring.first().map(|k| derived(k))) {
        (Ok((id, _)), Some(Ok(d))) => d.id == id,
        _ => false,
    }
}

fn parse(sealed: &str) -> Result<(&str, Vec<u8>), BoxError> {
    let mut parts = sealed.split('.');
    let (Some(VERSION), Some(id), Some(body), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(BoxError::Malformed);
    };
    let bytes = b64url_decode(body).ok_or(BoxError::Malformed)?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(BoxError::Malformed);
    }
    Ok((id, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(values: &[&str]) -> SecretKeys {
        let config = crate::config::RawConfig {
            secret_key: Some(values.join(",")),
            ..Default::default()
        }
        .validate()
        .unwrap();
        SecretKeys::load(&config).unwrap()
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let k = crate::secret_key::new_value();
        let keys = ring(&[&k]);
        let a = seal(&keys, b"user-1", b"twenty bytes of seed").unwrap();
        let b = seal(&keys, b"user-1", b"twenty bytes of seed").unwrap();
        assert_ne!(a, b, "a random nonce per seal");
        assert!(!a.contains("seed"));
        assert_eq!(open(&keys, b"user-1", &a).unwrap(), b"twenty bytes of seed");
        assert!(is_current(&keys, &a));
    }

    #[test]
    fn tampering_and_another_row_fail() {
        let keys = ring(&[&crate::secret_key::new_value()]);
        let sealed = seal(&keys, b"user-1", b"seed").unwrap();
        assert_eq!(open(&keys, b"user-2", &sealed), Err(BoxError::NoKey), "bound to its row");
        let (head, body) = sealed.rsplit_once('.').unwrap();
        let mut bytes = b64url_decode(body).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let tampered = format!("{head}.{}", b64url(&bytes));
            assert_eq!(open(&keys, b"user-1", &tampered), Err(BoxError::NoKey), "byte {i}");
            bytes[i] ^= 1;
        }
        for bad in ["", "v1.x", "v2.abc.def", "v1.id.!!", "v1.id.AAAA", &format!("{sealed}.x")] {
            assert_eq!(open(&keys, b"user-1", bad), Err(BoxError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_old_values_open_until_the_key_leaves_the_ring() {
        let (old, new) = (crate::secret_key::new_value(), crate::secret_key::new_value());
        let before = ring(&[&old]);
        let sealed = seal(&before, b"u", b"seed").unwrap();
        let after = ring(&[&new, &old]);
        assert_eq!(open(&after, b"u", &sealed).unwrap(), b"seed", "the previous key still opens");
        assert!(!is_current(&after, &sealed), "so it is sealed again when next used");
        let resealed = seal(&after, b"u", b"seed").unwrap();
        assert!(is_current(&after, &resealed));
        let later = ring(&[&new]);
        assert_eq!(open(&later, b"u", &sealed), Err(BoxError::NoKey));
        assert_eq!(open(&later, b"u", &resealed).unwrap(), b"seed");
        assert_eq!(open(&ring(&[&old]), b"u", &resealed), Err(BoxError::NoKey));
    }
}
