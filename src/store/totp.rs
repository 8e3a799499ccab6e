//! The second factor's rows: the TOTP credential (sealed secret, pending or on, last accepted
//! step), backup-code hashes, and the consecutive-failure lock shared by both.

use super::{Db, Result, StoreError, Tx, on_db, on_tx};

/// A user's TOTP credential as stored; the secret stays sealed (crate::secret_box).
#[derive(Clone, Debug)]
pub struct TotpCredential {
    pub sealed_secret: String,
    /// False while enrolment waits for the first valid code.
    pub enabled: bool,
    /// The last time step accepted (RFC 6238 §5.2: a code is accepted once).
    pub last_step: Option<i64>,
    pub enabled_at: Option<i64>,
}

/// The outcome of taking one second-factor try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryTaken {
    /// The try is counted: `failures` tries since the last success, this one included.
    Taken { failures: i64 },
    /// The second factor is locked until then; nothing was counted.
    Locked { until: i64 },
}

/// What removing a user's second factor removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub totp: bool,
    pub backup_codes: u64,
    pub lock: bool,
}

type CredRow = (String, i64, Option<i64>, Option<i64>);

impl Db {
    pub async fn totp_get(&self, user_id: &str) -> Result<Option<TotpCredential>> {
        let row: Option<CredRow> = on_db!(self, pool => sqlx::query_as(
            "select sealed_secret, enabled, last_step, enabled_at from totp_credentials where user_id = $1")
            .bind(user_id).fetch_optional(pool).await?);
        Ok(row.map(|(sealed_secret, enabled, last_step, enabled_at)| TotpCredential {
            sealed_secret,
            enabled: enabled != 0,
            last_step,
            enabled_at,
        }))
    }

    /// Stores a fresh pending secret, replacing an older pending one. Refused while TOTP is
    /// on: a second enrolment must not silently replace the working one.
    pub async fn totp_begin(&self, user_id: &str, sealed_secret: &str, now: i64) -> Result<()> {
        let n = on_db!(self, pool => sqlx::query(
            "insert into totp_credentials (user_id, sealed_secret, enabled, last_step, created_at) values ($1, $2, 0, null, $3) \
             on conflict (user_id) do update set sealed_secret = excluded.sealed_secret, last_step = null, \
             created_at = excluded.created_at where totp_credentials.enabled = 0")
            .bind(user_id).bind(sealed_secret).bind(now).execute(pool).await?.rows_affected());
        if n == 0 {
            return Err(StoreError::Conflict("two-factor login is already on"));
        }
        Ok(())
    }

    /// Accepts `step` for a user with TOTP on, unless that step or a later one was accepted
    /// already. One conditional update: of two requests with the same code, one wins.
    pub async fn totp_accept_step(&self, user_id: &str, step: i64) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query(
            "update totp_credentials set last_step = $2 where user_id = $1 and enabled = 1 \
             and (last_step is null or last_step < $2)")
            .bind(user_id).bind(step).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Replaces the sealed secret by the same secret sealed under the current key, if the row
    /// still holds `old` (a concurrent change wins).
    pub async fn totp_reseal(&self, user_id: &str, old: &str, new: &str) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query(
            "update totp_credentials set sealed_secret = $3 where user_id = $1 and sealed_secret = $2")
            .bind(user_id).bind(old).bind(new).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Every stored secret with its user, for sealing again after a key rotation.
    pub async fn totp_sealed_all(&self) -> Result<Vec<(String, String)>> {
        Ok(
            on_db!(self, pool => sqlx::query_as("select user_id, sealed_secret from totp_credentials order by user_id")
            .fetch_all(pool).await?),
        )
    }

    pub async fn backup_codes_count(&self, user_id: &str) -> Result<i64> {
        let (n,): (i64,) = on_db!(self, pool => sqlx::query_as("select count(*) from backup_codes where user_id = $1")
            .bind(user_id).fetch_one(pool).await?);
        Ok(n)
    }

    /// Spends the code whose hash is one of `hashes` (one per key of the ring). Each delete is
    /// conditional, so a code spent by a parallel request is not spent twice.
    pub async fn backup_code_take(&self, user_id: &str, hashes: &[String]) -> Result<bool> {
        let mut spent = false;
        for h in hashes {
            let n = on_db!(self, pool => sqlx::query("delete from backup_codes where user_id = $1 and code_hash = $2")
                .bind(user_id).bind(h).execute(pool).await?.rows_affected());
            spent |= n == 1;
        }
        Ok(spent)
    }

