//! POST /token (RFC 6749 §3.2), /revoke (RFC 7009) and /introspect (RFC 7662).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{json_error, json_error_with_status};
use super::extract::{BodyError, form};
use crate::app::AppState;
use crate::oauth::authorize::Params;
use crate::oauth::client_auth;
use crate::oauth::token::{Ctx, exchange};
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::Client;

fn body_error(e: BodyError) -> Response {
    match e {
        BodyError::TooLarge => json_error_with_status(
            &OAuthError::invalid_request("request body too large"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        BodyError::NotForm => json_error(&OAuthError::invalid_request("body must be application/x-www-form-urlencoded")),
        BodyError::ControlChar => json_error(&OAuthError::invalid_request("a parameter holds a control character")),
    }
}

/// Reads the form and authenticates the client; the error is the response to send.
async fn authenticated(app: &AppState, headers: &HeaderMap, body: Body) -> Result<(Client, Params), Response> {
    let pairs = form(headers, body).await.map_err(body_error)?;
    let params = Params::from_pairs(pairs);
    let basic = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(h) => Some(client_auth::parse_basic(h).map_err(|e| json_error(&e))?),
        None => None,
    };
    if params.is_repeated("client_id") || params.is_repeated("client_secret") {
        return Err(json_error(&OAuthError::invalid_request("client credentials are repeated")));
    }
    let presented = client_auth::presented(basic, params.get("client_id"), params.get("client_secret")).map_err(|e| json_error(&e))?;
    let client = app.db.client_get(presented.client_id()).await.map_err(|e| json_error(&e.into()))?;
    client_auth::authenticate(client.as_ref(), &presented).map_err(|e| {
        // `?`: the id is the caller's raw input, so it is logged escaped, never as is.
        tracing::info!(client_id = ?presented.client_id(), basic = presented.used_basic(), "client authentication failed");
        json_error(&e)
    })?;
    match client {
        Some(c) => Ok((c, params)),
        None => Err(json_error(&OAuthError::invalid_client("client authentication failed"))),
    }
}

fn no_store_json<T: serde::Serialize>(value: &T) -> Response {
    let mut resp = Json(value).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

pub async fn post(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (client, params) = match authenticated(&app, &headers, body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let keys = app.keys.get();
    let ctx = Ctx {
        db: &app.db,
        keys: &keys,
        config: &app.config,
    };
    match exchange(&ctx, &client, &params, app.clock.now()).await {
        Ok(tokens) => no_store_json(&tokens),
        Err(e) => json_error(&e),
    }
}

pub async fn revoke(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (client, params) = match authenticated(&app, &headers, body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if let Err(e) = params.reject_repeated() {
        return json_error(&e);
    }
    let Some(token) = params.get("token") else {
        return json_error(&OAuthError::invalid_request("token is required"));
    };
    match crate::oauth::introspect::revoke(&app.db, &client, token).await {
        // RFC 7009 §2.2: 200 whether or not the token was known.
        Ok(()) => no_store_json(&serde_json::json!({})),
        Err(e) => json_error(&e),
    }
}

pub async fn introspect(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (client, params) = match authenticated(&app, &headers, body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    // RFC 7662 §2.1: only authenticated callers; a public client proves nothing.
    if client.is_public {
        return json_error(&OAuthError::new(ErrorCode::UnauthorizedClient, "public clients may not introspect"));
    }
    if let Err(e) = params.reject_repeated() {
        return json_error(&e);
    }
    let Some(token) = params.get("token") else {
        return json_error(&OAuthError::invalid_request("token is required"));
    };
    match crate::oauth::introspect::introspect(&app.db, &app.keys, &app.config.issuer, &client, token, app.clock.now()).await {
        Ok(v) => no_store_json(&v),
        Err(e) => json_error(&e),
    }
}
