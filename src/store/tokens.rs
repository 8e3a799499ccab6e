//! Access-token records (for revocation and userinfo) and rotating refresh tokens.

use super::users::{USER_COLUMNS, UserRow};
use super::{Db, Result, Tx, User, json_list, on_db, on_tx, parse_list};

#[derive(Debug)]
pub struct AccessTokenRow {
    pub token_hash: String,
    pub jti: String,
    pub grant_id: String,
    pub client_id: String,
    /// `None` for a client_credentials token, which has no user (RFC 9068 §2.2).
    pub user_id: Option<String>,
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
    /// RFC 8707 resources of the whole grant; each access token may name a subset.
    pub resources: Vec<String>,
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
    pub resources: Vec<String>,
    /// reqobj: the grant's `claims` request (OIDC Core §5.5), JSON.
    pub claims: Option<String>,
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
    resources: String,
    claims: Option<String>,
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

const ACCESS_INSERT_SQL: &str = "insert into access_tokens (token_hash, jti, grant_id, client_id, user_id, scope, revoked, \
     created_at, expires_at) values ($1, $2, $3, $4, $5, $6, 0, $7, $8)";

/// What taking a refresh token found.
#[derive(Debug)]
// One per refresh request, moved out at once; a box would be an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum RefreshRedemption {
    Fresh(RefreshTokenRow),
    /// Already rotated away: someone holds a copy. Carries the grant to revoke.
    Reused(String),
    Unknown,
}

impl Tx {
    pub async fn access_token_create(&mut self, t: &AccessTokenRow, now: i64) -> Result<()> {
        on_tx!(self, conn => sqlx::query(ACCESS_INSERT_SQL)
            .bind(&t.token_hash).bind(&t.jti).bind(&t.grant_id).bind(&t.client_id).bind(&t.user_id).bind(&t.scope)
            .bind(now).bind(t.expires_at).execute(conn).await?.rows_affected());
        Ok(())
    }

    pub async fn refresh_token_create(&mut self, t: &NewRefreshToken, now: i64) -> Result<()> {
        on_tx!(self, conn => sqlx::query(
            "insert into refresh_tokens (token_hash, grant_id, client_id, user_id, scope, nonce, auth_time, amr, acr, \
             used, created_at, expires_at, sid, resources) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13)")
            .bind(&t.token_hash).bind(&t.grant_id).bind(&t.client_id).bind(&t.user_id).bind(&t.scope)
            .bind(&t.nonce).bind(t.auth_time).bind(json_list(&t.amr)).bind(&t.acr).bind(now).bind(t.expires_at)
            .bind(&t.sid)
            .bind(json_list(&t.resources))
            .execute(conn).await?.rows_affected());
        Ok(())
    }

    /// Records the grant a redeemed code starts, in the transaction that stores its tokens.
    /// `sid`: the login session it came from, whose end revokes it.
    #[allow(clippy::too_many_arguments)]
    pub async fn grant_open(
        &mut self,
        grant_id: &str,
        client_id: &str,
        user_id: &str,
        sid: Option<&str>,
        claims: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        on_tx!(self, conn => sqlx::query(
            "insert into grants (grant_id, client_id, user_id, revoked, created_at, expires_at, sid, claims) values ($1, $2, $3, 0, $4, $5, $6, $7)")
            .bind(grant_id).bind(client_id).bind(user_id).bind(now).bind(expires_at).bind(sid).bind(claims)
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

    /// Takes a refresh token for rotation in one conditional update, recording its successor
    /// (and, with a refresh grace, the successor's sealed response) in the same statement.
    pub async fn refresh_take(&mut self, token_hash: &str, rotation: &Rotation<'_>) -> Result<bool> {
        let n = on_tx!(self, conn => sqlx::query(
            "update refresh_tokens set used = 1, rotated_at = $2, successor_hash = $3, successor_sealed = $4 \
             where token_hash = $1 and used = 0")
            .bind(token_hash).bind(rotation.at).bind(rotation.successor_hash).bind(rotation.sealed)
            .execute(conn).await?.rows_affected());
        Ok(n == 1)
    }

    /// [`Db::refresh_grace_claim`] inside a rotation's transaction, under its grant lock.
    pub async fn refresh_grace_claim(&mut self, token_hash: &str, client_id: &str, not_before: i64) -> Result<Option<GraceReplay>> {
        let claimed: Option<GraceReplay> = on_tx!(self, conn => sqlx::query_as(GRACE_CLAIM_SQL)
            .bind(token_hash).bind(client_id).bind(not_before).fetch_optional(conn).await?);
        if claimed.is_some() {
            on_tx!(self, conn => sqlx::query(GRACE_WIPE_SQL).bind(token_hash).execute(conn).await?.rows_affected());
        }
        Ok(claimed)
    }
}

/// How a refresh token was rotated away.
#[derive(Debug)]
pub struct Rotation<'a> {
    pub at: i64,
    pub successor_hash: &'a str,
    /// The successor's token response sealed under the server secret key; `None` when the
    /// refresh grace is off.
    pub sealed: Option<&'a str>,
}

/// A rotated token's sealed successor, taken for its one replay within the grace.
#[derive(Debug, sqlx::FromRow)]
pub struct GraceReplay {
    pub successor_sealed: String,
    pub rotated_at: i64,
}

/// One conditional update, so of concurrent retries exactly one gets the successor: the
/// token was rotated (used = 1, not yet replayed: 2), by this client, within the grace, and
/// the successor itself is still unused (once it was rotated in turn, an old copy is theft).
/// `returning` gives the new row, so the sealed value is wiped by the next statement.
const GRACE_CLAIM_SQL: &str = "update refresh_tokens set used = 2 \
     where token_hash = $1 and used = 1 and client_id = $2 and successor_sealed is not null and rotated_at >= $3 \
     and exists (select 1 from refresh_tokens s where s.token_hash = refresh_tokens.successor_hash and s.used = 0) \
     returning successor_sealed, rotated_at";

const GRACE_WIPE_SQL: &str = "update refresh_tokens set successor_sealed = null where token_hash = $1";

/// A live access token without its user, for introspection: a client_credentials token has
/// none, so the userinfo join would not find it.
#[derive(Debug, sqlx::FromRow)]
pub struct LiveAccessToken {
    pub client_id: String,
    pub scope: String,
    pub user_id: Option<String>,
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

