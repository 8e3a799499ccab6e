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
    if ["client_id", "client_secret", "client_assertion", "client_assertion_type"]
        .iter()
        .any(|p| params.is_repeated(p))
    {
        return Err(json_error(&OAuthError::invalid_request("client credentials are repeated")));
    }
    let presented = match params.get("client_assertion") {
        Some(assertion) => jwt_presented(basic.is_some(), &params, assertion).map_err(|e| json_error(&e))?,
        None => client_auth::presented(basic, params.get("client_id"), params.get("client_secret")).map_err(|e| json_error(&e))?,
    };
    let client = app.db.client_get(presented.client_id()).await.map_err(|e| json_error(&e.into()))?;
    let checked = match client_auth::authenticate(client.as_ref(), &presented) {
        Ok(()) => match (&presented, &client) {
            (client_auth::Presented::Jwt { assertion, .. }, Some(c)) => check_assertion(app, c, assertion).await,
            _ => Ok(()),
        },
        Err(e) => Err(e),
    };
    checked.map_err(|e| {
        // `?`: the id is the caller's raw input, so it is logged escaped, never as is.
        tracing::info!(client_id = ?presented.client_id(), basic = presented.used_basic(), reason = %e.description, "client authentication failed");
        crate::telemetry::refused("client_auth");
        json_error(&e)
    })?;
    match client {
        Some(c) => Ok((c, params)),
        None => Err(json_error(&OAuthError::invalid_client("client authentication failed"))),
    }
}

// dcr
/// RFC 7521 §4.2: `client_assertion` with its type, and no other credential beside it.
fn jwt_presented(basic: bool, params: &Params, assertion: &str) -> Result<client_auth::Presented, OAuthError> {
    if basic || params.get("client_secret").is_some() {
        return Err(OAuthError::invalid_request("use one client authentication method, not several"));
    }
    if params.get("client_assertion_type") != Some(client_auth::ASSERTION_TYPE) {
        return Err(OAuthError::invalid_client("client_assertion_type is missing or not supported"));
    }
    let client_id = client_auth::assertion_client_id(assertion)?;
    // RFC 7521 §4.2: a client_id beside the assertion must name the same client.
    if params.get("client_id").is_some_and(|id| id != client_id) {
        return Err(OAuthError::invalid_client("client_id differs from the assertion's subject"));
    }
    Ok(client_auth::Presented::Jwt {
        client_id,
        assertion: assertion.to_owned(),
    })
}

/// Verifies a client assertion with the client's secret or keys (its `jwks_uri` fetched again
/// once for an unknown key), then records its `jti`: a second use is refused.
async fn check_assertion(app: &AppState, client: &Client, assertion: &str) -> Result<(), OAuthError> {
    use client_auth::{AssertionError, AssertionKey, verify_assertion};
    let now = app.clock.now();
    let token_endpoint = app.config.endpoint(crate::paths::TOKEN);
    let audiences = [token_endpoint.as_str(), app.config.issuer.as_str()];
    let method = client.meta.token_endpoint_auth_method.as_deref();
    let verified = if method == Some("client_secret_jwt") {
        let sealed = client
            .secret_sealed
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
        let secret = crate::secret_box::open(&app.hmac_key, client.client_id.as_bytes(), sealed).map_err(OAuthError::internal)?;
        verify_assertion(client, assertion, AssertionKey::Secret(&secret), &audiences, now)?
    } else if let Some(doc) = &client.meta.jwks {
        let keys = crate::oauth::jose::parse_jwks(doc).map_err(OAuthError::internal)?;
        verify_assertion(client, assertion, AssertionKey::Keys(&keys), &audiences, now)?
    } else if let Some(uri) = &client.meta.jwks_uri {
        let fetch = |again| async move {
            app.fetcher.jwks(uri, again, now).await.map_err(|e| {
                tracing::info!(client_id = %client.client_id, error = %e, "client jwks_uri unusable");
                OAuthError::invalid_client("the client's jwks_uri could not be used")
            })
        };
        let keys = fetch(false).await?;
        match verify_assertion(client, assertion, AssertionKey::Keys(&keys), &audiences, now) {
            // The client may have rotated its keys since we cached them.
            Err(AssertionError::UnknownKey) => {
                let keys = fetch(true).await?;
                verify_assertion(client, assertion, AssertionKey::Keys(&keys), &audiences, now)?
            }
            other => other?,
        }
    } else {
        return Err(OAuthError::invalid_client("client authentication failed"));
    };
    if !app
        .db
        .client_assertion_jti_use(&client.client_id, &verified.jti, verified.exp)
        .await?
    {
        return Err(OAuthError::invalid_client("client_assertion was already used (jti replay)"));
    }
    Ok(())
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
        secrets: &app.hmac_key,
    };
    match exchange(&ctx, &client, &params, app.clock.now()).await {
        Ok(tokens) => {
            crate::telemetry::token_issued(params.get("grant_type").unwrap_or(""));
            no_store_json(&tokens)
        }
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
    match crate::oauth::introspect::introspect(&app.db, &app.hmac_key, &app.config.issuer, &client, token, app.clock.now()).await {
        Ok(v) => no_store_json(&v),
        Err(e) => json_error(&e),
    }
}
