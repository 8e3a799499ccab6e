//! Email one-time codes: one live code per email and purpose, checked in one atomic update.

use super::{Db, Result, on_db};

#[derive(Debug)]
pub struct NewOtp {
    pub otp_id: String,
    pub email: String,
    pub purpose: &'static str,
    pub user_id: Option<String>,
    pub code_hash: String,
    pub link_hash: String,
    pub browser_hash: String,
    pub request_id: Option<String>,
    /// The login attempt the code belongs to.
    pub attempt_hash: Option<String>,
    pub expires_at: i64,
}

/// What a spent code was for.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SpentOtp {
    pub email: String,
    pub purpose: String,
    pub user_id: Option<String>,
    pub request_id: Option<String>,
    pub browser_hash: String,
    pub attempt_hash: Option<String>,
}

#[derive(Debug)]
pub enum OtpCheck {
    Accepted(SpentOtp),
    /// Wrong code; this many tries are left before the code dies.
    Wrong {
        remaining: i64,
    },
    /// No live code: never issued, expired, used, or out of tries.
    Dead,
}

#[derive(sqlx::FromRow)]
struct CheckRow {
    used: i64,
    attempts: i64,
    email: String,
    purpose: String,
    user_id: Option<String>,
    request_id: Option<String>,
    browser_hash: String,
    attempt_hash: Option<String>,
}

impl Db {
    /// Stores a code, retiring any live one for the same email and purpose.
    pub async fn otp_put(&self, o: &NewOtp, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "insert into otp_codes (otp_id, email, purpose, user_id, code_hash, link_hash, browser_hash, request_id, \
             attempts, used, created_at, expires_at, attempt_hash) values ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10, $11) \
             on conflict (email, purpose) do update set otp_id = excluded.otp_id, user_id = excluded.user_id, \
             code_hash = excluded.code_hash, link_hash = excluded.link_hash, browser_hash = excluded.browser_hash, \
             request_id = excluded.request_id, attempts = 0, used = 0, created_at = excluded.created_at, \
             expires_at = excluded.expires_at, attempt_hash = excluded.attempt_hash")
            .bind(&o.otp_id).bind(&o.email).bind(o.purpose).bind(&o.user_id).bind(&o.code_hash).bind(&o.link_hash)
            .bind(&o.browser_hash).bind(&o.request_id).bind(now).bind(o.expires_at).bind(&o.attempt_hash)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// One conditional update both judges and counts the try, so parallel guesses can never
    /// exceed `max_attempts` (the lockout race of GHSA-7h8m-vrxx-vr4m cannot happen).
    /// `code_hashes`: the typed code under the signing key, then under the previous one (the
    /// code may predate a secret rotation); later keys are not tried, codes live minutes.
    pub async fn otp_check(&self, email: &str, purpose: &str, code_hashes: &[String], max_attempts: i64, now: i64) -> Result<OtpCheck> {
        let current = code_hashes.first().map(String::as_str).unwrap_or("");
        let previous = code_hashes.get(1).map(String::as_str).unwrap_or(current);
        let row: Option<CheckRow> = on_db!(self, pool => sqlx::query_as(
            "update otp_codes set used = case when code_hash in ($3, $6) then 1 else 0 end, \
             attempts = attempts + case when code_hash in ($3, $6) then 0 else 1 end \
             where email = $1 and purpose = $2 and used = 0 and attempts < $4 and expires_at > $5 \
             returning used, attempts, email, purpose, user_id, request_id, browser_hash, attempt_hash")
            .bind(email).bind(purpose).bind(current).bind(max_attempts).bind(now).bind(previous)
            .fetch_optional(pool).await?);
        Ok(match row {
            None => OtpCheck::Dead,
            Some(r) if r.used == 1 => OtpCheck::Accepted(SpentOtp {
                email: r.email,
                purpose: r.purpose,
                user_id: r.user_id,
                request_id: r.request_id,
                browser_hash: r.browser_hash,
                attempt_hash: r.attempt_hash,
            }),
            Some(r) => OtpCheck::Wrong {
                remaining: max_attempts - r.attempts,
            },
        })
    }

    /// Spends a code through its magic link (same single use, same attempt limit).
    /// The browser check is part of the update, so a link opened elsewhere is not spent.
    pub async fn otp_take_link(&self, link_hash: &str, browser_hash: &str, max_attempts: i64, now: i64) -> Result<Option<SpentOtp>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "update otp_codes set used = 1 where link_hash = $1 and browser_hash = $2 and used = 0 and attempts < $3 \
             and expires_at > $4 returning email, purpose, user_id, request_id, browser_hash, attempt_hash")
            .bind(link_hash).bind(browser_hash).bind(max_attempts).bind(now).fetch_optional(pool).await?))
    }

    /// The attempt a live magic link continues, read without spending it: the link's page
    /// then spends it through the attempt, which checks the browser.
    pub async fn otp_link_attempt(&self, link_hash: &str, now: i64) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = on_db!(self, pool => sqlx::query_as(
            "select attempt_hash from otp_codes where link_hash = $1 and used = 0 and expires_at > $2")
            .bind(link_hash).bind(now).fetch_optional(pool).await?);
        Ok(row.and_then(|(h,)| h))
    }
}
