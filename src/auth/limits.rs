//! The security limits: code sends, code checks with per-account escalation, and password-login
//! lockout. The counters live in the database, so the limits hold across instances; bucket keys
//! are hashed, so a long email cannot grow a row.

use std::time::Duration;

use super::AuthError;
use crate::config::Limits;
use crate::secret::sha256_b64;
use crate::store::{Db, LimitRow};

pub const MINUTE: i64 = 60;

/// A reservation not renewed for this long belonged to an instance that died mid-check.
const STALE: i64 = 60;

/// How long a password login waits for the checks of the same account (or address) already in
/// flight, when those could lock it, before it gives up with "busy".
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Wrong codes per account (the tries of one code) before the back-off starts.
const FREE_CODE_FAILURES: i64 = 5;
const BACKOFF_BASE: i64 = 60;
const BACKOFF_MAX: i64 = 3600;
/// Past the hard limit, one try a day: the owner of a passwordless account is not shut out
/// for good, and a guesser gets nowhere.
const LOCKED_CODE_DELAY: i64 = 86_400;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit; try again after this many seconds.
    Limited {
        retry_after: i64,
    },
}

/// A fixed-length bucket key: a readable kind and a hash of whatever the request chose.
fn bucket(kind: &str, key: &str) -> String {
    format!("{kind}:{}", sha256_b64(key))
}

