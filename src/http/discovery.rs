//! Discovery (OIDC Discovery 1.0 §4, RFC 8414 §3), JWKS (RFC 7517) and readiness.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

fn json_bytes(body: &str, cache: &'static str) -> Response {
    let mut resp = body.to_owned().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

pub async fn openid_configuration(State(app): State<AppState>) -> Response {
    json_bytes(&app.discovery_json, "public, max-age=3600")
}

pub async fn jwks(State(app): State<AppState>) -> Response {
    // Short cache: relying parties must see a rotated key within minutes.
    json_bytes(&app.keys.get().jwks_json, "public, max-age=300")
}

/// A probe wants its answer fast: a second at most, whatever the pool's acquire timeout.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn readyz(State(app): State<AppState>) -> Response {
    match app.db.ping_within(READY_WITHIN).await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let mut resp = (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(super::error::RETRY_AFTER_SECS));
            resp
        }
    }
}
