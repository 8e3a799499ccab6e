//! Access-token records (for revocation and userinfo) and rotating refresh tokens.

use super::users::{USER_COLUMNS, UserRow};
use super::{Db, Result, Tx, User, json_list, on_db, on_tx, parse_list};

#[derive(Debug)]
pub struct AccessTokenRow {
    pub token_hash: String,
    pub jti: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub expires_at: i64,
}

#[derive(Debug)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    /// The login session the grant came from: refreshed ID tokens carry its `sid` too.
    pub sid: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RefreshTokenRow {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    /// The login session the grant came from: refreshed ID tokens carry its `sid` too.
    pub sid: Option<String>,
}

/// A live access token joined with its user, for userinfo.
#[derive(Debug)]
pub struct UserinfoRow {
    pub scope: String,
    pub client_id: String,
    pub user: User,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    grant_id: String,
    client_id: String,
    user_id: String,
    scope: String,
    nonce: Option<String>,
    auth_time: i64,
    amr: String,
    acr: String,
    expires_at: i64,
    sid: Option<String>,
}

#[derive(sqlx::FromRow)]
struct InfoRow {
    scope: String,
    client_id: String,
    #[sqlx(flatten)]
    user: UserRow,
}

/// The userinfo join, composed once from the shared user column list.
static USERINFO_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let cols: Vec<String> = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
    format!(
        "select t.scope, t.client_id, {} from access_tokens t join users u on u.user_id = t.user_id \
         where t.token_hash = $1 and t.revoked = 0 and t.expires_at > $2",
        cols.join(", ")
    )
});

/// What taking a refresh token found.
#[derive(Debug)]
pub enum RefreshRedemption {
    Fresh(RefreshTokenRow),
    /// Already rotated away: someone holds a copy. Carries the grant to revoke.
    Reused(String),
    Unknown,
}

impl Tx {
    pub async fn access_token_create(&mut self, t: &AccessTokenRow, now: i64) -> Result<()> {
        on_tx!(self, conn => sqlx::query(
            "insert into access_tokens (token_hash, jti, grant_id, client_id, user_id, scope, revoked, created_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, 0, $7, $8)")
            .bind(&t.token_hash).bind(&t.jti).bind(&t.grant_id).bind(&t.client_id).bind(&t.user_id).bind(&t.scope)
            .bind(now).bind(t.expires_at).execute(conn).await?.rows_affected());
        Ok(())
    }

    pub async fn refresh_token_create(&mut self, t: &NewRefreshToken, now: i64) -> Result<()> {
        on_tx!(self, conn => sqlx::query(
            "insert into refresh_tokens (token_hash, grant_id, client_id, user_id, scope, nonce, auth_time, amr, acr, \
             used, created_at, expires_at, sid) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12)")
            .bind(&t.token_hash).bind(&t.grant_id).bind(&t.client_id).bind(&t.user_id).bind(&t.scope)
            .bind(&t.nonce).bind(t.auth_time).bind(json_list(&t.amr)).bind(&t.acr).bind(now).bind(t.expires_at)
            .bind(&t.sid)
            .execute(conn).await?.rows_affected());
        Ok(())
    }

    /// Records the grant a redeemed code starts, in the transaction that stores its tokens.
    /// `sid`: the login session it came from, whose end revokes it.
    pub async fn grant_open(
        &mut self,
        grant_id: &str,
        client_id: &str,
        user_id: &str,
        sid: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        on_tx!(self, conn => sqlx::query(
            "insert into grants (grant_id, client_id, user_id, revoked, created_at, expires_at, sid) values ($1, $2, $3, 0, $4, $5, $6)")
            .bind(grant_id).bind(client_id).bind(user_id).bind(now).bind(expires_at).bind(sid)
            .execute(conn).await?.rows_affected());
        Ok(())
    }

    /// Locks a live grant for rotation and extends it to the new tokens' lifetime; false when
    /// it was revoked. Revocation takes the same row lock first, so the two never interleave.
    pub async fn grant_lock(&mut self, grant_id: &str, expires_at: i64) -> Result<bool> {
        let n = on_tx!(self, conn => sqlx::query(
            "update grants set expires_at = $1 where grant_id = $2 and revoked = 0")
            .bind(expires_at).bind(grant_id).execute(conn).await?.rows_affected());
        Ok(n == 1)
    }

