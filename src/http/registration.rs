//! POST /register (RFC 7591 §3) and the client configuration endpoint (RFC 7592 §2):
//! GET, PUT and DELETE /register/{client_id} with the registration access token.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::{json_error, json_error_with_status};
use super::extract::MAX_BODY;
use super::userinfo::{bearer, challenge};
use crate::app::AppState;
use crate::config::Registration;
use crate::oauth::registration::{ValidMetadata, client_information, sector, validate};
use crate::oauth::{ErrorCode, OAuthError};
use crate::secret::{ct_eq, random_token, sha256_b64};
use crate::store::{Client, NewClient};

fn bad_token() -> Response {
    challenge(
        Some(&OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token is missing, invalid or revoked",
        )),
        &[],
    )
}

fn no_store(status: StatusCode, v: &Value) -> Response {
    let mut resp = (status, Json(v)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The JSON document of a registration request (RFC 7591 §3.1).
async fn json_body(headers: &HeaderMap, body: Body) -> Result<Value, Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        json_error_with_status(
            &OAuthError::invalid_request("request body too large"),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    })?;
    if !is_json {
        return Err(json_error(&OAuthError::invalid_request("the body must be application/json")));
    }
    serde_json::from_slice(&bytes).map_err(|_| {
        json_error(&OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "the body is not a JSON document",
        ))
    })
}

/// Validates the metadata and works out the pairwise sector, fetching the
/// `sector_identifier_uri` when one is given (OIDC Registration §2: its list is checked even
/// for a public client).
async fn checked(app: &AppState, doc: &Value) -> Result<ValidMetadata, OAuthError> {
    let fetcher = &app.fetcher;
    let mut v = validate(doc, &|u| fetcher.check_fetchable(u).is_ok())?;
    let listed = match &v.meta.sector_identifier_uri {
        Some(uri) => Some(fetcher.json(uri).await.map_err(|e| {
            tracing::info!(error = %e, "sector_identifier_uri refused");
            OAuthError::new(ErrorCode::InvalidClientMetadata, e.to_string())
        })?),
        None => None,
    };
    if v.meta.sector_identifier_uri.is_some() || v.meta.is_pairwise() {
        let s = sector(&v, listed.as_ref())?;
        if v.meta.is_pairwise() {
            v.meta.sector = Some(s);
        }
    }
    Ok(v)
}

fn client_uri(app: &AppState, client_id: &str) -> String {
    format!("{}{}/{client_id}", app.config.issuer, crate::paths::REGISTER)
}

/// The row for `v`, with a secret when the method needs one. `client_secret_jwt` also keeps
/// the secret sealed (secret_box): an HS256 assertion is checked with the secret itself,
/// which its hash cannot stand in for (RFC 7523 §2.2, RFC 7518 §3.2).
fn new_client(app: &AppState, client_id: &str, v: &ValidMetadata, secret: Option<&str>) -> Result<NewClient, OAuthError> {
    let secret_sealed = match (v.auth_method.as_str(), secret) {
        ("client_secret_jwt", Some(s)) => {
            Some(crate::secret_box::seal(&app.hmac_key, client_id.as_bytes(), s.as_bytes()).map_err(OAuthError::internal)?)
        }
        _ => None,
    };
    Ok(NewClient {
        client_id: client_id.to_owned(),
        secret_hash: secret.map(sha256_b64),
        name: v.name(client_id),
        redirect_uris: v.redirect_uris.clone(),
        post_logout_redirect_uris: v.post_logout_redirect_uris.clone(),
        grant_types: v.grant_types.clone(),
        is_public: v.is_public(),
        // A dynamically registered client is a third party: the user always consents.
        skip_consent: false,
        id_token_alg: v.id_token_alg.clone(),
        require_2fa: false,
        allowed_origins: vec![],
        meta: v.meta.clone(),
        registration_token_hash: None,
        secret_sealed,
        backchannel_logout_uri: v.backchannel_logout_uri.clone(),
        backchannel_logout_session_required: v.backchannel_logout_session_required,
        // client_credentials is not offered at registration, so no API scopes or resources;
        // access tokens stay RS256 (id_token_signed_response_alg is for ID tokens only).
        scopes: vec![],
        resources: vec![],
        access_token_alg: "RS256".into(),
    })
}

