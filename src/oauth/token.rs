//! The token endpoint's grants (RFC 6749 §4.1.3, §6) and what they issue (OIDC Core §3.1.3).

use serde::{Deserialize, Serialize};

use super::authorize::Params;
use super::claims::{AccessTokenClaims, IdTokenClaims, UserClaims, at_hash};
use super::error::invalid_grant_unless;
use super::resource::{self, Audience};
use super::{ErrorCode, OAuthError, pkce, scope};
use crate::config::Config;
use crate::keys::{Alg, KeySet};
use crate::secret::{random_token, sha256_b64};
use crate::secret_key::SecretKeys;
use crate::store::{
    AccessTokenRow, Client, Db, GraceReplay, IssuedCode, NewRefreshToken, Redemption, RefreshRedemption, Rotation, StoreError, Tx, User,
};

pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Left out when empty (a client_credentials client without scopes): RFC 6749 §3.3 has
    /// no empty scope.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// A token response as sealed for the refresh grace; `token_type` is always Bearer.
#[derive(Deserialize)]
struct SealedResponse {
    access_token: String,
    expires_in: i64,
    id_token: Option<String>,
    refresh_token: Option<String>,
    #[serde(default)]
    scope: String,
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
    /// Seals a rotated refresh token's successor for the refresh grace, and keys pairwise
    /// subjects (OIDC Core §8.1).
    pub secrets: &'a SecretKeys,
}

/// The facts a grant carries from the original login into every token it yields.
struct Grant {
    grant_id: String,
    scope: String,
    nonce: Option<String>,
    auth_time: i64,
    amr: Vec<String>,
    acr: String,
    /// The login session (Back-Channel Logout 1.0 §2.1): the same `sid` in every ID token.
    sid: Option<String>,
    /// RFC 8707: the resources the whole grant covers (kept on the refresh token)...
    resources: Vec<String>,
    /// ...and those this access token is for (its `aud`), a subset (§2.2).
    token_resources: Vec<String>,
    /// The `sub` the client knows the user by (pairwise or the local id).
    sub: String,
    /// reqobj: claims asked for by name (OIDC Core §5.5), JSON as stored on the grant.
    claims: Option<String>,
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
        "client_credentials" => client_credentials(ctx, client, params, now).await,
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
    // RFC 8707 §2.2: a resource the grant does not cover is the client's mistake, not a
    // stolen code, so the code stays usable for a corrected request.
    let token_resources = resource::narrowed(params.resources(), &issued.resources, &client.resources)?;
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
        sid: issued.sid,
        resources: issued.resources,
        token_resources,
        sub: super::pairwise::subject(ctx.db, ctx.secrets, client, &user.user_id).await?,
        claims: issued.claims,
    };
    // Signing comes before the transaction, so no slow work holds its locks.
    let minted = mint(ctx, client, &user, &grant, now, true)?;
    // Taking the code and storing its tokens is one unit: a failure in between (a timeout, a
    // crash) leaves the code unused for the client's retry, not a replay that revokes all.
    let mut tx = ctx.db.begin().await?;
    // The session first, the row its end deletes first too: a logout racing this redemption
    // either waits for it (and then notifies this client and revokes these tokens) or has
    // already ended the session, and the code with it.
    if let Some(sid) = &grant.sid
        && !tx.session_join(sid, &client.client_id, &user.user_id, now).await?
    {
        tx.rollback().await?;
        ctx.db.code_burn(&code_hash).await?;
        return Err(OAuthError::invalid_grant("the login session of this code has ended"));
    }
    if !tx.code_take(&code_hash).await? {
        tx.rollback().await?;
        // A concurrent redemption took it after our look-up: that is a replay too.
        return Err(match ctx.db.code_mark_replayed(&code_hash).await? {
            Some(grant_id) => code_replayed(ctx, client, &grant_id).await,
            None => OAuthError::invalid_grant("code is invalid"),
        });
    }
    tx.grant_open(
        &grant.grant_id,
        &client.client_id,
        &user.user_id,
        grant.sid.as_deref(),
        grant.claims.as_deref(),
        now,
        minted.grant_expires_at,
    )
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

/// What the sealed successor is bound to: its predecessor's row, and this one purpose.
fn grace_aad(token_hash: &str) -> Vec<u8> {
    format!("refresh grace {token_hash}").into_bytes()
}

/// Opens a successor taken within the grace; `None` (so the reuse revokes) if it does not
/// open, e.g. sealed under a server secret key no longer in the ring.
fn grace_response(ctx: &Ctx<'_>, token_hash: &str, g: &GraceReplay, now: i64) -> Option<TokenResponse> {
    let opened = crate::secret_box::open(ctx.secrets, &grace_aad(token_hash), &g.successor_sealed)
        .map_err(|e| tracing::warn!(error = %e, "sealed refresh successor does not open; treating the retry as reuse"))
        .ok()?;
    let r: SealedResponse = serde_json::from_slice(&opened).ok()?;
    Some(TokenResponse {
        access_token: r.access_token,
        token_type: "Bearer",
        // The same access token, so what is left of its lifetime.
        expires_in: (r.expires_in - (now - g.rotated_at)).max(0),
        id_token: r.id_token,
        refresh_token: r.refresh_token,
        scope: r.scope,
    })
}

