//! Passwords: argon2id with OWASP parameters, always on a blocking thread, with a bound on
//! how many hashes run at once so a login flood cannot starve the server of memory.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use super::{AuthError, Outcome};
use crate::store::Db;

/// A real argon2id hash of a random throwaway password. Unknown emails are checked against it
/// so they cost exactly what a wrong password costs.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9AUGx0ipOnlMDpYwJKBG/S70ubJGFKrBkP8cCUJ6zvQ";

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(max_concurrent: usize) -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// argon2id, m=19 MiB, t=2, p=1 (the crate's defaults are OWASP's minimum).
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let _permit = self.permits.acquire().await.map_err(|e| AuthError::Hash(e.to_string()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| AuthError::Hash(e.to_string()))
        })
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))?
    }

    /// Constant work whether or not `stored` exists; argon2 compares in constant time.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, AuthError> {
        let _permit = self.permits.acquire().await.map_err(|e| AuthError::Hash(e.to_string()))?;
        let real = stored.is_some();
        let hash = stored.unwrap_or(DUMMY_HASH).to_owned();
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok())
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        Ok(real && ok)
    }
}

/// What clef accepts as a new password: 8 to 1,024 characters that zxcvbn does not find
/// guessable (score 2 or more, with the email counted as known to an attacker). Returns the
/// catalogue key of the problem.
pub fn policy(password: &str, email: &str) -> Result<(), &'static str> {
    let len = password.chars().count();
    if len < 8 {
        return Err("signup.password_too_short");
    }
    if password.len() > 1024 {
        return Err("signup.password_too_long");
    }
    let local = email.split('@').next().unwrap_or("");
    if (zxcvbn::zxcvbn(password, &[email, local]).score() as u8) < 2 {
        return Err("signup.password_too_weak");
    }
    Ok(())
}

/// Email + password. No hint of whether the email exists: the same work and the same answer.
pub async fn verify(db: &Db, hasher: &Hasher, email: &str, password: &str) -> Result<Outcome, AuthError> {
    let user = db.user_by_email(email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let ok = hasher.verify(password, stored).await?;
    match (ok, user) {
        (true, Some(u)) if u.password_pending => Ok(Outcome::Unverified { user_id: u.user_id }),
        (true, Some(u)) => Ok(Outcome::Done { user_id: u.user_id }),
        _ => Ok(Outcome::Retry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert_eq!(policy("short", "a@b.c"), Err("signup.password_too_short"));
        assert_eq!(policy("password", "a@b.c"), Err("signup.password_too_weak"));
        assert_eq!(policy("12345678", "a@b.c"), Err("signup.password_too_weak"));
        assert_eq!(policy("anastasia1", "anastasia1@b.c"), Err("signup.password_too_weak"));
        policy("correct horse battery", "a@b.c").unwrap();
    }

    #[test]
    fn dummy_hash_is_a_valid_argon2id_hash() {
        let parsed = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(Argon2::default().verify_password(b"wrong", DUMMY_HASH).is_err());
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Hasher::new(1);
        let hash = h.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!h.verify("wrong", Some(&hash)).await.unwrap());
        assert!(!h.verify("anything", None).await.unwrap());
    }
}
