//! GET/POST /userinfo (OIDC Core §5.3), bearer token per RFC 6750.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::{BodyError, form};
use crate::app::AppState;
use crate::keys::Alg;
use crate::oauth::claims::{UserClaims, UserinfoClaims};
use crate::oauth::introspect::live_access_token;
use crate::oauth::{ErrorCode, OAuthError};

/// RFC 6750 §3: the challenge carries the error; with no credentials at all, no error code.
/// `extra` adds auth-params such as `scope` (RFC 6750 §3.1) or `max_age` (RFC 9470 §3).
pub(super) fn challenge(err: Option<&OAuthError>, extra: &[(&str, String)]) -> Response {
    let (status, mut value) = match err {
        None => (StatusCode::UNAUTHORIZED, "Bearer realm=\"clef\"".to_owned()),
        Some(e) => {
            let desc = e.description.replace(['"', '\\'], "'");
            (
                super::error::status_of(e.code),
                format!("Bearer realm=\"clef\", error=\"{}\", error_description=\"{desc}\"", e.code.as_str()),
            )
        }
    };
    for (k, v) in extra {
        value.push_str(&format!(", {k}=\"{}\"", v.replace(['"', '\\'], "'")));
    }
    let mut resp = match err {
        // The body repeats the error for clients that read JSON rather than the header.
        Some(e) => (
            status,
            Json(serde_json::json!({ "error": e.code.as_str(), "error_description": e.description })),
        )
            .into_response(),
        None => status.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(super) fn bearer(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(h)) => match h.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
            _ => Err(OAuthError::new(ErrorCode::InvalidRequest, "malformed Authorization header")),
        },
        Some(Err(_)) => Err(OAuthError::new(ErrorCode::InvalidRequest, "malformed Authorization header")),
    }
}

async fn answer(app: &AppState, token: Option<String>) -> Response {
    let Some(token) = token else { return challenge(None, &[]) };
    let live = match live_access_token(&app.db, &token, app.clock.now()).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return challenge(
                Some(&OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the access token is invalid, expired or revoked",
                )),
                &[],
            );
        }
        Err(e) => return super::error::json_error(&e),
    };
    // dcr: the client decides the subject (pairwise) and whether the answer is a JWT.
    let client = match app.db.client_get(&live.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return challenge(
                Some(&OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the access token's client no longer exists",
                )),
                &[],
            );
        }
        Err(e) => return super::error::json_error(&e.into()),
    };
    let sub = match crate::oauth::pairwise::subject(&app.db, &app.hmac_key, &client, &live.user.user_id).await {
        Ok(s) => s,
        Err(e) => return super::error::json_error(&e),
    };
    // reqobj: claims the grant asked for by name at userinfo (OIDC Core §5.5).
    let named = match app.db.access_token_claims(&crate::secret::sha256_b64(&token)).await {
        Ok(c) => crate::oauth::token::claims_request(c.as_deref()).userinfo,
        Err(e) => return super::error::json_error(&e.into()),
    };
    let body = UserinfoClaims {
        sub,
        user: UserClaims::for_request(&live.user, &live.scope, &named),
    };
    if let Some(alg) = client.meta.userinfo_signed_response_alg.as_deref().and_then(Alg::parse) {
        return signed(app, &client.client_id, alg, &body);
    }
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(serde::Serialize)]
struct SignedUserinfo<'a> {
    iss: &'a str,
    aud: &'a str,
    #[serde(flatten)]
    claims: &'a UserinfoClaims,
}

/// OIDC Core §5.3.2: a signed answer is `application/jwt` and carries `iss` and `aud`.
fn signed(app: &AppState, client_id: &str, alg: Alg, body: &UserinfoClaims) -> Response {
    let claims = SignedUserinfo {
        iss: &app.config.issuer,
        aud: client_id,
        claims: body,
    };
    match app.keys.get().sign(alg, "JWT", &claims) {
        Ok(jwt) => {
            let mut resp = jwt.into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwt"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => super::error::json_error(&e.into()),
    }
}

pub async fn get(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match bearer(&headers) {
        Ok(t) => answer(&app, t).await,
        Err(e) => challenge(Some(&e), &[]),
    }
}

pub async fn post(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let header_token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return challenge(Some(&e), &[]),
    };
    // RFC 6750 §2.2: the form-encoded body may carry the token instead of the header.
    let body_token = if headers.contains_key(header::CONTENT_TYPE) {
        match form(&headers, body).await {
            Ok(pairs) => {
                let found: Vec<&str> = pairs.iter().filter(|(k, _)| k == "access_token").map(|(_, v)| v.as_str()).collect();
                if found.len() > 1 {
                    return challenge(Some(&OAuthError::invalid_request("access_token is repeated")), &[]);
                }
                found.first().map(|s| (*s).to_owned())
            }
            Err(BodyError::TooLarge) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
            Err(BodyError::NotForm) => None,
            Err(BodyError::ControlChar) => {
                return challenge(Some(&OAuthError::invalid_request("a parameter holds a control character")), &[]);
            }
        }
    } else {
        None
    };
    match (header_token, body_token) {
        // RFC 6750 §2: one method per request.
        (Some(_), Some(_)) => challenge(Some(&OAuthError::invalid_request("send the token in one place only")), &[]),
        (h, b) => answer(&app, h.or(b)).await,
    }
}
