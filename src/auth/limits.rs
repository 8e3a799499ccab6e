//! The security limits: code sends, code checks, and password-login lockout. The counters live
//! in the database, so the limits hold across instances.

use super::AuthError;
use crate::config::Limits;
use crate::store::Db;

pub const MINUTE: i64 = 60;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit; try again after this many seconds.
    Limited {
        retry_after: i64,
    },
}

/// Counts a hit in every bucket; over `limit` in any of them is refused.
pub async fn hit(db: &Db, buckets: &[String], limit: i64, window: i64, now: i64) -> Result<Verdict, AuthError> {
    let mut retry_after = 0;
    for b in buckets {
        let (hits, start) = db.limit_hit(b, window, now).await?;
        if hits > limit {
            retry_after = retry_after.max(start + window - now).max(1);
        }
    }
    Ok(if retry_after > 0 {
        Verdict::Limited { retry_after }
    } else {
        Verdict::Allowed
    })
}

/// One more code sent to `email` from `ip`: sign-in, sign-up and reset codes share the count.
pub async fn code_send(db: &Db, limits: &Limits, email: &str, ip: &str, now: i64) -> Result<Verdict, AuthError> {
    let buckets = [format!("send:email:{email}"), format!("send:ip:{ip}")];
    hit(db, &buckets, limits.code_sends_per_minute, MINUTE, now).await
}

/// One more code typed for `email` from `ip`.
pub async fn code_check(db: &Db, limits: &Limits, email: &str, ip: &str, now: i64) -> Result<Verdict, AuthError> {
    let buckets = [format!("check:email:{email}"), format!("check:ip:{ip}")];
    hit(db, &buckets, limits.code_checks_per_minute, MINUTE, now).await
}

fn account_bucket(email: &str) -> String {
    format!("pw:email:{email}")
}

fn ip_bucket(ip: &str) -> String {
    format!("pw:ip:{ip}")
}

/// Before any hash: reserves this attempt against the account and checks the IP. Keyed by the
/// email typed, known or not, so a lock says nothing about whether an account exists.
pub async fn password_gate(db: &Db, limits: &Limits, email: &str, ip: &str, now: i64) -> Result<Verdict, AuthError> {
    let (hits, start) = db.limit_hit(&account_bucket(email), limits.lockout, now).await?;
    if hits > limits.login_failures {
        return Ok(Verdict::Limited {
            retry_after: (start + limits.lockout - now).max(1),
        });
    }
    if db.limit_peek(&ip_bucket(ip), limits.lockout, now).await? >= limits.login_failures {
        return Ok(Verdict::Limited {
            retry_after: limits.lockout,
        });
    }
    Ok(Verdict::Allowed)
}

/// After a wrong password. Returns true when this failure locked the account.
pub async fn password_failed(db: &Db, limits: &Limits, email: &str, ip: &str, now: i64) -> Result<bool, AuthError> {
    db.limit_hit(&ip_bucket(ip), limits.lockout, now).await?;
    let hits = db.limit_peek(&account_bucket(email), limits.lockout, now).await?;
    if hits >= limits.login_failures {
        // The lock runs a full window from the failure that set it.
        db.limit_restart(&account_bucket(email), now).await?;
        // Racing failures all see the lock; one counter decides who tells the owner.
        let (told, _) = db.limit_hit(&format!("pw:locked:{email}"), limits.lockout, now).await?;
        return Ok(told == 1);
    }
    Ok(false)
}

/// After a right password, or a password reset: the account's slate is clean.
pub async fn password_cleared(db: &Db, email: &str) -> Result<(), AuthError> {
    Ok(db.limit_clear(&account_bucket(email)).await?)
}