    /// Takes a refresh token for rotation in one conditional update.
    pub async fn refresh_take(&mut self, token_hash: &str) -> Result<bool> {
        let n = on_tx!(self, conn => sqlx::query("update refresh_tokens set used = 1 where token_hash = $1 and used = 0")
            .bind(token_hash).execute(conn).await?.rows_affected());
        Ok(n == 1)
    }
}

impl Db {
    /// One indexed join: the token must be live and its user must still exist.
    /// A live access token by the hash of the whole token, joined with its user.
    pub async fn userinfo_lookup(&self, token_hash: &str, now: i64) -> Result<Option<UserinfoRow>> {
        if let Db::Sqlite(s) = self
            && let Some(fast) = &s.fast
        {
            return fast.userinfo_lookup(token_hash, now);
        }
        let sql: &str = &USERINFO_SQL;
        let row: Option<InfoRow> = on_db!(self, pool =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(token_hash).bind(now).fetch_optional(pool).await?);
        row.map(|r| {
            Ok(UserinfoRow {
                scope: r.scope,
                client_id: r.client_id,
                user: User::try_from(r.user)?,
            })
        })
        .transpose()
    }

    /// Revokes every token that came from one grant (one code and its refresh chain). The
    /// grant row is locked first, as rotation does: a rotation in flight finishes before this
    /// and its successor goes too, or it starts after and finds the grant revoked.
    pub async fn grant_revoke(&self, grant_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "update grants set revoked = 1 where grant_id = $1",
            "update access_tokens set revoked = 1 where grant_id = $1",
            "delete from refresh_tokens where grant_id = $1",
        ] {
            on_tx!(&mut tx, conn => sqlx::query(sql).bind(grant_id).execute(conn).await?.rows_affected());
        }
        tx.commit().await
    }

    /// Revokes every access and refresh token of a user (after a password reset).
    pub async fn tokens_revoke_for_user(&self, user_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "update grants set revoked = 1 where user_id = $1",
            "update access_tokens set revoked = 1 where user_id = $1",
            "delete from refresh_tokens where user_id = $1",
        ] {
            on_tx!(&mut tx, conn => sqlx::query(sql).bind(user_id).execute(conn).await?.rows_affected());
        }
        tx.commit().await
    }

    /// Looks a refresh token up without taking it ([`Tx::refresh_take`] does, with the
    /// successor's insert). A token already rotated away reports its grant.
    pub async fn refresh_token_lookup(&self, token_hash: &str) -> Result<RefreshRedemption> {
        let row: Option<UsedRefreshRow> = on_db!(self, pool => sqlx::query_as(
            "select used, grant_id, client_id, user_id, scope, nonce, auth_time, amr, acr, expires_at, sid \
             from refresh_tokens where token_hash = $1")
            .bind(token_hash).fetch_optional(pool).await?);
        Ok(match row {
            None => RefreshRedemption::Unknown,
            Some(UsedRefreshRow { used: 0, row: r }) => RefreshRedemption::Fresh(RefreshTokenRow {
                amr: parse_list(&r.amr)?,
                grant_id: r.grant_id,
                client_id: r.client_id,
                user_id: r.user_id,
                scope: r.scope,
                nonce: r.nonce,
                auth_time: r.auth_time,
                acr: r.acr,
                expires_at: r.expires_at,
                sid: r.sid,
            }),
            Some(UsedRefreshRow { row: r, .. }) => RefreshRedemption::Reused(r.grant_id),
        })
    }
}

#[derive(sqlx::FromRow)]
struct UsedRefreshRow {
    used: i64,
    #[sqlx(flatten)]
    row: RefreshRow,
}

/// A refresh token as introspection and revocation see it.
#[derive(Debug, sqlx::FromRow)]
pub struct RefreshInfo {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub used: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Db {
    pub async fn refresh_token_find(&self, token_hash: &str) -> Result<Option<RefreshInfo>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "select grant_id, client_id, user_id, scope, used, created_at, expires_at from refresh_tokens where token_hash = $1")
            .bind(token_hash).fetch_optional(pool).await?))
    }

    /// Revokes one access token of this client; returns whether there was one.
    pub async fn access_token_revoke(&self, token_hash: &str, client_id: &str) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query("update access_tokens set revoked = 1 where token_hash = $1 and client_id = $2")
            .bind(token_hash).bind(client_id).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }
}