/// The grace retry of a token found already rotated, outside any rotation's transaction.
async fn grace_retry(ctx: &Ctx<'_>, client: &Client, token_hash: &str, now: i64) -> Result<Option<TokenResponse>, OAuthError> {
    let grace = ctx.config.refresh_grace;
    if grace == 0 {
        return Ok(None);
    }
    let Some(g) = ctx.db.refresh_grace_claim(token_hash, &client.client_id, now - grace).await? else {
        return Ok(None);
    };
    Ok(grace_response(ctx, token_hash, &g, now).inspect(|_| {
        tracing::info!(client_id = %client.client_id, "refresh retried within the grace; same successor returned");
    }))
}

async fn refresh_token(ctx: &Ctx<'_>, client: &Client, params: &Params, now: i64) -> Result<TokenResponse, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let token_hash = sha256_b64(token);
    let row = match ctx.db.refresh_token_lookup(&token_hash).await? {
        RefreshRedemption::Fresh(r) => r,
        RefreshRedemption::Unknown => return Err(OAuthError::invalid_grant("refresh token is invalid")),
        RefreshRedemption::Reused(grant_id) => {
            // A retry after a lost response gets the same successor once, within the grace.
            if let Some(again) = grace_retry(ctx, client, &token_hash, now).await? {
                return Ok(again);
            }
            return Err(refresh_reused(ctx, client, &grant_id).await);
        }
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
    // RFC 8707 §2.2: the same for resources; the refresh token keeps the whole set.
    let token_resources = resource::narrowed(params.resources(), &row.resources, &client.resources)?;
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
        sid: row.sid,
        resources: row.resources,
        token_resources,
        sub: super::pairwise::subject(ctx.db, ctx.secrets, client, &user.user_id).await?,
        claims: row.claims,
    };
    let minted = mint(ctx, client, &user, &grant, now, true)?;
    let grace = ctx.config.refresh_grace;
    // The successor's response, sealed for the grace window before any lock is taken.
    let sealed = match (&minted.refresh, grace) {
        (Some(_), 1..) => {
            let json = serde_json::to_vec(&minted.response).map_err(OAuthError::internal)?;
            Some(crate::secret_box::seal(ctx.secrets, &grace_aad(&token_hash), &json).map_err(OAuthError::internal)?)
        }
        _ => None,
    };
    let rotation = Rotation {
        at: now,
        successor_hash: minted.refresh.as_ref().map_or("", |r| r.token_hash.as_str()),
        sealed: sealed.as_deref(),
    };
    let mut tx = ctx.db.begin().await?;
    // The grant row first, the order revocation locks in too: a revocation either ran before
    // (the grant is refused here) or waits until the successor is stored, then takes it along.
    if !tx.grant_lock(&grant.grant_id, minted.grant_expires_at).await? {
        tx.rollback().await?;
        return Err(OAuthError::invalid_grant("the grant is revoked"));
    }
    if !tx.refresh_take(&token_hash, &rotation).await? {
        // Rotated away by a concurrent request after our look-up. Under the grant lock, so
        // that rotation has committed: a retry within the grace gets its successor, once.
        if grace > 0
            && let Some(g) = tx.refresh_grace_claim(&token_hash, &client.client_id, now - grace).await?
        {
            tx.commit().await?;
            if let Some(again) = grace_response(ctx, &token_hash, &g, now) {
                tracing::info!(client_id = %client.client_id, "concurrent refresh within the grace; same successor returned");
                return Ok(again);
            }
            return Err(refresh_reused(ctx, client, &grant.grant_id).await);
        }
        tx.rollback().await?;
        return Err(refresh_reused(ctx, client, &grant.grant_id).await);
    }
    minted.store(&mut tx, now).await?;
    tx.commit().await?;
    Ok(minted.response)
}

/// RFC 6749 §3.3 and §4.4.2: the scope of a client_credentials token, within the client's
/// allow-list; none asked gives the whole list. `openid` and the user scopes are refused:
/// they release claims about a user, and this token has none.
fn client_scope(asked: Option<&str>, allowed: &[String]) -> Result<String, OAuthError> {
    let Some(asked) = asked else {
        return Ok(allowed.join(" "));
    };
    let wanted = scope::parse_tokens(asked)?;
    if wanted.iter().any(|w| scope::SUPPORTED.contains(&w.as_str())) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "openid and user scopes need a user; client_credentials tokens have none",
        ));
    }
    if !wanted.iter().all(|w| allowed.contains(w)) {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "scope is not one this client may ask for"));
    }
    Ok(wanted.join(" "))
}

