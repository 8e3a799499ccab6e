//! Back-Channel Logout 1.0: which clients took part in a session, and the logout tokens that
//! still have to be delivered.

use super::{Db, Result, Tx, on_db, on_tx};
use crate::secret::random_token;

/// One logout token to deliver: to `client_id`, about the session `sid` of `sub`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingLogout {
    pub notification_id: String,
    pub client_id: String,
    pub sub: String,
    pub sid: String,
    /// Attempts made so far, this one included.
    pub attempts: i64,
}

impl Tx {
    /// Records that `client_id` takes part in the live session `sid` (§2.5: the OP notifies
    /// "each RP with which the End-User has a session"). The session row is locked first, in the
    /// order ending a session takes too, so a redemption racing a logout either lands before it
    /// (and is notified and revoked with the rest) or finds the session gone: false.
    pub async fn session_join(&mut self, sid: &str, client_id: &str, user_id: &str, now: i64) -> Result<bool> {
        let live: Option<(i64,)> = on_tx!(self, conn => sqlx::query_as(
            "update login_sessions set last_seen_at = last_seen_at where sid = $1 and user_id = $2 and expires_at > $3 \
             returning expires_at")
            .bind(sid).bind(user_id).bind(now).fetch_optional(conn).await?);
        let Some((expires_at,)) = live else {
            return Ok(false);
        };
        on_tx!(self, conn => sqlx::query(
            "insert into session_clients (sid, client_id, user_id, created_at, expires_at) values ($1, $2, $3, $4, $5) \
             on conflict (sid, client_id) do update set expires_at = excluded.expires_at")
            .bind(sid).bind(client_id).bind(user_id).bind(now).bind(expires_at)
            .execute(conn).await?.rows_affected());
        Ok(true)
    }

    /// What the end of the sessions `sids` of `user_id` entails, in the transaction that ends
    /// them: a pending logout token for each client with a back-channel URI that took part
    /// (§2.5), and the end of every grant, refresh token and unused code the sessions gave
    /// (§2.7: offline access ends with the session, for every client). Returns how many
    /// notifications were queued.
    pub(crate) async fn sessions_ended(&mut self, user_id: &str, sids: &[String], now: i64) -> Result<u64> {
        let mut queued = 0;
        for sid in sids {
            let clients: Vec<(String,)> = on_tx!(self, conn => sqlx::query_as(
                "select s.client_id from session_clients s join clients c on c.client_id = s.client_id \
                 where s.sid = $1 and c.backchannel_logout_uri is not null order by s.client_id")
                .bind(sid).fetch_all(conn).await?);
            for (client_id,) in clients {
                on_tx!(self, conn => sqlx::query(
                    "insert into backchannel_pending (notification_id, client_id, sub, sid, attempts, next_at, claimed_until, created_at) \
                     values ($1, $2, $3, $4, 0, $5, 0, $5)")
                    .bind(random_token(16)).bind(&client_id).bind(user_id).bind(sid).bind(now)
                    .execute(conn).await?.rows_affected());
                queued += 1;
            }
            // Grants before their tokens: the order refresh rotation locks in (`grant_lock`).
            for sql in [
                "delete from session_clients where sid = $1",
                "update grants set revoked = 1 where sid = $1",
                "update access_tokens set revoked = 1 where grant_id in (select grant_id from grants where sid = $1)",
                "delete from refresh_tokens where sid = $1",
                "delete from auth_codes where sid = $1 and used = 0",
            ] {
                on_tx!(self, conn => sqlx::query(sql).bind(sid).execute(conn).await?.rows_affected());
            }
        }
        Ok(queued)
    }
}

impl Db {
    /// Ends one session (RP-initiated logout) with everything [`Tx::sessions_ended`] does.
    /// Returns whether there was such a session.
    pub async fn session_logout(&self, session_hash: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let gone: Option<(String, Option<String>)> = on_tx!(&mut tx, conn => sqlx::query_as(
            "delete from login_sessions where session_hash = $1 returning user_id, sid")
            .bind(session_hash).fetch_optional(conn).await?);
        let Some((user_id, sid)) = gone else {
            tx.rollback().await?;
            return Ok(false);
        };
        tx.sessions_ended(&user_id, &sid.into_iter().collect::<Vec<_>>(), now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Takes up to `limit` due notifications for this worker until `lease_until`; a row whose
    /// lease ran out (its instance died mid-send) is due again. On PostgreSQL, `skip locked`
    /// lets instances claiming at the same moment take different rows instead of waiting;
    /// SQLite has one writer at a time, so the update alone is atomic.
    pub async fn backchannel_claim(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<PendingLogout>> {
        // A read first: the common answer is "nothing due", which then takes no write lock.
        let due: Option<(String,)> = on_db!(self, pool => sqlx::query_as(
            "select notification_id from backchannel_pending where next_at <= $1 and claimed_until <= $1 limit 1")
            .bind(now).fetch_optional(pool).await?);
        if due.is_none() {
            return Ok(Vec::new());
        }
        const RETURNING: &str = "returning notification_id, client_id, sub, sid, attempts";
        Ok(match self {
            Db::Sqlite(s) => {
                let sql = format!(
                    "update backchannel_pending set claimed_until = $1, attempts = attempts + 1 where notification_id in \
                     (select notification_id from backchannel_pending where next_at <= $2 and claimed_until <= $2 \
                     order by next_at limit $3) {RETURNING}"
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&s.pool)
                    .await?
            }
            Db::Postgres(pool) => {
                let sql = format!(
                    "update backchannel_pending set claimed_until = $1, attempts = attempts + 1 where notification_id in \
                     (select notification_id from backchannel_pending where next_at <= $2 and claimed_until <= $2 \
                     order by next_at limit $3 for update skip locked) {RETURNING}"
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        })
    }

    /// Delivered, or given up: the row goes.
    pub async fn backchannel_done(&self, notification_id: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("delete from backchannel_pending where notification_id = $1")
            .bind(notification_id).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Failed for now: tried again from `next_at`, by whichever instance claims it then.
    pub async fn backchannel_retry(&self, notification_id: &str, next_at: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "update backchannel_pending set claimed_until = 0, next_at = $2 where notification_id = $1")
            .bind(notification_id).bind(next_at).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Interrupted by shutdown: due again at once, and the cut-off attempt does not count.
    pub async fn backchannel_release(&self, notification_id: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "update backchannel_pending set claimed_until = 0, attempts = attempts - 1 where notification_id = $1 and attempts > 0")
            .bind(notification_id).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// How many notifications wait (for `sessions end` to report, and for tests).
    pub async fn backchannel_pending_count(&self) -> Result<i64> {
        let (n,): (i64,) = on_db!(self, pool => sqlx::query_as("select count(*) from backchannel_pending")
            .fetch_one(pool).await?);
        Ok(n)
    }
}