/// Counts a hit in every bucket; over its limit in any of them is refused.
async fn hit(db: &Db, buckets: &[(String, i64)], window: i64, now: i64) -> Result<Verdict, AuthError> {
    let mut retry_after = 0;
    for (b, limit) in buckets {
        let (hits, start) = db.limit_hit(b, window, now).await?;
        if hits > *limit {
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
/// The address gets a larger budget than the email: a whole office may share it.
pub async fn code_send(db: &Db, limits: &Limits, email: &str, ip: &str, now: i64) -> Result<Verdict, AuthError> {
    let buckets = [
        (bucket("send:email", email), limits.code_sends_per_minute),
        (bucket("send:ip", ip), limits.ip_code_sends_per_minute),
    ];
    hit(db, &buckets, MINUTE, now).await
}

/// What a code check may do.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeGate {
    /// Go ahead; this is the account's `failures`-th consecutive try if it turns out wrong.
    Allowed { failures: i64 },
    /// Too many tries a minute, or the back-off after consecutive wrong codes.
    Wait { retry_after: i64 },
    /// The hard limit of consecutive wrong codes is reached.
    Locked { retry_after: i64 },
}

/// Seconds to wait after the `n`-th consecutive wrong code before the next try (NIST SP
/// 800-63B §5.2.2: rate limiting, at most `cap` consecutive failures, then lock).
pub fn code_backoff(n: i64, cap: i64) -> i64 {
    if n >= cap {
        LOCKED_CODE_DELAY
    } else if n < FREE_CODE_FAILURES {
        0
    } else {
        let doublings = (n - FREE_CODE_FAILURES).min(10) as u32;
        (BACKOFF_BASE << doublings).min(BACKOFF_MAX)
    }
}

fn code_failures_bucket(email: &str) -> String {
    bucket("codefail", email)
}

/// One more code typed for `email` from `ip`. Counts toward the per-minute limits, then takes
/// a place in the account's consecutive count before the code is looked at, with a
/// compare-and-swap, so parallel guesses cannot slip past the back-off or the hard limit.
/// Keyed by the email typed, known or not, so the answers say nothing about accounts.
pub async fn code_check(db: &Db, limits: &Limits, email: &str, ip: &str, now: i64) -> Result<CodeGate, AuthError> {
    let buckets = [
        (bucket("check:email", email), limits.code_checks_per_minute),
        (bucket("check:ip", ip), limits.ip_code_checks_per_minute),
    ];
    if let Verdict::Limited { retry_after } = hit(db, &buckets, MINUTE, now).await? {
        return Ok(CodeGate::Wait { retry_after });
    }
    let key = code_failures_bucket(email);
    for _ in 0..16 {
        let row = db.limit_get(&key).await?;
        let (n, last) = row.map(|r| (r.hits, r.window_start)).unwrap_or((0, now));
        let wait = last + code_backoff(n, limits.code_failures) - now;
        if n >= FREE_CODE_FAILURES && wait > 0 {
            return Ok(if n >= limits.code_failures {
                CodeGate::Locked { retry_after: wait }
            } else {
                CodeGate::Wait { retry_after: wait }
            });
        }
        if db.limit_swap(&key, row.map(|r| r.hits), n + 1, now).await? {
            return Ok(CodeGate::Allowed { failures: n + 1 });
        }
    }
    // Lost every race: many checks of one account at once; let the others finish.
    Ok(CodeGate::Wait { retry_after: 1 })
}

/// A right code (or a right password): the consecutive count starts again.
pub async fn code_succeeded(db: &Db, email: &str) -> Result<(), AuthError> {
    Ok(db.limit_clear(&code_failures_bucket(email)).await?)
}

/// Whether a wrong code that came `failures`-th in a row is the one that locks: the owner is
/// told then, once (the compare-and-swap gives that number to one request only).
pub fn code_lock_reached(limits: &Limits, failures: i64) -> bool {
    failures == limits.code_failures
}

fn account_bucket(email: &str) -> String {
    bucket("pw:email", email)
}

fn ip_bucket(ip: &str) -> String {
    bucket("pw:ip", ip)
}

/// Seconds left on a lock, if `row` is one: `cap` failures in a window still running.
pub fn lock_left(row: Option<LimitRow>, cap: i64, window: i64, now: i64) -> Option<i64> {
    let r = row?;
    (r.hits >= cap && r.window_start > now - window).then(|| (r.window_start + window - now).max(1))
}

/// The answer of the password gate.
pub enum Gate {
    Open(Reservation),
    /// Too many failures for this account: its owner is told by mail when it locks.
    AccountLocked {
        retry_after: i64,
    },
    /// Too many failures from this client address, whatever the account.
    AddressLimited {
        retry_after: i64,
    },
    /// Checks in flight could lock the account and did not finish in time.
    Busy,
}

/// Places taken in the address and account buckets for one password check. Settle it with
/// `succeeded` or `failed`; dropped unsettled (the client went away mid-check, which tells it
/// nothing), it gives the places back.
pub struct Reservation {
    db: Db,
    ip: Option<String>,
    account: Option<String>,
    email: String,
}

impl Reservation {
    /// A right password: the account's failures are forgotten, the address's stay (one good
    /// account must not clean an address that guesses at others).
    pub async fn succeeded(mut self) -> Result<(), AuthError> {
        if let Some(b) = self.ip.take() {
            self.db.limit_release(&b, false).await?;
        }
        if let Some(b) = self.account.take() {
            self.db.limit_release(&b, true).await?;
        }
        code_succeeded(&self.db, &self.email).await
    }

    /// A wrong password. Returns true when this failure locked the account.
    pub async fn failed(mut self, limits: &Limits, now: i64) -> Result<bool, AuthError> {
        if let Some(b) = self.ip.take() {
            self.db
                .limit_release_failed(&b, limits.lockout, limits.ip_login_failures, now)
                .await?;
        }
        match self.account.take() {
            // Reservations keep the count exact, so one failure only can be the one that locks.
            Some(b) => Ok(self.db.limit_release_failed(&b, limits.lockout, limits.login_failures, now).await? == limits.login_failures),
            None => Ok(false),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (ip, account) = (self.ip.take(), self.account.take());
        if ip.is_none() && account.is_none() {
            return;
        }
        let db = self.db.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for b in ip.iter().chain(account.iter()) {
                    if let Err(e) = db.limit_release(b, false).await {
                        tracing::warn!(error = %e, "giving back a login reservation failed; it lapses by itself");
                    }
                }
            });
        }
    }
}

