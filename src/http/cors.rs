//! CORS for browser apps on the JSON endpoints (WHATWG Fetch §3.2): discovery, JWKS, token,
//! userinfo, revocation and introspection. Never on the HTML pages.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::oauth::origin;

/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// Echoes an allowed `Origin` in `Access-Control-Allow-Origin`, answers preflights, and
/// never allows credentials: these endpoints take tokens, not cookies.
pub async fn layer(State(app): State<AppState>, req: Request, next: Next) -> Response {
    // No `Origin`, no lookup: the discovery and JWKS hot path stays free of queries.
    let Some(raw) = req.headers().get(header::ORIGIN) else {
        return vary(next.run(req).await);
    };
    // An origin is short; a long header is not one and costs no lookup.
    let allowed = match raw.to_str().ok().filter(|o| o.len() <= 256).and_then(origin::parse) {
        Some(o) => match app.db.origin_allowed(&o).await {
            Ok(true) => HeaderValue::from_str(&o).ok(),
            Ok(false) => None,
            Err(e) => {
                // The endpoint itself will report the outage; CORS just says no.
                tracing::warn!(error = %e, "CORS origin lookup failed");
                None
            }
        },
        None => None,
    };
    if allowed.is_none() {
        tracing::debug!("CORS: origin not registered for any client");
    }
    let preflight = req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        if let Some(o) = allowed {
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
        }
        let h = resp.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Method"));
        h.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
        return vary(resp);
    }
    let mut resp = next.run(req).await;
    if let Some(o) = allowed {
        expose(resp.headers_mut(), o);
    }
    vary(resp)
}

fn expose(h: &mut HeaderMap, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    // userinfo's `Bearer error="invalid_token"` challenge is how an app learns to refresh.
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("WWW-Authenticate"));
}

/// The answer depends on `Origin`, so shared caches must key on it, with or without one.
fn vary(mut resp: Response) -> Response {
    resp.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    resp
}
