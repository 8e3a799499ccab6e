//! Login attempts: one row per login in progress, bound to a browser, updated race-safely.

use super::{Db, Result, Tx, on_db, on_tx};

/// One `login_attempts` row. The structured columns stay JSON text here; `auth::attempt`
/// owns their shape, so the store needs no knowledge of methods or policies.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRecord {
    pub attempt_hash: String,
    pub browser_hash: String,
    pub purpose: String,
    pub request_id: Option<String>,
    pub requirement: String,
    pub claimed_email: Option<String>,
    pub user_id: Option<String>,
    pub factors: String,
    pub pending: Option<String>,
    pub failures: i64,
    pub version: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

const COLUMNS: &str = "attempt_hash, browser_hash, purpose, request_id, requirement, claimed_email, user_id, \
                       factors, pending, failures, version, created_at, expires_at";

impl Db {
    pub async fn attempt_create(&self, a: &AttemptRecord) -> Result<()> {
        let sql = format!("insert into login_attempts ({COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)");
        on_db!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&a.attempt_hash).bind(&a.browser_hash).bind(&a.purpose).bind(&a.request_id).bind(&a.requirement)
            .bind(&a.claimed_email).bind(&a.user_id).bind(&a.factors).bind(&a.pending).bind(a.failures)
            .bind(a.version).bind(a.created_at).bind(a.expires_at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// The live attempt, only for the browser that started it: an id copied into another
    /// browser finds nothing, exactly like an id that never existed.
    pub async fn attempt_get(&self, attempt_hash: &str, browser_hash: &str, now: i64) -> Result<Option<AttemptRecord>> {
        let sql = format!("select {COLUMNS} from login_attempts where attempt_hash = $1 and browser_hash = $2 and expires_at > $3");
        Ok(on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(attempt_hash).bind(browser_hash).bind(now).fetch_optional(pool).await?))
    }

    /// Writes the new state if nobody wrote since `a.version` was read; the row's version goes
    /// up by one. `false`: another post won (or the attempt expired), and nothing was written.
    pub async fn attempt_update(&self, a: &AttemptRecord, now: i64) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query(
            "update login_attempts set claimed_email = $3, user_id = $4, factors = $5, pending = $6, failures = $7, \
             purpose = $8, version = version + 1 where attempt_hash = $1 and version = $2 and expires_at > $9")
            .bind(&a.attempt_hash).bind(a.version).bind(&a.claimed_email).bind(&a.user_id).bind(&a.factors)
            .bind(&a.pending).bind(a.failures).bind(&a.purpose).bind(now)
            .execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Ends an attempt as it finishes: of two posts finishing the same version, one deletes
    /// the row and goes on to the session; the other finds nothing.
    pub async fn attempt_finish(&self, attempt_hash: &str, version: i64) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query("delete from login_attempts where attempt_hash = $1 and version = $2")
            .bind(attempt_hash).bind(version).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Counts one wrong try, atomically: parallel guesses each count, whatever the version.
    /// Returns the count after this one (0 when the attempt is gone).
    pub async fn attempt_fail(&self, attempt_hash: &str) -> Result<i64> {
        let n: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "update login_attempts set failures = failures + 1 where attempt_hash = $1 returning failures")
            .bind(attempt_hash).fetch_optional(pool).await?);
        Ok(n.map_or(0, |(n,)| n))
    }

    /// Ends an attempt whatever its version (it is over: expired, too many tries, a dead end).
    pub async fn attempt_drop(&self, attempt_hash: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("delete from login_attempts where attempt_hash = $1")
            .bind(attempt_hash).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Gives an attempt a new id (the magic link knew only the old one's hash).
    pub async fn attempt_rekey(&self, old_hash: &str, new_hash: &str) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query("update login_attempts set attempt_hash = $2 where attempt_hash = $1")
            .bind(old_hash).bind(new_hash).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }
}

impl Tx {
    /// As [`Db::attempt_finish`], inside the transaction that applies what the attempt proved
    /// (a re-authentication's new session time).
    pub async fn attempt_finish(&mut self, attempt_hash: &str, version: i64) -> Result<bool> {
        let n = on_tx!(self, conn => sqlx::query("delete from login_attempts where attempt_hash = $1 and version = $2")
            .bind(attempt_hash).bind(version).execute(conn).await?.rows_affected());
        Ok(n == 1)
    }
}