    /// Takes one second-factor try: counted before the code is checked, in one conditional
    /// upsert, so parallel guesses can never take more than `max` tries between two
    /// successes. The try that reaches `max` sets the lock for `lock_secs`; a later success
    /// (that very try, if its code was right) lifts it. An expired lock starts a new count.
    pub async fn second_factor_try(&self, user_id: &str, max: i64, lock_secs: i64, now: i64) -> Result<TryTaken> {
        let row: Option<(i64, i64)> = on_db!(self, pool => sqlx::query_as(
            "insert into second_factor_locks (user_id, failures, locked_until) \
             values ($1, 1, case when 1 >= $3 then $2 + $4 else 0 end) \
             on conflict (user_id) do update set \
             failures = case when second_factor_locks.locked_until > 0 then 1 else second_factor_locks.failures + 1 end, \
             locked_until = case when (case when second_factor_locks.locked_until > 0 then 1 \
             else second_factor_locks.failures + 1 end) >= $3 then $2 + $4 else 0 end \
             where second_factor_locks.locked_until <= $2 \
             returning failures, locked_until")
            .bind(user_id).bind(now).bind(max).bind(lock_secs).fetch_optional(pool).await?);
        if let Some((failures, _)) = row {
            return Ok(TryTaken::Taken { failures });
        }
        Ok(TryTaken::Locked {
            until: self.second_factor_locked_until(user_id, now).await?.unwrap_or(now),
        })
    }

    /// A success: the count starts again and any lock is lifted.
    pub async fn second_factor_clear(&self, user_id: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("delete from second_factor_locks where user_id = $1")
            .bind(user_id).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// When the second factor's lock ends, if it is locked now.
    pub async fn second_factor_locked_until(&self, user_id: &str, now: i64) -> Result<Option<i64>> {
        let row: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "select locked_until from second_factor_locks where user_id = $1 and locked_until > $2")
            .bind(user_id).bind(now).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }
}

impl Tx {
    /// Turns the pending secret on with its first accepted step, if the row still holds
    /// `sealed_secret` (another tab may have started a new enrolment since).
    pub async fn totp_activate(&mut self, user_id: &str, sealed_secret: &str, step: i64, now: i64) -> Result<bool> {
        let n = on_tx!(self, conn => sqlx::query(
            "update totp_credentials set enabled = 1, last_step = $3, enabled_at = $4 \
             where user_id = $1 and sealed_secret = $2 and enabled = 0")
            .bind(user_id).bind(sealed_secret).bind(step).bind(now).execute(conn).await?.rows_affected());
        Ok(n == 1)
    }

    /// Every backup code of the user replaced by `hashes`.
    pub async fn backup_codes_replace(&mut self, user_id: &str, hashes: &[String], now: i64) -> Result<()> {
        on_tx!(self, conn => sqlx::query("delete from backup_codes where user_id = $1")
            .bind(user_id).execute(conn).await?.rows_affected());
        for h in hashes {
            on_tx!(self, conn => sqlx::query("insert into backup_codes (user_id, code_hash, created_at) values ($1, $2, $3)")
                .bind(user_id).bind(h).bind(now).execute(conn).await?.rows_affected());
        }
        Ok(())
    }

    /// Whether TOTP is on, read inside the transaction.
    pub async fn totp_enabled(&mut self, user_id: &str) -> Result<bool> {
        let row: Option<(i64,)> = on_tx!(self, conn => sqlx::query_as(
            "select enabled from totp_credentials where user_id = $1")
            .bind(user_id).fetch_optional(conn).await?);
        Ok(row.is_some_and(|r| r.0 != 0))
    }

    /// Removes the TOTP credential, the backup codes and the lock.
    pub async fn second_factor_remove(&mut self, user_id: &str) -> Result<Removed> {
        let totp = on_tx!(self, conn => sqlx::query("delete from totp_credentials where user_id = $1")
            .bind(user_id).execute(conn).await?.rows_affected());
        let backup_codes = on_tx!(self, conn => sqlx::query("delete from backup_codes where user_id = $1")
            .bind(user_id).execute(conn).await?.rows_affected());
        let lock = on_tx!(self, conn => sqlx::query("delete from second_factor_locks where user_id = $1")
            .bind(user_id).execute(conn).await?.rows_affected());
        Ok(Removed {
            totp: totp > 0,
            backup_codes,
            lock: lock > 0,
        })
    }
}
