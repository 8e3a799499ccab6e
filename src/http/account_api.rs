//! `/account/api/*`: JSON routes for apps that keep their own security settings screen
//! (EventHub's `/api/a2f/*` in seed 001). A bearer access token from clef with the `account`
//! scope acts for the token's own user only (RFC 6750); CORS comes from the same layer as
//! userinfo, for the origins clients registered.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::account::{end_session, event, handle, own_session, user_agent};
use super::client_ip::ClientIp;
use super::error::{json_error, json_error_with_status};
use super::extract::locale;
use super::userinfo::{bearer, challenge};
use crate::app::AppState;
use crate::auth::second_factor::{self, Confirmed, Enrolment};
use crate::auth::{AuthError, totp};
use crate::device;
use crate::oauth::claims::AccessTokenClaims;
use crate::oauth::introspect::live_access_token;
use crate::oauth::{ErrorCode, OAuthError, scope};
use crate::paths;
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
    let Ok((claims, _)) = app.keys.verify::<AccessTokenClaims>(&token, &app.config.issuer, app.clock.now()) else {
        return Err(dead());
    };
    // Only a user's token has a login time; one without is no token for this API.
    let Some(auth_time) = claims.auth_time else {
        return Err(dead());
    };
    Ok(Caller {
        user: live.user,
        auth_time,
    })
}

pub fn json_no_store(body: serde_json::Value) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The routes after status, mounted under the same CORS layer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::ACCOUNT_API_TOTP_START, post(totp_start).fallback(wrong_method))
        .route(paths::ACCOUNT_API_TOTP_CONFIRM, post(totp_confirm).fallback(wrong_method))
        .route(paths::ACCOUNT_API_TOTP_DISABLE, post(totp_disable).fallback(wrong_method))
        .route(paths::ACCOUNT_API_BACKUP_CODES, post(backup_codes).fallback(wrong_method))
        .route(paths::ACCOUNT_API_SESSIONS, get(sessions).fallback(wrong_method))
        .route(paths::ACCOUNT_API_SESSION_END, post(session_end).fallback(wrong_method))
        // An API client gets JSON for a path that does not exist, not the pages' HTML 404.
        .route("/account/api/{*rest}", any(unknown_route))
}

async fn unknown_route() -> Response {
    json_error_with_status(&OAuthError::invalid_request("no such account API route"), StatusCode::NOT_FOUND)
}

/// A method the route does not take: 405 in the same JSON shape as every other error here.
async fn wrong_method() -> Response {
    json_error_with_status(
        &OAuthError::invalid_request("this route does not take that method"),
        StatusCode::METHOD_NOT_ALLOWED,
    )
}

/// RFC 9470 §3: a sensitive route refuses a token whose login is older than `max_age`; the
/// app sends the user through `/authorize` with that `max_age` and retries with the new token.
/// The rule is the pages' (`totp::recent_enough`), so both ask for the same freshness.
pub fn require_recent(c: &Caller, now: i64, max_age: i64) -> Result<(), Box<Response>> {
    if totp::recent_enough(c.auth_time, now, max_age) {
        return Ok(());
    }
    Err(Box::new(challenge(
        Some(&OAuthError::new(
            ErrorCode::InsufficientUserAuthentication,
            "a more recent authentication is required",
        )),
        &[("max_age", max_age.to_string())],
    )))
}

/// An answer, or the error response that replaces it.
type Answer = Result<Response, Response>;

fn answer(r: Answer) -> Response {
    r.unwrap_or_else(|e| e)
}

/// A caller whose login is recent enough for a sensitive route.
async fn recent_caller(app: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let c = caller(app, headers).await?;
    require_recent(&c, app.clock.now(), app.config.reauth_after).map_err(|r| *r)?;
    Ok(c)
}

fn bad_request(description: &'static str) -> Response {
    json_error(&OAuthError::invalid_request(description))
}

/// The account is not in the state the route changes (RFC 9110 §15.5.10, 409 Conflict): TOTP
/// already on for `start`, nothing pending for `confirm`, nothing on to turn off or to make
/// backup codes for. The body keeps the OAuth shape, so an app reads every error one way.
fn conflict(description: &'static str) -> Response {
    json_error_with_status(&OAuthError::invalid_request(description), StatusCode::CONFLICT)
}

