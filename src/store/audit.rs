//! The audit side of security events: events without an account (a failed login for an
//! unknown address, a client created), the `clef audit` listing, retention, and the
//! figures the metrics gauges show.

use super::{Db, Result, on_db};
use crate::store::EventKind;

/// One audit record. Every field but `kind` may be absent: an operator command has no IP, a
/// failed login for an unknown address has no user, a key rotation has neither.
#[derive(Clone, Debug, Default)]
pub struct AuditEvent<'a> {
    pub user_id: Option<&'a str>,
    /// The address the event was about, as typed (normalised): what `clef audit --user` finds
    /// even once the account is gone, or when it never existed.
    pub email: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// Short, never secret: a method name, a reason.
    pub detail: Option<&'a str>,
}

/// One row as `clef audit` prints it. `kind` is the stored name, so kinds written by a newer
/// version are printed too.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub at: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// What `clef audit` asks for.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// An email address (events about it, or about its account) or a user id.
    pub user: Option<String>,
    pub since: Option<i64>,
    pub limit: i64,
}

/// Counts for the operator gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserCounts {
    pub total: i64,
    pub verified: i64,
    pub active: i64,
}

fn bounded(s: Option<&str>, max: usize) -> Option<String> {
    s.map(|s| s.chars().filter(|c| !c.is_control()).take(max).collect())
}

impl Db {
    /// Records an event. Audit is best effort for events that change nothing (a failed login):
    /// callers log a failure and go on rather than refuse the request.
    pub async fn audit_record(&self, kind: EventKind, e: &AuditEvent<'_>, now: i64) -> Result<()> {
        let id = super::events::event_id(now);
        let (email, ua, detail) = (bounded(e.email, 320), bounded(e.user_agent, 256), bounded(e.detail, 256));
        on_db!(self, pool => sqlx::query(
            "insert into security_events (event_id, user_id, kind, ip, user_agent, detail, at, email, client_id) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&id).bind(e.user_id).bind(kind.as_str()).bind(e.ip).bind(&ua).bind(&detail).bind(now)
            .bind(&email).bind(e.client_id)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Events, oldest first, newest `limit` of them.
    pub async fn audit_list(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        type Row = (
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let user = q.user.as_deref().map(str::trim);
        let email = user.map(super::normalize_email);
        // The account's own email too, for events recorded with only its id.
        let sql = "select e.at, e.kind, e.user_id, coalesce(e.email, u.email), e.client_id, e.ip, e.user_agent, e.detail \
                   from security_events e left join users u on u.user_id = e.user_id \
                   where ($1 is null or e.email = $2 or u.email = $2 or e.user_id = $1) and e.at >= $3 \
                   order by e.at desc, e.event_id desc limit $4";
        let rows: Vec<Row> = on_db!(self, pool => sqlx::query_as(sql)
            .bind(user).bind(email.as_deref()).bind(q.since.unwrap_or(i64::MIN)).bind(q.limit)
            .fetch_all(pool).await?);
        let mut out: Vec<AuditRow> = rows
            .into_iter()
            .map(|(at, kind, user_id, email, client_id, ip, user_agent, detail)| AuditRow {
                at,
                kind,
                user_id,
                email,
                client_id,
                ip,
                user_agent,
                detail,
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Deletes events recorded before `before`; returns how many went.
    pub async fn audit_purge(&self, before: i64) -> Result<u64> {
        Ok(on_db!(self, pool => sqlx::query("delete from security_events where at < $1")
            .bind(before).execute(pool).await?.rows_affected()))
    }

    /// Users in total, verified, and active since `since` (a login, or a session used).
    pub async fn user_counts(&self, since: i64) -> Result<UserCounts> {
        let (total, verified): (i64, i64) = on_db!(self, pool => sqlx::query_as(
            "select count(*), coalesce(sum(case when email_verified = 1 then 1 else 0 end), 0) from users")
            .fetch_one(pool).await?);
        let (active,): (i64,) = on_db!(self, pool => sqlx::query_as(
            "select count(*) from (select user_id from login_sessions where last_seen_at >= $1 \
             union select user_id from security_events where kind = 'login' and at >= $1 and user_id is not null) a")
            .bind(since).fetch_one(pool).await?);
        Ok(UserCounts { total, verified, active })
    }

    /// Open and idle pooled connections, and the pool's limit.
    pub fn pool_stats(&self) -> (u32, usize, u32) {
        on_db!(self, pool => (pool.size(), pool.num_idle(), pool.options().get_max_connections()))
    }

    /// An online, consistent copy of a SQLite database (`VACUUM INTO`), safe while the server
    /// writes: unlike copying the file, it cannot catch half a transaction or miss the WAL.
    pub async fn sqlite_backup(&self, to: &std::path::Path) -> Result<()> {
        let Db::Sqlite(s) = self else {
            return Err(super::StoreError::Url("backup: PostgreSQL is backed up with pg_dump".to_owned()));
        };
        let path = to
            .to_str()
            .ok_or_else(|| super::StoreError::Url("backup: the path is not UTF-8".to_owned()))?;
        sqlx::query("vacuum into $1").bind(path).execute(&s.pool).await?;
        Ok(())
    }
}

/// `PRAGMA integrity_check` of a SQLite file, opened read-only (nothing is created beside it):
/// "ok", or the problems found.
pub async fn sqlite_file_integrity(path: &std::path::Path) -> Result<String> {
    let path = path.to_owned();
    let shown = path.display().to_string();
    let fail = move |e: String| super::StoreError::Url(format!("{shown}: {e}"));
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut stmt = conn.prepare("pragma integrity_check")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok::<_, rusqlite::Error>(rows.join("; "))
    })
    .await
    .map_err(|e| fail(e.to_string()))
    .and_then(|r| r.map_err(|e| fail(e.to_string())))
}