    /// reqobj: the `claims` request of the grant an access token came from (OIDC Core §5.5).
    pub async fn access_token_claims(&self, token_hash: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = on_db!(self, pool => sqlx::query_as(
            "select g.claims from access_tokens t join grants g on g.grant_id = t.grant_id where t.token_hash = $1")
            .bind(token_hash).fetch_optional(pool).await?);
        Ok(row.and_then(|(c,)| c))
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
            "select used, grant_id, client_id, user_id, scope, nonce, auth_time, amr, acr, expires_at, sid, resources, \
             (select g.claims from grants g where g.grant_id = refresh_tokens.grant_id) as claims \
             from refresh_tokens where token_hash = $1")
            .bind(token_hash).fetch_optional(pool).await?);
        Ok(match row {
            None => RefreshRedemption::Unknown,
            Some(UsedRefreshRow { used: 0, row: r }) => RefreshRedemption::Fresh(RefreshTokenRow {
                amr: parse_list(&r.amr)?,
                resources: parse_list(&r.resources)?,
                grant_id: r.grant_id,
                client_id: r.client_id,
                user_id: r.user_id,
                scope: r.scope,
                nonce: r.nonce,
                auth_time: r.auth_time,
                acr: r.acr,
                expires_at: r.expires_at,
                sid: r.sid,
                claims: r.claims,
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

    /// RFC 6749 §6 retry after a lost response, within `CLEF_REFRESH_GRACE`: takes the sealed
    /// successor of a rotated token, once ([`GRACE_CLAIM_SQL`]). `not_before` is now − grace.
    pub async fn refresh_grace_claim(&self, token_hash: &str, client_id: &str, not_before: i64) -> Result<Option<GraceReplay>> {
        let claimed: Option<GraceReplay> = on_db!(self, pool => sqlx::query_as(GRACE_CLAIM_SQL)
            .bind(token_hash).bind(client_id).bind(not_before).fetch_optional(pool).await?);
        // Spent now (used = 2), so no one else can take it; a failed wipe is redone by the
        // serve loop's housekeeping once the window is over.
        if claimed.is_some() {
            on_db!(self, pool => sqlx::query(GRACE_WIPE_SQL).bind(token_hash).execute(pool).await?.rows_affected());
        }
        Ok(claimed)
    }

    /// Wipes sealed successors whose grace is over (rotated before `before`), so none stays
    /// in the database longer than the window it is for. Returns how many went.
    pub async fn refresh_grace_wipe(&self, before: i64) -> Result<u64> {
        Ok(on_db!(self, pool => sqlx::query(
            "update refresh_tokens set successor_sealed = null where successor_sealed is not null and rotated_at < $1")
            .bind(before).execute(pool).await?.rows_affected()))
    }

    /// Stores one access token on its own, for a grant with nothing else to write with it
    /// (client_credentials): one statement, no transaction.
    pub async fn access_token_insert(&self, t: &AccessTokenRow, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(ACCESS_INSERT_SQL)
            .bind(&t.token_hash).bind(&t.jti).bind(&t.grant_id).bind(&t.client_id).bind(&t.user_id).bind(&t.scope)
            .bind(now).bind(t.expires_at).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn access_token_live(&self, token_hash: &str, now: i64) -> Result<Option<LiveAccessToken>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "select client_id, scope, user_id from access_tokens where token_hash = $1 and revoked = 0 and expires_at > $2")
            .bind(token_hash).bind(now).fetch_optional(pool).await?))
    }

    /// Revokes one access token of this client; returns whether there was one.
    pub async fn access_token_revoke(&self, token_hash: &str, client_id: &str) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query("update access_tokens set revoked = 1 where token_hash = $1 and client_id = $2")
            .bind(token_hash).bind(client_id).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }
}
