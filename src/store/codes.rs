//! Pending authorization requests and issued authorization codes.

use super::{Db, Result, Tx, json_list, on_db, on_tx, parse_list};

#[derive(Clone, Debug)]
pub struct AuthRequestRow {
    pub request_id: String,
    pub client_id: String,
    /// The validated request, serialised by `oauth::authorize`.
    pub params: String,
    pub created_at: i64,
}

#[derive(Debug)]
pub struct NewCode {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    /// The login session the code came from (Back-Channel Logout 1.0 §2.1 `sid`).
    pub sid: Option<String>,
    /// RFC 8707 resources the grant covers.
    pub resources: Vec<String>,
    /// reqobj: the `claims` request (OIDC Core §5.5) as JSON.
    pub claims: Option<String>,
}

#[derive(Clone, Debug)]
pub struct IssuedCode {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    /// The login session the code came from (Back-Channel Logout 1.0 §2.1 `sid`).
    pub sid: Option<String>,
    pub resources: Vec<String>,
    pub claims: Option<String>,
}

/// What trying to take a code found.
#[derive(Debug)]
pub enum Redemption {
    /// First redemption: the code is now spent.
    Fresh(Box<IssuedCode>),
    /// The code was spent before; it is now marked replayed. Carries its grant id.
    Replayed(String),
    Unknown,
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    grant_id: String,
    client_id: String,
    user_id: String,
    redirect_uri: String,
    scope: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    auth_time: i64,
    amr: String,
    acr: String,
    expires_at: i64,
    sid: Option<String>,
    resources: String,
    claims: Option<String>,
}

const CODE_USED: i64 = 1;
const CODE_REPLAYED: i64 = 2;

impl Db {
    pub async fn auth_request_put(&self, r: &AuthRequestRow, expires_at: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "insert into auth_requests (request_id, client_id, params, created_at, expires_at) values ($1, $2, $3, $4, $5)")
            .bind(&r.request_id).bind(&r.client_id).bind(&r.params).bind(r.created_at).bind(expires_at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn auth_request_get(&self, request_id: &str, now: i64) -> Result<Option<AuthRequestRow>> {
        let row: Option<(String, String, String, i64)> = on_db!(self, pool => sqlx::query_as(
            "select request_id, client_id, params, created_at from auth_requests where request_id = $1 and expires_at > $2")
            .bind(request_id).bind(now).fetch_optional(pool).await?);
        Ok(row.map(|(request_id, client_id, params, created_at)| AuthRequestRow {
            request_id,
            client_id,
            params,
            created_at,
        }))
    }

    /// Returns whether the request was still there, so one answer wins a double submit.
    pub async fn auth_request_delete(&self, request_id: &str) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query("delete from auth_requests where request_id = $1")
            .bind(request_id).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn code_create(&self, c: &NewCode, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "insert into auth_codes (code_hash, grant_id, client_id, user_id, redirect_uri, scope, nonce, \
             code_challenge, auth_time, amr, acr, used, created_at, expires_at, sid, resources, claims) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13, $14, $15, $16)")
            .bind(&c.code_hash).bind(&c.grant_id).bind(&c.client_id).bind(&c.user_id)
            .bind(&c.redirect_uri).bind(&c.scope).bind(&c.nonce).bind(&c.code_challenge)
            .bind(c.auth_time).bind(json_list(&c.amr)).bind(&c.acr).bind(now).bind(c.expires_at).bind(&c.sid)
            .bind(json_list(&c.resources)).bind(&c.claims)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Looks a code up without taking it: the tokens are signed first, then the code is taken
    /// and the tokens stored in one transaction ([`Tx::code_take`]). A code already spent is
    /// marked replayed here.
    pub async fn code_find(&self, code_hash: &str) -> Result<Redemption> {
        let found: Option<(i64, CodeRow)> = on_db!(self, pool => sqlx::query_as::<_, UsedCodeRow>(
            "select used, grant_id, client_id, user_id, redirect_uri, scope, nonce, code_challenge, \
             auth_time, amr, acr, expires_at, sid, resources, claims from auth_codes where code_hash = $1")
            .bind(code_hash).fetch_optional(pool).await?)
        .map(|r| (r.used, r.code));
        match found {
            None => Ok(Redemption::Unknown),
            Some((0, r)) => Ok(Redemption::Fresh(Box::new(IssuedCode {
                amr: parse_list(&r.amr)?,
                resources: parse_list(&r.resources)?,
                grant_id: r.grant_id,
                client_id: r.client_id,
                user_id: r.user_id,
                redirect_uri: r.redirect_uri,
                scope: r.scope,
                nonce: r.nonce,
                code_challenge: r.code_challenge,
                auth_time: r.auth_time,
                acr: r.acr,
                expires_at: r.expires_at,
                sid: r.sid,
                claims: r.claims,
            }))),
            Some(_) => Ok(match self.code_mark_replayed(code_hash).await? {
                Some(grant_id) => Redemption::Replayed(grant_id),
                None => Redemption::Unknown,
            }),
        }
    }

    /// Marks a spent code as replayed; returns its grant, for the caller to revoke.
    pub async fn code_mark_replayed(&self, code_hash: &str) -> Result<Option<String>> {
        let replayed: Option<(String,)> = on_db!(self, pool => sqlx::query_as(
            "update auth_codes set used = $1 where code_hash = $2 returning grant_id")
            .bind(CODE_REPLAYED).bind(code_hash).fetch_optional(pool).await?);
        Ok(replayed.map(|(g,)| g))
    }

    /// Spends a code that failed its checks, so it cannot be tried again.
    pub async fn code_burn(&self, code_hash: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("update auth_codes set used = $1 where code_hash = $2 and used = 0")
            .bind(CODE_USED).bind(code_hash).execute(pool).await?.rows_affected());
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct UsedCodeRow {
    used: i64,
    #[sqlx(flatten)]
    code: CodeRow,
}

impl Tx {
    /// Takes a code in one conditional update, so of two concurrent redemptions exactly one
    /// sees it fresh; the other waits on the row until this transaction ends.
    pub async fn code_take(&mut self, code_hash: &str) -> Result<bool> {
        let n = on_tx!(self, conn => sqlx::query("update auth_codes set used = $1 where code_hash = $2 and used = 0")
            .bind(CODE_USED).bind(code_hash).execute(conn).await?.rows_affected());
        Ok(n == 1)
    }
}

impl Db {
    pub async fn auth_request_set_params(&self, request_id: &str, params: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("update auth_requests set params = $1 where request_id = $2")
            .bind(params).bind(request_id).execute(pool).await?.rows_affected());
        Ok(())
    }
}
