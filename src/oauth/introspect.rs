//! Reading our own tokens back: bearer lookup, revocation (RFC 7009) and introspection
//! (RFC 7662).
//!
//! An access token is accepted only if the SHA-256 of the whole token matches a live row:
//! stricter than a signature check (which accepts anything our key signed) and cheaper, since
//! no RSA work is done per request. Resource servers elsewhere verify the JWT with the JWKS.

use serde_json::{Value, json};

use super::OAuthError;
use super::claims::AccessTokenClaims;
use crate::secret::sha256_b64;
use crate::store::{Client, Db, UserinfoRow};

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The live access token `token` is, with its user; `None` if unknown, expired or revoked.
pub async fn live_access_token(db: &Db, token: &str, now: i64) -> Result<Option<UserinfoRow>, OAuthError> {
    if !looks_like_jwt(token) {
        return Ok(None);
    }
    Ok(db.userinfo_lookup(&sha256_b64(token), now).await?)
}

/// RFC 7009 §2.1: a client revokes only its own tokens; a refresh token takes its whole
/// grant with it. Unknown tokens are not an error.
pub async fn revoke(db: &Db, client: &Client, token: &str) -> Result<(), OAuthError> {
    let hash = sha256_b64(token);
    if looks_like_jwt(token) {
        db.access_token_revoke(&hash, &client.client_id).await?;
        return Ok(());
    }
    if let Some(info) = db.refresh_token_find(&hash).await?
        && info.client_id == client.client_id
    {
        db.grant_revoke(&info.grant_id).await?;
    }
    Ok(())
}

/// RFC 7662 §2.2: `{"active": false}` for anything not live, with no reason given.
///
/// RFC 7662 §4: only the client the token was issued to learns about it; any other caller is
/// told it is inactive, so a confidential client cannot probe others' tokens. The answer holds
/// what a resource server needs and no personal data (no email).
pub async fn introspect(
    db: &Db,
    hmac_key: &crate::secret_key::SecretKeys,
    issuer: &str,
    caller: &Client,
    token: &str,
    now: i64,
) -> Result<Value, OAuthError> {
    let inactive = json!({ "active": false });
    if looks_like_jwt(token) {
        // Not the userinfo join: a client_credentials token has no user and is live too.
        let Some(live) = db.access_token_live(&sha256_b64(token), now).await? else {
            return Ok(inactive);
        };
        if live.client_id != caller.client_id {
            return Ok(inactive);
        }
        // The row proves the token is ours (the SHA-256 of the whole token, signature
        // included, matched what we stored when we signed it), so its claims are read without
        // a second, costlier RSA check; they give the times and ids to report.
        let Some(claims) = crate::keys::payload_of::<AccessTokenClaims>(token) else {
            return Ok(inactive);
        };
        return Ok(json!({
            "active": true,
            "token_type": "Bearer",
            "scope": live.scope,
            "client_id": live.client_id,
            "sub": claims.sub,
            "exp": claims.exp,
            "iat": claims.iat,
            "iss": claims.iss,
            "aud": claims.aud,
        }));
    }
    match db.refresh_token_find(&sha256_b64(token)).await? {
        Some(r) if r.used == 0 && r.expires_at > now && r.client_id == caller.client_id => Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": r.scope,
            "client_id": r.client_id,
            // The caller is the token's client, so its own (maybe pairwise) sub (OIDC Core §8.1).
            "sub": super::pairwise::subject(db, hmac_key, caller, &r.user_id).await?,
            "exp": r.expires_at,
            "iat": r.created_at,
            "iss": issuer,
        })),
        _ => Ok(inactive),
    }
}
