//! Forgotten password: a code by mail, then a new password. Every other session and every
//! token of the account is revoked, and the owner is told.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::client_ip::ClientIp;
use super::email_code::send_code;
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, browser_hash, csrf_token, field};
use super::login::{flow_locale, read_form};
use super::steps::{self, Who};
use crate::app::AppState;
use crate::auth::attempt::Purpose;
use crate::auth::engine::{self, Step};
use crate::auth::methods::email_code::EmailCode;
use crate::auth::password;
use crate::auth::policy::Next;
use crate::paths;
use crate::secret::Secret;

#[derive(Serialize)]
struct ForgotPage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    req: &'a str,
    email: &'a str,
    back_url: String,
}

/// GET /password/forgot
pub async fn forgot_get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let pairs = extract::parse(q.unwrap_or_default().as_bytes());
    let req = field(&pairs, "req").unwrap_or("").to_owned();
    let loc = flow_locale(&app, &headers, &req).await;
    let (jar, csrf) = csrf_token(&app, jar);
    let back_url = if req.is_empty() {
        paths::LOGIN.to_owned()
    } else {
        format!("{}?req={req}", paths::LOGIN)
    };
    let ctx = ForgotPage {
        locale: loc,
        action: paths::PASSWORD_FORGOT,
        csrf: &csrf,
        req: &req,
        email: field(&pairs, "email").unwrap_or(""),
        back_url,
    };
    match app.pages.render("forgot.html", &ctx) {
        Ok(html) => (jar, no_store(Html(html).into_response())).into_response(),
        Err(e) => render_page_error(&app, loc, &PageError::internal(e)),
    }
}

/// POST /password/forgot — same answer and same work whether or not the address is known.
pub async fn forgot_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    let purpose = Purpose::Reset { password_set: false };
    page_or_error(&app, &headers, send_code(&app, ip, &headers, jar, body, purpose).await)
}

/// POST /password/reset — the code and the new password together. The reset is a first
/// factor like any other: what the policy asks after it (a second factor) is asked.
pub async fn reset_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, reset_inner(&app, ip, &headers, jar, body).await)
}

async fn reset_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let (jar, browser) = browser_hash(app, jar);
    let live = steps::posted_attempt(app, &pairs, &browser, "code.expired").await?;
    let loc = steps::attempt_locale(app, headers, &live).await;
    if !matches!(live.attempt.purpose, Purpose::Reset { .. }) {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over"));
    }
    let new_password = field(&pairs, "password").unwrap_or("");
    let email = live.attempt.claimed_email.clone().unwrap_or_default();
    // A weak password is refused before the code is looked at, so it costs no try.
    if let Err(problem) = password::policy(new_password, &email) {
        return steps::code_page(app, jar, loc, &live, None, Some(problem), false);
    }
    let who = Who::new(ip, headers, browser, loc);
    let (d, now) = (steps::deps(app), app.clock.now());
    let code = Secret::new(field(&pairs, "code").unwrap_or(""));
    let step = match engine::submit::<EmailCode>(&d, who.caller(), live, code, now).await? {
        Step::Show {
            live,
            next: Next::NewPassword,
            ..
        } => engine::new_password(&d, who.caller(), *live, Secret::new(new_password), now).await?,
        other => other,
    };
    steps::render(app, jar, &who, step).await
}
