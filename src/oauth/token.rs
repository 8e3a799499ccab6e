//! The token endpoint's grants (RFC 6749 §4.1.3, §6) and what they issue (OIDC Core §3.1.3).

use serde::Serialize;

use super::authorize::Params;
use super::claims::{AccessTokenClaims, IdTokenClaims, UserClaims, at_hash};
use super::error::invalid_grant_unless;
use super::{ErrorCode, OAuthError, pkce, scope};
use crate::config::Config;
use crate::keys::{Alg, KeySet};
use crate::secret::{random_token, sha256_b64};
use crate::store::{AccessTokenRow, Client, Db, IssuedCode, NewRefreshToken, Redemption, RefreshRedemption, StoreError, Tx, User};

pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token"];

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            // RFC 6749 §4.1.2.1 / §5.2: the outage is temporary, so say so (503, Retry-After).
            tracing::warn!(error = %e, "database unavailable; answering temporarily_unavailable");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the service is briefly unavailable; retry shortly",
            )
        } else {
            OAuthError::internal(e)
        }
    }
}

impl From<crate::keys::KeyError> for OAuthError {
    fn from(e: crate::keys::KeyError) -> Self {
        OAuthError::internal(e)
    }
}

/// What the token endpoint needs from the application.
pub struct Ctx<'a> {
    pub db: &'a Db,
    pub keys: &'a KeySet,
    pub config: &'a Config,
    // dcr
    /// The server secret, for pairwise subjects (OIDC Core §8.1).
    pub hmac_key: &'a crate::secret_key::SecretKeys,
}

/// The facts a grant carries from the original login into every token it yields.
struct Grant {
    grant_id: String,
    scope: String,
    nonce: Option<String>,
    auth_time: i64,
    amr: Vec<String>,
    acr: String,
    /// The `sub` the client knows the user by (pairwise or the local id).
    sub: String,
}

pub async fn exchange(ctx: &Ctx<'_>, client: &Client, params: &Params, now: i64) -> Result<TokenResponse, OAuthError> {
    params.reject_repeated()?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if !GRANT_TYPES.contains(&grant_type) {
        return Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type"));
    }
    if !client.allows_grant(grant_type) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "client may not use this grant type"));
    }
    match grant_type {
        "authorization_code" => authorization_code(ctx, client, params, now).await,
        _ => refresh_token(ctx, client, params, now).await,
    }
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6. Pure: the caller already took the code out of the store.
fn verify_code(code: &IssuedCode, client: &Client, redirect_uri: &str, verifier: Option<&str>, now: i64) -> Result<(), OAuthError> {
    invalid_grant_unless(code.client_id == client.client_id, "code was issued to another client")?;
    invalid_grant_unless(code.expires_at > now, "code expired")?;
    invalid_grant_unless(
        code.redirect_uri == redirect_uri,
        "redirect_uri differs from the authorization request",
    )?;
    pkce::verify(code.code_challenge.as_deref(), verifier)
}

