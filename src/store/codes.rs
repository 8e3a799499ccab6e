//! Pending authorization requests and issued authorization codes.

use super::{Db, Result, json_list, on_db, parse_list};

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
             code_challenge, auth_time, amr, acr, used, created_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13)")
            .bind(&c.code_hash).bind(&c.grant_id).bind(&c.client_id).bind(&c.user_id)
            .bind(&c.redirect_uri).bind(&c.scope).bind(&c.nonce).bind(&c.code_challenge)
            .bind(c.auth_time).bind(json_list(&c.amr)).bind(&c.acr).bind(now).bind(c.expires_at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Takes a code in one conditional update, so of two concurrent redemptions exactly one
    /// sees it fresh.
    pub async fn code_redeem(&self, code_hash: &str) -> Result<Redemption> {
        let taken: Option<CodeRow> = on_db!(self, pool => sqlx::query_as(
            "update auth_codes set used = $1 where code_hash = $2 and used = 0 \
             returning grant_id, client_id, user_id, redirect_uri, scope, nonce, code_challenge, \
             auth_time, amr, acr, expires_at")
            .bind(CODE_USED).bind(code_hash).fetch_optional(pool).await?);
        if let Some(r) = taken {
            return Ok(Redemption::Fresh(Box::new(IssuedCode {
                amr: parse_list(&r.amr)?,
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
            })));
        }
        let replayed: Option<(String,)> = on_db!(self, pool => sqlx::query_as(
            "update auth_codes set used = $1 where code_hash = $2 returning grant_id")
            .bind(CODE_REPLAYED).bind(code_hash).fetch_optional(pool).await?);
        Ok(match replayed {
            Some((grant_id,)) => Redemption::Replayed(grant_id),
            None => Redemption::Unknown,
        })
    }

    /// True when someone replayed the code after we took it; the caller then revokes what it
    /// issued, closing the window between our update and a replayer's revocation.
    pub async fn code_was_replayed(&self, code_hash: &str) -> Result<bool> {
        let row: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "select used from auth_codes where code_hash = $1")
            .bind(code_hash).fetch_optional(pool).await?);
        Ok(matches!(row, Some((CODE_REPLAYED,))))
    }
}

impl Db {
    pub async fn auth_request_set_params(&self, request_id: &str, params: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("update auth_requests set params = $1 where request_id = $2")
            .bind(params).bind(request_id).execute(pool).await?.rows_affected());
        Ok(())
    }
}