pub async fn register(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    // RFC 7591 §3: the initial access token, when one is required, is a Bearer token.
    let presented = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return challenge(Some(&e), &[]),
    };
    match &app.config.registration {
        Registration::Off => {
            return json_error_with_status(
                &OAuthError::invalid_request("dynamic client registration is not enabled"),
                StatusCode::NOT_FOUND,
            );
        }
        Registration::Open => {}
        Registration::Token(expected) => {
            if !presented.is_some_and(|p| ct_eq(&p, expected.expose())) {
                tracing::info!("registration refused: missing or wrong initial access token");
                return bad_token();
            }
        }
    }
    let doc = match json_body(&headers, body).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let v = match checked(&app, &doc).await {
        Ok(v) => v,
        Err(e) => return json_error(&e),
    };
    let client_id = random_token(16);
    let secret = (!v.is_public()).then(|| random_token(32));
    let token = random_token(32);
    let mut row = match new_client(&app, &client_id, &v, secret.as_deref()) {
        Ok(r) => r,
        Err(e) => return json_error(&e),
    };
    row.registration_token_hash = Some(sha256_b64(&token));
    let now = app.clock.now();
    if let Err(e) = app.db.client_create(&row, now).await {
        return json_error(&e.into());
    }
    let client = match app.db.client_get(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return json_error(&OAuthError::internal("registered client vanished")),
        Err(e) => return json_error(&e.into()),
    };
    tracing::info!(client_id = %client_id, method = %v.auth_method, "client registered");
    let info = client_information(&client, secret.as_deref(), Some(&token), &client_uri(&app, &client_id));
    let mut resp = no_store(StatusCode::CREATED, &info);
    if let Ok(loc) = HeaderValue::from_str(&client_uri(&app, &client_id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

/// RFC 7592 §2: the registration access token of this very client, or 401 — also for an
/// unknown client, so the endpoint tells nothing to a caller without the token.
async fn managed(app: &AppState, headers: &HeaderMap, client_id: &str) -> Result<Client, Response> {
    let token = match bearer(headers) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(challenge(None, &[])),
        Err(e) => return Err(challenge(Some(&e), &[])),
    };
    let client = app.db.client_get(client_id).await.map_err(|e| json_error(&e.into()))?;
    match client {
        Some(c) if c.registration_token_hash.as_deref().is_some_and(|h| ct_eq(&sha256_b64(&token), h)) => Ok(c),
        _ => Err(bad_token()),
    }
}

pub async fn read(State(app): State<AppState>, Path(client_id): Path<String>, headers: HeaderMap) -> Response {
    match managed(&app, &headers, &client_id).await {
        Ok(c) => no_store(StatusCode::OK, &client_information(&c, None, None, &client_uri(&app, &client_id))),
        Err(resp) => resp,
    }
}

pub async fn update(State(app): State<AppState>, Path(client_id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let current = match managed(&app, &headers, &client_id).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let doc = match json_body(&headers, body).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    // RFC 7592 §2.2: the body names the client, and a secret it carries must be the current one.
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id.as_str()) {
        return json_error(&OAuthError::invalid_request("client_id must be included and match this client"));
    }
    if let Some(s) = doc.get("client_secret") {
        let matches = s
            .as_str()
            .zip(current.secret_hash.as_deref())
            .is_some_and(|(s, h)| ct_eq(&sha256_b64(s), h));
        if !matches {
            return json_error(&OAuthError::invalid_request("client_secret does not match the current secret"));
        }
    }
    let v = match checked(&app, &doc).await {
        Ok(v) => v,
        Err(e) => return json_error(&e),
    };
    // OIDC Core §8.1: a new sector would give every user a new sub at this client.
    if current.meta.is_pairwise() && current.meta.sector != v.meta.sector {
        return json_error(&OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "the pairwise sector of a client cannot change; register a new client",
        ));
    }
    // The secret stays unless the method changes what it needs: none drops it, and a method
    // that needs one the client lacks (or the sealed copy client_secret_jwt reads) gets a new one.
    let needs_sealed = v.auth_method == "client_secret_jwt";
    let new_secret = match (v.is_public(), &current.secret_hash) {
        (true, _) => None,
        (false, None) => Some(random_token(32)),
        (false, Some(_)) if needs_sealed && current.secret_sealed.is_none() => Some(random_token(32)),
        (false, Some(_)) => None,
    };
    let mut row = match new_client(&app, &client_id, &v, new_secret.as_deref()) {
        Ok(r) => r,
        Err(e) => return json_error(&e),
    };
    if new_secret.is_none() && !v.is_public() {
        row.secret_hash = current.secret_hash.clone();
        row.secret_sealed = if needs_sealed { current.secret_sealed.clone() } else { None };
    }
    if let Err(e) = app.db.client_update(&row).await {
        return json_error(&e.into());
    }
    let client = match app.db.client_get(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return bad_token(),
        Err(e) => return json_error(&e.into()),
    };
    tracing::info!(client_id = %client_id, "client registration updated");
    no_store(
        StatusCode::OK,
        &client_information(&client, new_secret.as_deref(), None, &client_uri(&app, &client_id)),
    )
}

pub async fn delete(State(app): State<AppState>, Path(client_id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = managed(&app, &headers, &client_id).await {
        return resp;
    }
    match app.db.client_delete(&client_id).await {
        Ok(()) => {
            tracing::info!(client_id = %client_id, "client deregistered");
            // RFC 7592 §2.3.
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => json_error(&e.into()),
    }
}