/// RFC 6749 §4.4: a token for the client itself. RFC 9068 §2.2: `sub` is the client id; no
/// refresh token (§4.4.3) and no ID token, since no user logged in.
async fn client_credentials(ctx: &Ctx<'_>, client: &Client, params: &Params, now: i64) -> Result<TokenResponse, OAuthError> {
    // RFC 6749 §4.4: confidential clients only; a public client proves nothing about itself.
    if client.is_public {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public clients may not use client_credentials",
        ));
    }
    let scope = client_scope(params.get("scope"), &client.scopes)?;
    let resources = resource::requested(params.resources(), &client.resources)?;
    // Each token is its own grant, with no row in `grants`: revoking it is revoking the token.
    let grant_id = random_token(16);
    let (access_token, row) = sign_access(ctx, client, None, None, &grant_id, &scope, &resources, None, now)?;
    ctx.db.access_token_insert(&row, now).await?;
    tracing::info!(client_id = %client.client_id, "access token issued for client credentials");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ctx.config.access_token_ttl,
        id_token: None,
        refresh_token: None,
        scope,
    })
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

/// The login behind a user's access token (RFC 9068 §2.2.1).
struct Login<'a> {
    auth_time: i64,
    acr: &'a str,
    amr: &'a [String],
}

/// Signs one access token (RFC 9068) with the client's algorithm; `user` is `None` for a
/// client's own token, whose `sub` is then the client id (§2.2).
#[allow(clippy::too_many_arguments)]
fn sign_access(
    ctx: &Ctx<'_>,
    client: &Client,
    user: Option<&User>,
    // The `sub` the client knows the user by (pairwise or the local id); none: the client's own token.
    sub: Option<&str>,
    grant_id: &str,
    scope: &str,
    resources: &[String],
    login: Option<Login<'_>>,
    now: i64,
) -> Result<(String, AccessTokenRow), OAuthError> {
    let cfg = ctx.config;
    let jti = random_token(16);
    let claims = AccessTokenClaims {
        iss: cfg.issuer.clone(),
        // RFC 9068 §2.2: a client's own token has its client id as `sub`.
        sub: sub.map_or_else(|| client.client_id.clone(), str::to_owned),
        aud: Audience::of(resources, &cfg.issuer),
        exp: now + cfg.access_token_ttl,
        iat: now,
        jti: jti.clone(),
        client_id: client.client_id.clone(),
        scope: scope.to_owned(),
        auth_time: login.as_ref().map(|l| l.auth_time),
        acr: login.as_ref().map(|l| l.acr.to_owned()),
        amr: login.as_ref().map(|l| l.amr.to_vec()),
    };
    let alg = Alg::parse(&client.access_token_alg).unwrap_or(Alg::RS256);
    // RFC 9068 §2.1: typ at+jwt, so an access token can never pass for an ID token.
    let token = ctx.keys.sign(alg, "at+jwt", &claims)?;
    let row = AccessTokenRow {
        token_hash: sha256_b64(&token),
        jti,
        grant_id: grant_id.to_owned(),
        client_id: client.client_id.clone(),
        user_id: user.map(|u| u.user_id.clone()),
        scope: scope.to_owned(),
        expires_at: claims.exp,
    };
    Ok((token, row))
}

/// reqobj: the stored `claims` request; one that no longer parses asks for nothing more.
pub fn claims_request(stored: Option<&str>) -> super::claims::ClaimsRequest {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

/// Signs the tokens of one grant. No I/O: the caller stores them in its transaction.
fn mint(ctx: &Ctx<'_>, client: &Client, user: &User, g: &Grant, now: i64, allow_refresh: bool) -> Result<Minted, OAuthError> {
    let cfg = ctx.config;
    let login = Login {
        auth_time: g.auth_time,
        acr: &g.acr,
        amr: &g.amr,
    };
    let (access_token, access) = sign_access(
        ctx,
        client,
        Some(user),
        Some(&g.sub),
        &g.grant_id,
        &g.scope,
        &g.token_resources,
        Some(login),
        now,
    )?;

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
        sid: g.sid.clone(),
        user: UserClaims::for_request(user, &g.scope, &claims_request(g.claims.as_deref()).id_token),
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
            sid: g.sid.clone(),
            resources: g.resources.clone(),
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
            sid: None,
            resources: vec![],
            claims: None,
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
            scopes: vec![],
            resources: vec![],
            access_token_alg: "RS256".into(),
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

    #[test]
    fn client_credentials_scopes() {
        let allowed = vec!["invoices:read".to_owned(), "invoices:write".to_owned()];
        assert_eq!(client_scope(None, &allowed).unwrap(), "invoices:read invoices:write");
        assert_eq!(client_scope(None, &[]).unwrap(), "");
        assert_eq!(
            client_scope(Some("invoices:write  invoices:write"), &allowed).unwrap(),
            "invoices:write"
        );
        for bad in ["openid", "invoices:read email", "invoices:delete", "bad\\scope"] {
            assert_eq!(
                client_scope(Some(bad), &allowed).unwrap_err().code,
                ErrorCode::InvalidScope,
                "{bad}"
            );
        }
    }
}
