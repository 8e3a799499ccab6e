//! Reading our own tokens back: bearer verification, revocation (RFC 7009) and
//! introspection (RFC 7662).

use serde_json::{Value, json};

use super::claims::AccessTokenClaims;
use super::{ErrorCode, OAuthError};
use crate::keys::KeySet;
use crate::secret::sha256_b64;
use crate::store::{Client, Db};

fn invalid_token(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, d)
}

/// Signature, `typ`, issuer and expiry of a JWT access token. Liveness (revocation) is the
/// store's question, asked separately.
pub fn verify_access_token(keys: &KeySet, issuer: &str, token: &str, now: i64) -> Result<AccessTokenClaims, OAuthError> {
    let (claims, typ) = keys
        .verify::<AccessTokenClaims>(token, issuer)
        .map_err(|_| invalid_token("the access token is invalid"))?;
    // RFC 9068 §4: refuse anything not typed as an access token, such as an ID token.
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")) {
        return Err(invalid_token("the token is not an access token"));
    }
    if claims.exp <= now {
        return Err(invalid_token("the access token expired"));
    }
    Ok(claims)
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// RFC 7009 §2.1: a client revokes only its own tokens; a refresh token takes its whole
/// grant with it. Unknown tokens are not an error.
pub async fn revoke(db: &Db, keys: &KeySet, issuer: &str, client: &Client, token: &str) -> Result<(), OAuthError> {
    if looks_like_jwt(token) {
        if let Ok((claims, _)) = keys.verify::<AccessTokenClaims>(token, issuer) {
            db.access_token_revoke(&claims.jti, &client.client_id).await?;
        }
        return Ok(());
    }
    if let Some(info) = db.refresh_token_find(&sha256_b64(token)).await?
        && info.client_id == client.client_id
    {
        db.grant_revoke(&info.grant_id).await?;
    }
    Ok(())
}

/// RFC 7662 §2.2: `{"active": false}` for anything not live, with no reason given.
pub async fn introspect(db: &Db, keys: &KeySet, issuer: &str, token: &str, now: i64) -> Result<Value, OAuthError> {
    let inactive = json!({ "active": false });
    if looks_like_jwt(token) {
        let Ok(claims) = verify_access_token(keys, issuer, token, now) else {
            return Ok(inactive);
        };
        let Some(live) = db.userinfo_lookup(&claims.jti, now).await? else {
            return Ok(inactive);
        };
        return Ok(json!({
            "active": true,
            "token_type": "Bearer",
            "scope": live.scope,
            "client_id": live.client_id,
            "sub": claims.sub,
            "username": live.user.email,
            "exp": claims.exp,
            "iat": claims.iat,
            "iss": claims.iss,
            "aud": claims.aud,
            "jti": claims.jti,
        }));
    }
    match db.refresh_token_find(&sha256_b64(token)).await? {
        Some(r) if r.used == 0 && r.expires_at > now => Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": r.scope,
            "client_id": r.client_id,
            "sub": r.user_id,
            "exp": r.expires_at,
            "iat": r.created_at,
            "iss": issuer,
        })),
        _ => Ok(inactive),
    }
}