/// Ours, not the caller's: an outage answers 503, anything else 500 with a log reference.
fn failed(e: AuthError) -> Response {
    json_error(&match e {
        AuthError::Store(s) => OAuthError::from(s),
        other => OAuthError::internal(other),
    })
}

/// JSON bodies here hold one short field; anything bigger is refused before it is buffered.
const MAX_JSON: usize = 4 * 1024;

/// A bounded `application/json` body.
async fn read_json<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Response> {
    let too_large = || {
        json_error_with_status(
            &OAuthError::invalid_request("the request body is too large"),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_JSON) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_JSON).await.map_err(|_| too_large())?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(bad_request("send a JSON body with Content-Type: application/json"));
    }
    serde_json::from_slice(&bytes).map_err(|_| bad_request("the body is not the JSON object this route takes"))
}

/// GET /account/api/status: the account as its security screen shows it.
pub async fn status(State(app): State<AppState>, headers: HeaderMap) -> Response {
    answer(status_inner(&app, &headers).await)
}

async fn status_inner(app: &AppState, headers: &HeaderMap) -> Answer {
    let c = caller(app, headers).await?;
    let st = second_factor::status(&app.db, &c.user.user_id, app.clock.now())
        .await
        .map_err(failed)?;
    Ok(json_no_store(json!({
        "sub": c.user.user_id,
        "email": c.user.email,
        "email_verified": c.user.email_verified,
        "auth_time": c.auth_time,
        "two_factor": {
            "totp": st.totp.as_str(),
            "backup_codes_left": st.backup_codes_left,
            "locked_until": st.locked_until,
        },
    })))
}

/// POST /account/api/totp/start: a fresh pending secret, as the enrolment page shows it. A
/// second start replaces a pending secret, never one that is on.
pub async fn totp_start(State(app): State<AppState>, headers: HeaderMap) -> Response {
    answer(totp_start_inner(&app, &headers).await)
}

async fn totp_start_inner(app: &AppState, headers: &HeaderMap) -> Answer {
    // As on the page: enrolling a device is sensitive, confirming the started secret is not.
    let c = recent_caller(app, headers).await?;
    let Some(secret) = second_factor::start(app, &c.user, app.clock.now()).await.map_err(failed)? else {
        return Err(conflict("two-factor login is already on; turn it off first"));
    };
    let e = Enrolment::new(&app.config.totp_issuer, &c.user, &secret).map_err(failed)?;
    let data_uri = format!(
        "data:image/svg+xml;base64,{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, e.qr_svg.as_bytes())
    );
    Ok(json_no_store(json!({
        "otpauth_uri": e.otpauth_uri,
        "secret": e.secret_grouped,
        "qr_svg": e.qr_svg,
        "qr_data_uri": data_uri,
    })))
}

#[derive(Deserialize)]
struct ConfirmBody {
    code: String,
}

/// POST /account/api/totp/confirm `{"code": "123456"}`: TOTP goes on, and the eight backup
/// codes are in this answer only.
pub async fn totp_confirm(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, body: Body) -> Response {
    answer(totp_confirm_inner(&app, ip, &headers, body).await)
}

async fn totp_confirm_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, body: Body) -> Answer {
    let c = caller(app, headers).await?;
    let input: ConfirmBody = read_json(headers, body).await?;
    if input.code.len() > 32 {
        return Err(bad_request("code is six digits"));
    }
    let (ip, ua) = (ip.to_string(), user_agent(headers));
    let ev = event(&ip, ua.as_deref());
    let mail_locale = locale(headers, None);
    match second_factor::confirm(app, &c.user, &input.code, &ev, mail_locale, app.clock.now())
        .await
        .map_err(failed)?
    {
        Confirmed::NothingPending => Err(conflict("no enrolment is pending; start one first")),
        Confirmed::Wrong { .. } => Err(bad_request("the code is wrong or expired; type the current code of the app")),
        Confirmed::On { codes } => Ok(json_no_store(json!({ "totp": "on", "backup_codes": codes }))),
    }
}

