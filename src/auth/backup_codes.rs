//! Backup codes: eight single-use codes for a lost authenticator, shown once and stored only
//! as HMACs under the server secret key ring.
//!
//! A code is 10 characters from a 31-letter alphabet without look-alikes (no 0/o, 1/i/l), in
//! two groups of five: about 49.5 bits, too many to guess within the second-factor lock, so
//! a keyed hash (not argon2) is right. The key lives outside the database, so a stolen copy
//! of it cannot be searched offline either.

use rand::Rng;

use crate::auth::AuthError;
use crate::auth::totp::{self, Verdict};
use crate::secret_key::SecretKeys;
use crate::store::Db;

pub const COUNT: usize = 8;
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const GROUP: usize = 5;
/// A code as typed may carry spaces and a dash; anything longer is not a code.
pub const MAX_INPUT: usize = 32;

/// A fresh set of codes, as shown to the user (`abcde-fghjk`).
pub fn generate() -> Vec<String> {
    let mut rng = rand::rng();
    (0..COUNT)
        .map(|_| {
            let chars: String = (0..2 * GROUP)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect();
            format!("{}-{}", &chars[..GROUP], &chars[GROUP..])
        })
        .collect()
}

/// The code as stored: separators and case dropped. `None` when it cannot be a code (which
/// still counts as a wrong try in `check_login`).
pub fn normalize(typed: &str) -> Option<String> {
    if typed.len() > MAX_INPUT {
        return None;
    }
    let s: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == 2 * GROUP && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

/// The stored form of a normalized code, under every key of the ring (signing key first): a
/// code made before `clef keys rotate-secret` still matches under `secret.previous`.
pub fn hashes(keys: &SecretKeys, user_id: &str, normalized: &str) -> Vec<String> {
    keys.macs(&["backup-code", user_id, normalized])
}

/// The hash to store for a fresh code.
pub fn hash_for_storage(keys: &SecretKeys, user_id: &str, shown: &str) -> String {
    let n = normalize(shown).unwrap_or_default();
    keys.mac(&["backup-code", user_id, &n])
}

/// A backup code as the second factor of a login: the same lock and the same contract as
/// [`totp::check_login`]. The code is spent by one conditional delete, so two requests with
/// the same code cannot both pass.
pub async fn check_login(db: &Db, keys: &SecretKeys, user_id: &str, typed: &str, now: i64) -> Result<Verdict, AuthError> {
    totp::guarded(db, user_id, now, async {
        let Some(n) = normalize(typed) else {
            return Ok(false);
        };
        let spent = db.backup_code_take(user_id, &hashes(keys, user_id, &n)).await?;
        if spent {
            db.event_record(user_id, crate::store::EventKind::BackupCodeUsed, &Default::default(), now)
                .await?;
        }
        Ok(spent)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_readable_and_distinct() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        for c in &codes {
            assert_eq!(c.len(), 11, "{c}");
            assert_eq!(c.as_bytes()[5], b'-');
            assert!(!c.contains(['0', 'o', '1', 'i', 'l']), "{c}");
            assert_eq!(normalize(c).unwrap().len(), 10);
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        assert_ne!(generate(), codes);
    }

    #[test]
    fn typing_variants_normalize_to_one_code() {
        for typed in ["abcde-fghjk", "ABCDE FGHJK", " abcdefghjk ", "abc de-fgh jk"] {
            assert_eq!(normalize(typed).as_deref(), Some("abcdefghjk"), "{typed}");
        }
        for bad in ["", "abcde-fghj", "abcde-fghjkm", "abcde-fghj0", "abcde_fghjk", &"a".repeat(40)] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_are_keyed_per_user() {
        let config = crate::config::RawConfig {
            secret_key: Some(crate::secret_key::new_value()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let keys = SecretKeys::load(&config).unwrap();
        let h = hash_for_storage(&keys, "u1", "ABCDE-fghjk");
        assert_eq!(hashes(&keys, "u1", "abcdefghjk"), vec![h.clone()]);
        assert_ne!(hashes(&keys, "u2", "abcdefghjk"), vec![h]);
    }
}
