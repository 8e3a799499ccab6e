//! Server-side login sessions. The browser holds only a random id; we keep its hash.

use super::{Db, Result, json_list, on_db, parse_list};

#[derive(Clone, Debug)]
pub struct LoginSession {
    pub session_hash: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    session_hash: String,
    user_id: String,
    auth_time: i64,
    amr: String,
    acr: String,
    expires_at: i64,
}

impl Db {
    pub async fn session_create(&self, s: &LoginSession, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "insert into login_sessions (session_hash, user_id, auth_time, amr, acr, created_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&s.session_hash).bind(&s.user_id).bind(s.auth_time).bind(json_list(&s.amr))
            .bind(&s.acr).bind(now).bind(s.expires_at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn session_get(&self, session_hash: &str, now: i64) -> Result<Option<LoginSession>> {
        let row: Option<Row> = on_db!(self, pool => sqlx::query_as(
            "select session_hash, user_id, auth_time, amr, acr, expires_at from login_sessions \
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
            })
        })
        .transpose()
    }

    /// Ends every session of a user but `keep` (the one making the change, if any).
    pub async fn sessions_end_for_user(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        Ok(
            on_db!(self, pool => sqlx::query("delete from login_sessions where user_id = $1 and session_hash <> $2")
            .bind(user_id).bind(keep.unwrap_or("")).execute(pool).await?.rows_affected()),
        )
    }

    pub async fn session_delete(&self, session_hash: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("delete from login_sessions where session_hash = $1")
            .bind(session_hash).execute(pool).await?.rows_affected());
        Ok(())
    }
}
