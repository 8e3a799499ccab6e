//! `/account/api/*`: JSON routes for apps that keep their own security settings screen
//! (EventHub's `/api/a2f/*` in seed 001). A bearer access token from clef with the `account`
//! scope acts for the token's own user only (RFC 6750); CORS comes from the same layer as
//! userinfo, for the origins clients registered.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::userinfo::{bearer, challenge};
use crate::app::AppState;
use crate::oauth::claims::AccessTokenClaims;
use crate::oauth::introspect::live_access_token;
use crate::oauth::{ErrorCode, OAuthError, scope};
use crate::store::User;

/// The scope that lets a token manage its user's security settings.
pub const SCOPE: &str = "account";

/// Who is calling: the token's user, and when that user last authenticated.
pub struct Caller {
    pub user: User,
    pub auth_time: i64,
}

/// RFC 6750 §3.1: no token, a dead one, or one without the `account` scope each get their
/// own challenge, so the app knows whether to refresh or to ask for the scope.
pub async fn caller(app: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let token = match bearer(headers) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(challenge(None, &[])),
        Err(e) => return Err(challenge(Some(&e), &[])),
    };
    let dead = || {
        challenge(
            Some(&OAuthError::new(
                ErrorCode::InvalidToken,
                "the access token is invalid, expired or revoked",
            )),
            &[],
        )
    };
    let live = match live_access_token(&app.db, &token, app.clock.now()).await {
        Ok(Some(l)) => l,
        Ok(None) => return Err(dead()),
        Err(e) => return Err(super::error::json_error(&e)),
    };
    if !scope::has(&live.scope, SCOPE) {
        return Err(challenge(
            Some(&OAuthError::new(ErrorCode::InsufficientScope, "this route needs the account scope")),
            &[("scope", SCOPE.to_owned())],
        ));
    }
    // The row proved the token live; its signed claims carry the login time (RFC 9068 §2.2.1).
    let Ok((claims, _)) = app.keys.get().verify::<AccessTokenClaims>(&token, &app.config.issuer) else {
        return Err(dead());
    };
    Ok(Caller {
        user: live.user,
        auth_time: claims.auth_time,
    })
}

pub fn json_no_store(body: serde_json::Value) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// GET /account/api/status: the account as its security screen shows it.
pub async fn status(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let c = match caller(&app, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    json_no_store(json!({
        "sub": c.user.user_id,
        "email": c.user.email,
        "email_verified": c.user.email_verified,
        "auth_time": c.auth_time,
    }))
}
