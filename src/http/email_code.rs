//! Passwordless login and the second step by emailed code: send, check, and the magic link.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::client_ip::ClientIp;
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, browser_hash, field, locale};
use super::login::{Step, read_form, read_step};
use super::steps::{self, Who};
use crate::app::AppState;
use crate::auth::attempt::Purpose;
use crate::auth::engine;
use crate::auth::methods::email_code::EmailCode;
use crate::paths;
use crate::secret::Secret;

fn back_url(req: &str) -> String {
    if req.is_empty() {
        paths::LOGIN.to_owned()
    } else {
        format!("{}?req={req}", paths::LOGIN)
    }
}

#[derive(Serialize)]
struct LimitedPage<'a> {
    locale: &'a str,
    message: &'a str,
    minutes: i64,
    back_url: String,
}

/// 429 with a page that says when to try again.
pub fn render_limited(app: &AppState, loc: &str, message: &str, retry_after: i64, req: &str) -> Response {
    let ctx = LimitedPage {
        locale: loc,
        message,
        minutes: (retry_after + 59) / 60,
        back_url: back_url(req),
    };
    let mut resp = match app.pages.render("limited.html", &ctx) {
        Ok(html) => no_store((StatusCode::TOO_MANY_REQUESTS, Html(html)).into_response()),
        Err(e) => return render_page_error(app, loc, &PageError::internal(e)),
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    resp
}

/// Starts an attempt for the typed address and mails its code (`/login/code`, `/password/forgot`).
pub(super) async fn send_code(
    app: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    jar: CookieJar,
    body: Body,
    purpose: Purpose,
) -> Result<Response, PageError> {
    let Step { req, loc, email, .. } = read_step(app, headers, &jar, body).await?;
    if email.is_empty() || email.len() > 254 {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "signup.invalid_email").in_flow(Some(&req)));
    }
    let (jar, browser) = browser_hash(app, jar);
    let live = steps::new_attempt(app, &req, purpose, &email, &browser).await?;
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::begin::<EmailCode>(&steps::deps(app), who.caller(), live, app.clock.now()).await?;
    steps::render(app, jar, &who, step).await
}

/// POST /login/code — "email me a code". The answer is the same whether or not the address
/// has an account, and so is the work: a code row is written either way.
pub async fn send_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, send_code(&app, ip, &headers, jar, body, Purpose::Login).await)
}

/// POST /login/code/verify — a typed code, for whatever the attempt waits for: a passwordless
/// login, a new account's address, or the second step. The attempt says which, not the form.
pub async fn verify_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, verify_inner(&app, ip, &headers, jar, body).await)
}

async fn verify_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let (jar, browser) = browser_hash(app, jar);
    let live = steps::posted_attempt(app, &pairs, &browser, "code.expired").await?;
    let loc = steps::attempt_locale(app, headers, &live).await;
    let code = field(&pairs, "code").unwrap_or("");
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::submit::<EmailCode>(&steps::deps(app), who.caller(), live, Secret::new(code), app.clock.now()).await?;
    steps::render(app, jar, &who, step).await
}

/// GET /login/link?token=… — the magic link; single use, and only in the browser that asked.
pub async fn link_get(State(app): State<AppState>, ip: ClientIp, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let loc = locale(&headers, None);
    let pairs = extract::parse(q.unwrap_or_default().as_bytes());
    let token = field(&pairs, "token").unwrap_or("");
    let (jar, browser) = browser_hash(&app, jar);
    let who = Who::new(ip, &headers, browser, loc);
    let result = async {
        let invalid = || PageError::new(StatusCode::BAD_REQUEST, "code.link_invalid");
        if token.is_empty() || token.len() > 128 {
            return Err(invalid());
        }
        let step = engine::link(&steps::deps(&app), who.caller(), Secret::new(token), app.clock.now())
            .await?
            .ok_or_else(invalid)?;
        steps::render(&app, jar, &who, step).await
    }
    .await;
    result.unwrap_or_else(|e| render_page_error(&app, loc, &e))
}
