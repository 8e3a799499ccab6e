//! axum only: extract, call the protocol code, render. No SQL, no protocol rules.

mod account;
mod account_api;
mod authorize;
pub mod client_ip;
mod cors;
mod discovery;
mod email_code;
mod error;
mod extract;
mod login;
mod logout;
mod password_reset;
mod reauth;
// dcr
mod registration;
mod steps;
mod token;
// fed
pub mod two_factor;
mod upstream;
mod userinfo;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::AppState;
use crate::paths;

pub use error::PageError;

pub fn router(state: AppState) -> Router {
    // The JSON endpoints a browser app calls from its own origin; the pages get no CORS.
    let cors_routes = Router::new()
        .route(paths::DISCOVERY, get(discovery::openid_configuration))
        .route(paths::AS_METADATA, get(discovery::openid_configuration))
        .route(paths::JWKS, get(discovery::jwks))
        .route(paths::TOKEN, axum::routing::post(token::post))
        .route(paths::REVOKE, axum::routing::post(token::revoke))
        .route(paths::INTROSPECT, axum::routing::post(token::introspect))
        .route(paths::USERINFO, get(userinfo::get).post(userinfo::post))
        .route(paths::ACCOUNT_API_STATUS, get(account_api::status))
        // dcr
        .route(paths::REGISTER, axum::routing::post(registration::register))
        .route(
            paths::REGISTER_CLIENT,
            get(registration::read).put(registration::update).delete(registration::delete),
        )
        .merge(account_api::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::layer));
    let pages = Router::new()
        .merge(cors_routes)
        .route(paths::AUTHORIZE, get(authorize::get).post(authorize::post))
        .route(paths::AUTHORIZE_RESUME, get(authorize::resume))
        .route(paths::LOGIN, get(login::login_get).post(login::login_post))
        .route(paths::LOGIN_CODE, axum::routing::post(email_code::send_post))
        .route(paths::LOGIN_CODE_VERIFY, axum::routing::post(email_code::verify_post))
        .route(paths::LOGIN_LINK, get(email_code::link_get))
        .route(paths::LOGIN_PASSWORD, axum::routing::post(login::password_post))
        .route(paths::LOGIN_TOTP, axum::routing::post(login::totp_post))
        .route(paths::LOGIN_BACKUP_CODE, axum::routing::post(login::backup_code_post))
        .route(
            paths::PASSWORD_FORGOT,
            get(password_reset::forgot_get).post(password_reset::forgot_post),
        )
        .route(paths::PASSWORD_RESET, axum::routing::post(password_reset::reset_post))
        .route(paths::SIGNUP, get(login::signup_get).post(login::signup_post))
        .route(paths::CONSENT, get(login::consent_get).post(login::consent_post))
        .route(paths::ACCOUNT, get(account::get))
        .route(paths::ACCOUNT_PASSWORD, axum::routing::post(account::password_post))
        .route(paths::ACCOUNT_EMAIL, axum::routing::post(account::email_post))
        .route(paths::ACCOUNT_EMAIL_VERIFY, axum::routing::post(account::email_verify_post))
        .route(paths::ACCOUNT_SESSION_END, axum::routing::post(account::session_end_post))
        .route(paths::ACCOUNT_SESSIONS_END, axum::routing::post(account::sessions_end_post))
        .route(paths::END_SESSION, get(logout::get).post(logout::post))
        .route(paths::HEALTHZ, get(|| async { "ok" }))
        .route(paths::READYZ, get(discovery::readyz))
        .merge(two_factor::routes())
        .merge(reauth::routes())
        // fed
        .merge(upstream::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::refuse_control_in_query,
        ))
        .layer(axum::middleware::map_response(close_after_refused_body));
    // ops: the public listener serves /metrics only when asked (CLEF_METRICS=public); the
    // figures (user counts, login rates) are for the operator, not for every visitor.
    let pages = if state.config.metrics_public {
        pages.route(paths::METRICS, get(crate::telemetry::metrics_get))
    } else {
        pages
    };
    // Only an http issuer behind trusted proxies can learn from a header that the browser
    // used https; otherwise the layer would do nothing on every request.
    let pages = if !state.config.issuer_is_https && !state.config.trusted_proxies.is_empty() {
        pages.layer(axum::middleware::from_fn_with_state(state.clone(), client_ip::secure_cookies))
    } else {
        pages
    };
    pages
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Under `no-referrer` browsers send `Origin: null` on our own form posts and on the
        // form_post auto-submit (WHATWG Fetch, "append a request `Origin` header"); this policy
        // sends our origin with them and never a path or query to another site.
        .layer(header_layer(header::REFERRER_POLICY, "strict-origin-when-cross-origin"))
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ))
        // ops: outermost, so the request id's span and the latency cover every other layer.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::telemetry::layer))
        .with_state(state)
}

/// A body refused for its size was never read, so the bytes left on the wire make the
/// connection unusable: say so, or a client may send its next request down it.
async fn close_after_refused_body(mut resp: axum::response::Response) -> axum::response::Response {
    if resp.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Security headers are set in this one place; a handler that needs another value (the
/// form_post page's script nonce) sets its own and this layer leaves it alone.
fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
