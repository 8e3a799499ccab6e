//! Access-token records (for revocation and userinfo) and rotating refresh tokens.

use super::users::{USER_COLUMNS, UserRow};
use super::{Db, Result, User, json_list, on_db, parse_list};

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

impl Db {
    pub async fn access_token_create(&self, t: &AccessTokenRow, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "insert into access_tokens (token_hash, jti, grant_id, client_id, user_id, scope, revoked, created_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, 0, $7, $8)")
            .bind(&t.token_hash).bind(&t.jti).bind(&t.grant_id).bind(&t.client_id).bind(&t.user_id).bind(&t.scope)
            .bind(now).bind(t.expires_at).execute(pool).await?.rows_affected());
        Ok(())
    }

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

    /// Revokes every token that came from one grant (one code and its refresh chain).
    pub async fn grant_revoke(&self, grant_id: &str) -> Result<()> {
        on_db!(self, pool => {
            sqlx::query("update access_tokens set revoked = 1 where grant_id = $1")
                .bind(grant_id).execute(pool).await?.rows_affected();
            sqlx::query("delete from refresh_tokens where grant_id = $1")
                .bind(grant_id).execute(pool).await?.rows_affected();
        });
        Ok(())
    }

    /// Revokes every access and refresh token of a user (after a password reset).
    pub async fn tokens_revoke_for_user(&self, user_id: &str) -> Result<()> {
        on_db!(self, pool => {
            sqlx::query("update access_tokens set revoked = 1 where user_id = $1").bind(user_id).execute(pool).await?;
            sqlx::query("delete from refresh_tokens where user_id = $1").bind(user_id).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn refresh_token_create(&self, t: &NewRefreshToken, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "insert into refresh_tokens (token_hash, grant_id, client_id, user_id, scope, nonce, auth_time, amr, acr, \
             used, created_at, expires_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11)")
            .bind(&t.token_hash).bind(&t.grant_id).bind(&t.client_id).bind(&t.user_id).bind(&t.scope)
            .bind(&t.nonce).bind(t.auth_time).bind(json_list(&t.amr)).bind(&t.acr).bind(now).bind(t.expires_at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Takes a refresh token for rotation in one conditional update.
    pub async fn refresh_token_redeem(&self, token_hash: &str) -> Result<RefreshRedemption> {
        let taken: Option<RefreshRow> = on_db!(self, pool => sqlx::query_as(
            "update refresh_tokens set used = 1 where token_hash = $1 and used = 0 \
             returning grant_id, client_id, user_id, scope, nonce, auth_time, amr, acr, expires_at")
            .bind(token_hash).fetch_optional(pool).await?);
        if let Some(r) = taken {
            return Ok(RefreshRedemption::Fresh(RefreshTokenRow {
                amr: parse_list(&r.amr)?,
                grant_id: r.grant_id,
                client_id: r.client_id,
                user_id: r.user_id,
                scope: r.scope,
                nonce: r.nonce,
                auth_time: r.auth_time,
                acr: r.acr,
                expires_at: r.expires_at,
            }));
        }
        let used: Option<(String,)> = on_db!(self, pool => sqlx::query_as(
            "select grant_id from refresh_tokens where token_hash = $1")
            .bind(token_hash).fetch_optional(pool).await?);
        Ok(match used {
            Some((grant_id,)) => RefreshRedemption::Reused(grant_id),
            None => RefreshRedemption::Unknown,
        })
    }
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