/// POST /account/api/totp/disable: needs a recent login (RFC 9470).
pub async fn totp_disable(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap) -> Response {
    answer(totp_disable_inner(&app, ip, &headers).await)
}

async fn totp_disable_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap) -> Answer {
    let c = recent_caller(app, headers).await?;
    let (ip, ua) = (ip.to_string(), user_agent(headers));
    let done = second_factor::disable(app, &c.user, &event(&ip, ua.as_deref()), locale(headers, None), app.clock.now())
        .await
        .map_err(failed)?;
    if !done {
        return Err(conflict("two-factor login is not on"));
    }
    Ok(json_no_store(json!({ "totp": "off" })))
}

/// POST /account/api/backup-codes: new codes replace all the old ones; needs a recent login.
pub async fn backup_codes(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap) -> Response {
    answer(backup_codes_inner(&app, ip, &headers).await)
}

async fn backup_codes_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap) -> Answer {
    let c = recent_caller(app, headers).await?;
    let (ip, ua) = (ip.to_string(), user_agent(headers));
    let codes = second_factor::regenerate(app, &c.user, &event(&ip, ua.as_deref()), locale(headers, None), app.clock.now())
        .await
        .map_err(failed)?;
    match codes {
        Some(codes) => Ok(json_no_store(json!({ "backup_codes": codes }))),
        None => Err(conflict("two-factor login is not on")),
    }
}

/// GET /account/api/sessions: the user's login sessions, most recently used first. No
/// `current` flag: a token is not tied to a browser session, so none of them is "this one".
pub async fn sessions(State(app): State<AppState>, headers: HeaderMap) -> Response {
    answer(sessions_inner(&app, &headers).await)
}

async fn sessions_inner(app: &AppState, headers: &HeaderMap) -> Answer {
    let c = caller(app, headers).await?;
    let list = app
        .db
        .sessions_for_user(&c.user.user_id, app.clock.now())
        .await
        .map_err(|e| failed(e.into()))?;
    let rows: Vec<_> = list
        .iter()
        .map(|s| {
            // Labels from clef's own table only, never header text (crate::device).
            let d = device::parse(s.user_agent.as_deref().unwrap_or(""));
            json!({
                "handle": handle(app, &s.session_hash),
                "device": { "browser": d.browser, "os": d.os },
                "ip": s.ip,
                "last_seen": s.last_seen_at.max(s.created_at),
                "created": s.created_at,
            })
        })
        .collect();
    Ok(json_no_store(json!({ "sessions": rows })))
}

/// POST /account/api/sessions/{handle}/end: ends one of the user's sessions; needs a recent
/// login. A handle of another user's session is as unknown as a made-up one (404).
pub async fn session_end(
    State(app): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    presented: Result<Path<String>, PathRejection>,
) -> Response {
    answer(session_end_inner(&app, ip, &headers, presented).await)
}

async fn session_end_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, presented: Result<Path<String>, PathRejection>) -> Answer {
    let c = recent_caller(app, headers).await?;
    let not_found = || json_error_with_status(&OAuthError::invalid_request("no such session"), StatusCode::NOT_FOUND);
    // A handle that is not even valid path text names no session either.
    let presented = presented.map(|Path(h)| h).unwrap_or_default();
    let now = app.clock.now();
    let user_id = &c.user.user_id;
    let target = own_session(app, user_id, &presented, now)
        .await
        .map_err(|e| failed(e.into()))?
        .ok_or_else(not_found)?;
    let (ip, ua) = (ip.to_string(), user_agent(headers));
    let mail_loc = c.user.locale.clone().unwrap_or_else(|| locale(headers, None).to_owned());
    if !end_session(app, &c.user, &target.session_hash, &event(&ip, ua.as_deref()), &mail_loc, now)
        .await
        .map_err(|e| failed(e.into()))?
    {
        return Err(not_found());
    }
    tracing::info!(user_id = %user_id, "session ended through the account API");
    Ok(json_no_store(json!({ "ended": true })))
}
