//! Protocol errors as responses: JSON for back-channel endpoints, a redirect to a validated
//! client, or a translated HTML page when the redirect URI cannot be trusted.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::app::AppState;
use crate::oauth::{ErrorCode, OAuthError};
use crate::paths;

/// RFC 6749 §5.2 statuses, one arm per code so a new code cannot fall through silently.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken | ErrorCode::InsufficientUserAuthentication => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidGrant
        | ErrorCode::UnauthorizedClient
        | ErrorCode::UnsupportedGrantType
        | ErrorCode::UnsupportedResponseType
        | ErrorCode::UnsupportedTokenType
        | ErrorCode::InvalidScope
        | ErrorCode::AccessDenied
        | ErrorCode::LoginRequired
        | ErrorCode::ConsentRequired
        | ErrorCode::InteractionRequired
        | ErrorCode::RequestNotSupported
        | ErrorCode::RequestUriNotSupported
        | ErrorCode::InvalidTarget
        | ErrorCode::InvalidRedirectUri
        | ErrorCode::InvalidClientMetadata
        | ErrorCode::InvalidRequestObject
        | ErrorCode::InvalidRequestUri => StatusCode::BAD_REQUEST,
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    error: &'static str,
    error_description: &'a str,
}

/// `{"error", "error_description"}` with `no-store`; `invalid_client` adds the challenge.
pub fn json_error(err: &OAuthError) -> Response {
    json_error_with_status(err, status_of(err.code))
}

/// What a 503 asks clients to wait before trying again (RFC 9110 §10.2.3).
pub const RETRY_AFTER_SECS: &str = "5";

pub fn json_error_with_status(err: &OAuthError, status: StatusCode) -> Response {
    let mut resp = (
        status,
        Json(Body {
            error: err.code.as_str(),
            error_description: &err.description,
        }),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if err.code == ErrorCode::InvalidClient {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"clef\", charset=\"UTF-8\""),
        );
    }
    if err.code == ErrorCode::TemporarilyUnavailable {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    resp
}

/// A page-level failure, rendered in the user's language.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: &'static str,
    pub detail: Option<String>,
    /// The authorization request the page served, for a way back into it.
    pub req: Option<String>,
}

impl PageError {
    pub fn new(status: StatusCode, message: &'static str) -> PageError {
        PageError {
            status,
            message,
            detail: None,
            req: None,
        }
    }

    /// Ties the error to a live authorization request: its page links back into the flow.
    pub fn in_flow(mut self, req: Option<&str>) -> PageError {
        self.req = req.filter(|r| !r.is_empty()).map(str::to_owned);
        self
    }
    pub fn internal(err: impl std::fmt::Display) -> PageError {
        let reference = crate::oauth::error::log_internal(err);
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "error.internal",
            detail: Some(format!("[REF:{reference}]")),
            req: None,
        }
    }

    /// The database is away: a 503 page with Retry-After, logged as a warning, not a bug.
    pub fn unavailable(err: impl std::fmt::Display) -> PageError {
        tracing::warn!(error = %err, "database unavailable; answering 503");
        PageError::new(StatusCode::SERVICE_UNAVAILABLE, "error.unavailable")
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            PageError::unavailable(e)
        } else {
            PageError::internal(e)
        }
    }
}

impl From<crate::auth::AuthError> for PageError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Store(s) => PageError::from(s),
            other => PageError::internal(other),
        }
    }
}

#[derive(serde::Serialize)]
struct ErrorPage<'a> {
    locale: &'a str,
    message: &'a str,
    detail: Option<&'a str>,
    /// `detail` is a URL of ours to show as a link (the issuer's sign-in page).
    detail_link: bool,
    /// Ways forward, the first one the main button.
    links: Vec<Link>,
}

#[derive(serde::Serialize)]
struct Link {
    href: String,
    label: &'static str,
}

fn link(href: impl Into<String>, label: &'static str) -> Link {
    Link { href: href.into(), label }
}

/// Every error page ends with a way forward. Only our own pages are linked: a client's
/// redirect URI is never trusted here, since these pages show exactly when it was not
/// validated (RFC 6749 §4.1.2.1) or when the request it belonged to is gone.
fn ways_forward(e: &PageError) -> Vec<Link> {
    let login = match &e.req {
        Some(r) => format!("{}?req={}", paths::LOGIN, urlencode(r)),
        None => paths::LOGIN.to_owned(),
    };
    match e.message {
        "error.wrong_address" => vec![link(e.detail.clone().unwrap_or(login), "error.open_login_here")],
        "code.link_invalid" | "code.expired" => vec![link(login, "error.new_code")],
        "login.attempt_over" | "login.too_many_failures" => vec![link(login, "error.start_again")],
        // The dead end of a passwordless account at a two-factor client: choosing a password
        // is the way out, so it comes first.
        "login.no_second_factor" => {
            let forgot = match &e.req {
                Some(r) => format!("{}?req={}", paths::PASSWORD_FORGOT, urlencode(r)),
                None => paths::PASSWORD_FORGOT.to_owned(),
            };
            vec![link(forgot, "login.forgot"), link(paths::ACCOUNT, "error.to_account")]
        }
        "error.request_expired"
        | "error.missing_client_id"
        | "error.unknown_client"
        | "error.missing_redirect_uri"
        | "error.redirect_uri_mismatch"
        | "error.repeated_parameter" => vec![link(paths::LOGIN, "error.start_again"), link(paths::ACCOUNT, "error.to_account")],
        "error.logout_redirect" => vec![link(paths::ACCOUNT, "error.to_account")],
        "error.internal" | "signup.try_again" => vec![link(login, "error.try_again")],
        _ => vec![link(login, "error.to_login"), link(paths::ACCOUNT, "error.to_account")],
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn render_page_error(app: &AppState, locale: &str, e: &PageError) -> Response {
    let html = app
        .pages
        .render(
            "error.html",
            &ErrorPage {
                locale,
                message: e.message,
                detail: e.detail.as_deref(),
                detail_link: e.message == "error.wrong_address" && e.detail.is_some(),
                links: ways_forward(e),
            },
        )
        .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p><p><a href=\"/login\">Sign in</a></p>".to_owned());
    let mut resp = no_store((e.status, Html(html)).into_response());
    if e.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    resp
}

/// A page handler's result, with its error shown as a page.
pub fn page_or_error(app: &AppState, headers: &axum::http::HeaderMap, result: Result<Response, PageError>) -> Response {
    result.unwrap_or_else(|e| render_page_error(app, super::extract::locale(headers, None), &e))
}

pub fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub async fn not_found(axum::extract::State(app): axum::extract::State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let locale = super::extract::locale(&headers, None);
    render_page_error(&app, locale, &PageError::new(StatusCode::NOT_FOUND, "error.not_found"))
}