/// Before any hash. Takes a place in the address's and the account's failure budgets: a place
/// is free while failures plus checks in flight are under the limit, so parallel wrong
/// passwords can never get more than the limit evaluated. When the places are taken but the
/// failures are not yet at the limit, this waits for the checks in flight: if they succeed
/// they give their places back, so a right password is never refused because other logins
/// are being checked. Keyed by the email typed, known or not, so a lock says nothing about
/// whether an account exists.
pub async fn password_gate(db: &Db, limits: &Limits, email: &str, ip: &str, now: i64) -> Result<Gate, AuthError> {
    let mut r = Reservation {
        db: db.clone(),
        ip: None,
        account: None,
        email: email.to_owned(),
    };
    let (ipb, accb) = (ip_bucket(ip), account_bucket(email));
    let ip_cap = limits.ip_login_failures;
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        // One conditional write per try; between tries, waiting is by reads only, so many
        // waiters on one account do not queue writes on its row.
        let (bucket, cap) = if r.ip.is_none() {
            (&ipb, ip_cap)
        } else {
            (&accb, limits.login_failures)
        };
        if db.limit_reserve(bucket, limits.lockout, cap, STALE, now).await? {
            if r.ip.is_none() {
                r.ip = Some(ipb.clone());
                continue;
            }
            r.account = Some(accb);
            return Ok(Gate::Open(r));
        }
        loop {
            let row = db.limit_get(bucket).await?;
            if let Some(retry_after) = lock_left(row, cap, limits.lockout, now) {
                return Ok(if r.ip.is_none() {
                    Gate::AddressLimited { retry_after }
                } else {
                    Gate::AccountLocked { retry_after }
                });
            }
            if has_room(row, cap, limits.lockout, now) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Gate::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Whether a reservation would be taken now (the same rule as `Db::limit_reserve`).
fn has_room(row: Option<LimitRow>, cap: i64, window: i64, now: i64) -> bool {
    let Some(r) = row else { return true };
    let hits = if r.window_start <= now - window { 0 } else { r.hits };
    let inflight = if r.inflight_at <= now - STALE { 0 } else { r.inflight };
    hits + inflight < cap
}

/// Second-factor tries (TOTP or backup code) a minute, per account and per (account, client
/// address): seed 001. Under the five-wrong lock, so one minute never spends the whole lock.
pub const SECOND_FACTOR_TRIES_PER_MINUTE: i64 = 4;

/// One more second-factor try for `user_id` from `ip`, counted before the code is looked at.
/// Keyed by the account the first factor proved, so a guesser on many addresses still gets
/// four a minute in all.
pub async fn second_factor(db: &Db, user_id: &str, ip: &str, now: i64) -> Result<Verdict, AuthError> {
    let buckets = [
        (bucket("2fa:user", user_id), SECOND_FACTOR_TRIES_PER_MINUTE),
        (bucket("2fa:user-ip", &format!("{user_id}\0{ip}")), SECOND_FACTOR_TRIES_PER_MINUTE),
    ];
    hit(db, &buckets, MINUTE, now).await
}

/// After a password reset: the account's slate is clean.
pub async fn password_cleared(db: &Db, email: &str) -> Result<(), AuthError> {
    db.limit_zero(&account_bucket(email)).await?;
    code_succeeded(db, email).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_have_a_fixed_length() {
        let short = bucket("send:email", "a@b.c");
        let long = bucket("send:email", &"x".repeat(100_000));
        assert_eq!(short.len(), long.len());
        assert!(short.starts_with("send:email:"));
        assert_ne!(bucket("pw:ip", "1.2.3.4"), bucket("pw:ip", "1.2.3.5"));
    }

    #[test]
    fn code_backoff_grows_then_locks() {
        let cap = 100;
        assert_eq!((0..5).map(|n| code_backoff(n, cap)).collect::<Vec<_>>(), [0; 5]);
        assert_eq!(code_backoff(5, cap), 60);
        assert_eq!(code_backoff(6, cap), 120);
        assert_eq!(code_backoff(10, cap), 1920);
        assert_eq!(code_backoff(11, cap), 3600);
        assert_eq!(code_backoff(99, cap), 3600);
        assert_eq!(code_backoff(100, cap), 86_400);
        assert_eq!(code_backoff(i64::MAX, cap), 86_400);
        // Reaching the cap takes days, not minutes.
        let total: i64 = (0..cap).map(|n| code_backoff(n, cap)).sum();
        assert!(total > 3 * 86_400, "{total}");
    }

    #[test]
    fn locks_run_a_full_window() {
        let row = |hits, window_start| {
            Some(LimitRow {
                hits,
                window_start,
                inflight: 0,
                inflight_at: 0,
            })
        };
        assert_eq!(lock_left(None, 5, 900, 1000), None);
        assert_eq!(lock_left(row(4, 1000), 5, 900, 1000), None);
        assert_eq!(lock_left(row(5, 1000), 5, 900, 1000), Some(900));
        assert_eq!(lock_left(row(5, 1000), 5, 900, 1899), Some(1));
        assert_eq!(lock_left(row(5, 1000), 5, 900, 1900), None);
    }

    #[test]
    fn room_counts_failures_and_live_reservations() {
        let row = |hits, inflight, inflight_at| {
            Some(LimitRow {
                hits,
                window_start: 1000,
                inflight,
                inflight_at,
            })
        };
        assert!(has_room(None, 5, 900, 1000));
        assert!(has_room(row(2, 2, 1000), 5, 900, 1000));
        assert!(!has_room(row(2, 3, 1000), 5, 900, 1000), "in-flight checks could reach the cap");
        assert!(
            has_room(row(2, 3, 1000), 5, 900, 1000 + STALE),
            "reservations of a dead instance lapse"
        );
        assert!(has_room(row(5, 0, 1000), 5, 900, 1900), "a lapsed window forgets its failures");
    }
}
