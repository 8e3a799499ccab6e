//! Server-side login sessions. The browser holds only a random id; we keep its hash.

use super::{Db, Result, Tx, json_list, on_db, on_tx, parse_list};

#[derive(Clone, Debug)]
pub struct LoginSession {
    pub session_hash: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    /// The `sid` claim (Back-Channel Logout 1.0 §2.1): random, not derived from the cookie.
    /// `None` only for a session an instance without it opened during an upgrade.
    pub sid: Option<String>,
}

/// Where a session was opened, for the owner's list of active sessions.
#[derive(Clone, Debug, Default)]
pub struct SessionMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// One active session as the account page lists it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionInfo {
    pub session_hash: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// `last_seen_at` is written at most this often, so a busy session costs one write a minute.
pub const TOUCH_EVERY: i64 = 60;

#[derive(sqlx::FromRow)]
struct Row {
    session_hash: String,
    user_id: String,
    auth_time: i64,
    amr: String,
    acr: String,
    expires_at: i64,
    sid: Option<String>,
}

/// A user agent is the client's to choose: keep a bounded, printable prefix only.
fn bounded(s: Option<&str>, max: usize) -> Option<String> {
    s.map(|s| s.chars().filter(|c| !c.is_control()).take(max).collect())
}

impl Db {
    pub async fn session_create(&self, s: &LoginSession, meta: &SessionMeta, now: i64) -> Result<()> {
        let (ua, ip) = (bounded(meta.user_agent.as_deref(), 256), bounded(meta.ip.as_deref(), 64));
        // Every session has a sid, even one made without (Back-Channel Logout 1.0 §2.1).
        let sid = s.sid.clone().unwrap_or_else(|| crate::secret::random_token(24));
        on_db!(self, pool => sqlx::query(
            "insert into login_sessions (session_hash, user_id, auth_time, amr, acr, created_at, expires_at, \
             user_agent, ip, last_seen_at, sid) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6, $10)")
            .bind(&s.session_hash).bind(&s.user_id).bind(s.auth_time).bind(json_list(&s.amr))
            .bind(&s.acr).bind(now).bind(s.expires_at).bind(&ua).bind(&ip).bind(&sid)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn session_get(&self, session_hash: &str, now: i64) -> Result<Option<LoginSession>> {
        let row: Option<Row> = on_db!(self, pool => sqlx::query_as(
            "select session_hash, user_id, auth_time, amr, acr, expires_at, sid from login_sessions \
             where session_hash = $1 and expires_at > $2")
            .bind(session_hash).bind(now).fetch_optional(pool).await?);
        row.map(|r| {
            Ok(LoginSession {
                amr: parse_list(&r.amr)?,
                session_hash: r.session_hash,
                user_id: r.user_id,
                auth_time: r.auth_time,
                acr: r.acr,
                expires_at: r.expires_at,
                sid: r.sid,
            })
        })
        .transpose()
    }

    /// Records that the session was used now, unless that was already said within the last
    /// `TOUCH_EVERY` seconds: one conditional update, which matches nothing most of the time.
    pub async fn session_touch(&self, session_hash: &str, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "update login_sessions set last_seen_at = $2 where session_hash = $1 and last_seen_at <= $3")
            .bind(session_hash).bind(now).bind(now - TOUCH_EVERY).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// The user's live sessions, the most recently used first.
    pub async fn sessions_for_user(&self, user_id: &str, now: i64) -> Result<Vec<SessionInfo>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "select session_hash, user_agent, ip, created_at, last_seen_at from login_sessions \
             where user_id = $1 and expires_at > $2 order by last_seen_at desc, created_at desc, session_hash")
            .bind(user_id).bind(now).fetch_all(pool).await?))
    }

    /// Ends every session of a user (`clef sessions end`), notifying and revoking as
    /// [`Tx::sessions_ended`] does. Returns how many sessions ended.
    pub async fn sessions_end_all_for_user(&self, user_id: &str, now: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = tx.sessions_end_for_user(user_id, None, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn session_delete(&self, session_hash: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("delete from login_sessions where session_hash = $1")
            .bind(session_hash).execute(pool).await?.rows_affected());
        Ok(())
    }
}

impl Tx {
    /// Ends every session of a user but `keep` (the one making the change, if any), with the
    /// change that causes it; their clients are notified ([`Tx::sessions_ended`]).
    pub async fn sessions_end_for_user(&mut self, user_id: &str, keep: Option<&str>, now: i64) -> Result<u64> {
        let sids: Vec<(Option<String>,)> = on_tx!(self, conn => sqlx::query_as(
            "delete from login_sessions where user_id = $1 and session_hash <> $2 returning sid")
            .bind(user_id).bind(keep.unwrap_or("")).fetch_all(conn).await?);
        let ended = sids.len() as u64;
        let sids: Vec<String> = sids.into_iter().filter_map(|(s,)| s).collect();
        self.sessions_ended(user_id, &sids, now).await?;
        Ok(ended)
    }

    /// A re-authentication passed: the session's authentication time becomes `now`, only if
    /// the session is still live and is `user_id`'s (false otherwise, and nothing changes).
    /// This is the `auth_time` of ID tokens issued on it later: the user did authenticate
    /// again (OIDC Core §2, "Time when the End-User authentication occurred"); `amr`/`acr`
    /// stay those of the login, which the re-authentication does not weaken or replace.
    pub async fn session_reauthenticated(&mut self, session_hash: &str, user_id: &str, now: i64) -> Result<bool> {
        let n = on_tx!(self, conn => sqlx::query(
            "update login_sessions set auth_time = $3 where session_hash = $1 and user_id = $2 and expires_at > $3")
            .bind(session_hash).bind(user_id).bind(now).execute(conn).await?.rows_affected());
        Ok(n == 1)
    }

    /// Ends one session, only if it belongs to `user_id`: returns false otherwise. Its
    /// clients are notified ([`Tx::sessions_ended`]).
    pub async fn session_end_for_user(&mut self, user_id: &str, session_hash: &str, now: i64) -> Result<bool> {
        let gone: Option<(Option<String>,)> = on_tx!(self, conn => sqlx::query_as(
            "delete from login_sessions where user_id = $1 and session_hash = $2 returning sid")
            .bind(user_id).bind(session_hash).fetch_optional(conn).await?);
        let Some((sid,)) = gone else {
            return Ok(false);
        };
        self.sessions_ended(user_id, &sid.into_iter().collect::<Vec<_>>(), now).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_bounded_and_printable() {
        let long = format!("a\u{7}\n{}", "x".repeat(400));
        let b = bounded(Some(&long), 256).unwrap();
        assert_eq!(b.chars().count(), 256);
        assert!(!b.contains('\n') && !b.contains('\u{7}'));
        assert_eq!(bounded(None, 256), None);
    }
}