async fn authorization_code(ctx: &Ctx<'_>, client: &Client, params: &Params, now: i64) -> Result<TokenResponse, OAuthError> {
    let code = params.get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let code_hash = sha256_b64(code);
    let issued = match ctx.db.code_find(&code_hash).await? {
        Redemption::Fresh(c) => *c,
        Redemption::Unknown => return Err(OAuthError::invalid_grant("code is invalid")),
        Redemption::Replayed(grant_id) => return Err(code_replayed(ctx, client, &grant_id).await),
    };
    if let Err(e) = verify_code(&issued, client, redirect_uri, params.get("code_verifier"), now) {
        // A code that failed its checks is spent, as if it had been taken first.
        ctx.db.code_burn(&code_hash).await?;
        return Err(e);
    }
    let user = ctx
        .db
        .user_get(&issued.user_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
    let grant = Grant {
        grant_id: issued.grant_id,
        scope: issued.scope,
        nonce: issued.nonce,
        auth_time: issued.auth_time,
        amr: issued.amr,
        acr: issued.acr,
        sub: super::pairwise::subject(ctx.db, ctx.hmac_key, client, &user.user_id).await?,
    };
    // Signing comes before the transaction, so no slow work holds its locks.
    let minted = mint(ctx, client, &user, &grant, now, true)?;
    // Taking the code and storing its tokens is one unit: a failure in between (a timeout, a
    // crash) leaves the code unused for the client's retry, not a replay that revokes all.
    let mut tx = ctx.db.begin().await?;
    if !tx.code_take(&code_hash).await? {
        tx.rollback().await?;
        // A concurrent redemption took it after our look-up: that is a replay too.
        return Err(match ctx.db.code_mark_replayed(&code_hash).await? {
            Some(grant_id) => code_replayed(ctx, client, &grant_id).await,
            None => OAuthError::invalid_grant("code is invalid"),
        });
    }
    tx.grant_open(&grant.grant_id, &client.client_id, &user.user_id, now, minted.grant_expires_at)
        .await?;
    minted.store(&mut tx, now).await?;
    tx.commit().await?;
    tracing::info!(client_id = %client.client_id, "tokens issued for authorization code");
    Ok(minted.response)
}

/// RFC 6749 §4.1.2: a code used twice revokes what it yielded. A replay waits on the code's
/// row until the first redemption's transaction ends, so its tokens exist by now.
async fn code_replayed(ctx: &Ctx<'_>, client: &Client, grant_id: &str) -> OAuthError {
    if let Err(e) = ctx.db.grant_revoke(grant_id).await {
        return e.into();
    }
    tracing::warn!(client_id = %client.client_id, "authorization code replayed; grant revoked");
    OAuthError::invalid_grant("code was already used; tokens issued from it are revoked")
}

/// RFC 9700 §4.14.2: reuse of a rotated refresh token means it leaked; the whole grant goes,
/// including the active refresh token.
async fn refresh_reused(ctx: &Ctx<'_>, client: &Client, grant_id: &str) -> OAuthError {
    if let Err(e) = ctx.db.grant_revoke(grant_id).await {
        return e.into();
    }
    tracing::warn!(client_id = %client.client_id, "rotated refresh token reused; grant revoked");
    OAuthError::invalid_grant("refresh token was already used; the grant is revoked")
}

async fn refresh_token(ctx: &Ctx<'_>, client: &Client, params: &Params, now: i64) -> Result<TokenResponse, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let token_hash = sha256_b64(token);
    let row = match ctx.db.refresh_token_lookup(&token_hash).await? {
        RefreshRedemption::Fresh(r) => r,
        RefreshRedemption::Unknown => return Err(OAuthError::invalid_grant("refresh token is invalid")),
        RefreshRedemption::Reused(grant_id) => return Err(refresh_reused(ctx, client, &grant_id).await),
    };
    invalid_grant_unless(row.client_id == client.client_id, "refresh token was issued to another client")?;
    invalid_grant_unless(row.expires_at > now, "refresh token expired")?;
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
    let granted = match params.get("scope") {
        None => row.scope.clone(),
        Some(asked) => {
            let wanted: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if !wanted.iter().all(|w| scope::has(&row.scope, w)) {
                return Err(OAuthError::new(ErrorCode::InvalidScope, "scope exceeds the original grant"));
            }
            wanted.join(" ")
        }
    };
    let user = ctx
        .db
        .user_get(&row.user_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
    let grant = Grant {
        grant_id: row.grant_id,
        scope: granted,
        nonce: None,
        auth_time: row.auth_time,
        amr: row.amr,
        acr: row.acr,
        sub: super::pairwise::subject(ctx.db, ctx.hmac_key, client, &user.user_id).await?,
    };
    let minted = mint(ctx, client, &user, &grant, now, true)?;
    let mut tx = ctx.db.begin().await?;
    // The grant row first, the order revocation locks in too: a revocation either ran before
    // (the grant is refused here) or waits until the successor is stored, then takes it along.
    if !tx.grant_lock(&grant.grant_id, minted.grant_expires_at).await? {
        tx.rollback().await?;
        return Err(OAuthError::invalid_grant("the grant is revoked"));
    }
    if !tx.refresh_take(&token_hash).await? {
        tx.rollback().await?;
        // Rotated away by a concurrent request after our look-up.
        return Err(refresh_reused(ctx, client, &grant.grant_id).await);
    }
    minted.store(&mut tx, now).await?;
    tx.commit().await?;
    Ok(minted.response)
}

/// Signed tokens waiting to be stored with the redemption that yields them.
struct Minted {
    response: TokenResponse,
    access: AccessTokenRow,
    refresh: Option<NewRefreshToken>,
    /// When the last of these tokens expires.
    grant_expires_at: i64,
}

impl Minted {
    async fn store(&self, tx: &mut Tx, now: i64) -> Result<(), OAuthError> {
        tx.access_token_create(&self.access, now).await?;
        if let Some(r) = &self.refresh {
            tx.refresh_token_create(r, now).await?;
        }
        Ok(())
    }
}

/// Signs the tokens of one grant. No I/O: the caller stores them in its transaction.
fn mint(ctx: &Ctx<'_>, client: &Client, user: &User, g: &Grant, now: i64, allow_refresh: bool) -> Result<Minted, OAuthError> {
    let cfg = ctx.config;
    let jti = random_token(16);
    let at_claims = AccessTokenClaims {
        iss: cfg.issuer.clone(),
        sub: g.sub.clone(),
        aud: cfg.issuer.clone(),
        exp: now + cfg.access_token_ttl,
        iat: now,
        jti: jti.clone(),
        client_id: client.client_id.clone(),
        scope: g.scope.clone(),
        auth_time: g.auth_time,
        acr: g.acr.clone(),
        amr: g.amr.clone(),
    };
    // RFC 9068 §2.1: typ at+jwt, so an access token can never pass for an ID token.
    let access_token = ctx.keys.sign(Alg::RS256, "at+jwt", &at_claims)?;
    let access = AccessTokenRow {
        token_hash: sha256_b64(&access_token),
        jti,
        grant_id: g.grant_id.clone(),
        client_id: client.client_id.clone(),
        user_id: user.user_id.clone(),
        scope: g.scope.clone(),
        expires_at: at_claims.exp,
    };

    let id_claims = IdTokenClaims {
        iss: cfg.issuer.clone(),
        sub: g.sub.clone(),
        aud: client.client_id.clone(),
        exp: now + cfg.id_token_ttl,
        iat: now,
        auth_time: g.auth_time,
        nonce: g.nonce.clone(),
        at_hash: Some(at_hash(&access_token)),
        azp: client.client_id.clone(),
        acr: g.acr.clone(),
        amr: g.amr.clone(),
        user: UserClaims::for_scope(user, &g.scope),
    };
    let alg = Alg::parse(&client.id_token_alg).unwrap_or(Alg::RS256);
    let id_token = ctx.keys.sign(alg, "JWT", &id_claims)?;

    let mut grant_expires_at = access.expires_at;
    let (refresh_token, refresh) = if allow_refresh && client.allows_grant("refresh_token") {
        let token = random_token(32);
        let row = NewRefreshToken {
            token_hash: sha256_b64(&token),
            grant_id: g.grant_id.clone(),
            client_id: client.client_id.clone(),
            user_id: user.user_id.clone(),
            scope: g.scope.clone(),
            nonce: g.nonce.clone(),
            auth_time: g.auth_time,
            amr: g.amr.clone(),
            acr: g.acr.clone(),
            expires_at: now + cfg.refresh_token_ttl,
        };
        grant_expires_at = grant_expires_at.max(row.expires_at);
        (Some(token), Some(row))
    } else {
        (None, None)
    };
    Ok(Minted {
        response: TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: cfg.access_token_ttl,
            id_token: Some(id_token),
            refresh_token,
            scope: g.scope.clone(),
        },
        access,
        refresh,
        grant_expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(now: i64) -> IssuedCode {
        IssuedCode {
            grant_id: "g".into(),
            client_id: "c1".into(),
            user_id: "u".into(),
            redirect_uri: "https://rp/cb".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: None,
            auth_time: now,
            amr: vec![],
            acr: String::new(),
            expires_at: now + 60,
        }
    }

    fn client(id: &str) -> Client {
        Client {
            client_id: id.into(),
            secret_hash: None,
            name: "c".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![],
            is_public: false,
            skip_consent: false,
            id_token_alg: "RS256".into(),
            require_2fa: false,
            created_at: 0,
            meta: Default::default(),
            registration_token_hash: None,
            secret_sealed: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
        }
    }

    #[test]
    fn code_checks() {
        let c = code(1000);
        verify_code(&c, &client("c1"), "https://rp/cb", None, 1059).unwrap();
        for (cl, uri, now, why) in [
            ("c2", "https://rp/cb", 1000, "code was issued to another client"),
            ("c1", "https://rp/cb", 1060, "code expired"),
            (
                "c1",
                "https://rp/other",
                1000,
                "redirect_uri differs from the authorization request",
            ),
        ] {
            let e = verify_code(&c, &client(cl), uri, None, now).unwrap_err();
            assert_eq!((e.code, e.description.as_ref()), (ErrorCode::InvalidGrant, why));
        }
    }
}
