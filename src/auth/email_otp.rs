//! Six-digit codes by email (and the magic link that carries the same code's authority).
//! Codes are stored as HMAC-SHA256 under the server key, which lives outside the database
//! (`secret_key`), so a stolen database gives none away.

use rand::Rng;

use super::AuthError;
use crate::secret::{random_token, sha256_b64};
use crate::secret_key::SecretKeys;
use crate::store::{Db, NewOtp, OtpCheck};

pub const LOGIN: &str = "login";
pub const VERIFY_EMAIL: &str = "verify_email";
pub const RESET_PASSWORD: &str = "reset_password";
pub const SECOND_FACTOR: &str = "second_factor";
/// A new address for an account, proven before the account moves to it (`http::account`).
pub const CHANGE_EMAIL: &str = "change_email";
/// A signed-in user confirming it is them before a sensitive action (`Purpose::Reauth`).
pub const REAUTH: &str = "reauth";

/// The 5th wrong try kills the code.
pub const MAX_ATTEMPTS: i64 = 5;

pub struct Issued {
    pub code: String,
    /// High-entropy token for the magic link; only its hash is stored.
    pub link_token: String,
}

fn code_parts<'a>(email: &'a str, purpose: &'a str, code: &'a str) -> [&'a str; 4] {
    ["otp", email, purpose, code]
}

/// Where an issued code may be used and what it continues.
pub struct Context<'a> {
    pub user_id: Option<&'a str>,
    pub browser_hash: &'a str,
    pub request_id: Option<&'a str>,
}

/// Issues a fresh code, retiring the previous one for this email and purpose.
pub async fn issue(
    db: &Db,
    key: &SecretKeys,
    email: &str,
    purpose: &'static str,
    ctx: Context<'_>,
    ttl: i64,
    now: i64,
) -> Result<Issued, AuthError> {
    issue_for(db, key, email, purpose, ctx, None, ttl, now).await
}

/// As [`issue`], for a login attempt: its magic link finds the attempt through the code.
#[allow(clippy::too_many_arguments)]
pub async fn issue_for(
    db: &Db,
    key: &SecretKeys,
    email: &str,
    purpose: &'static str,
    ctx: Context<'_>,
    attempt_hash: Option<&str>,
    ttl: i64,
    now: i64,
) -> Result<Issued, AuthError> {
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    let link_token = random_token(32);
    db.otp_put(
        &NewOtp {
            otp_id: random_token(12),
            email: email.to_owned(),
            purpose,
            user_id: ctx.user_id.map(str::to_owned),
            code_hash: key.mac(&code_parts(email, purpose, &code)),
            link_hash: sha256_b64(&link_token),
            browser_hash: ctx.browser_hash.to_owned(),
            request_id: ctx.request_id.map(str::to_owned),
            attempt_hash: attempt_hash.map(str::to_owned),
            expires_at: now + ttl,
        },
        now,
    )
    .await?;
    Ok(Issued { code, link_token })
}

/// Checks a typed code. Spaces are ignored; anything else that is not the code counts as a try.
/// A code issued just before a secret rotation still verifies under the previous key.
pub async fn check(db: &Db, key: &SecretKeys, email: &str, purpose: &str, typed: &str, now: i64) -> Result<OtpCheck, AuthError> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    let hashes = key.macs(&code_parts(email, purpose, &typed));
    Ok(db.otp_check(email, purpose, &hashes, MAX_ATTEMPTS, now).await?)
}

pub async fn take_link(db: &Db, token: &str, browser_hash: &str, now: i64) -> Result<Option<crate::store::SpentOtp>, AuthError> {
    Ok(db.otp_take_link(&sha256_b64(token), browser_hash, MAX_ATTEMPTS, now).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_hash_binds_email_and_purpose() {
        use crate::secret::hmac_b64;
        let h = |k: &[u8], e, p, c| hmac_b64(k, &code_parts(e, p, c));
        let k = b"key";
        let a = h(k, "a@x.test", LOGIN, "123456");
        assert_ne!(a, h(k, "b@x.test", LOGIN, "123456"));
        assert_ne!(a, h(k, "a@x.test", RESET_PASSWORD, "123456"));
        assert_ne!(a, h(b"other", "a@x.test", LOGIN, "123456"));
    }
}
