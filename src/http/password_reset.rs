//! Forgotten password: a code by mail, then a new password. Every other session and every
//! token of the account is revoked, and the owner is told.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::client_ip::ClientIp;
use super::email_code::{CodeView, Typed, check_typed, code_again, render_code_page, render_limited};
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, browser_hash, csrf_token, field};
use super::login::{Step, complete_login_confirmed, flow_locale, read_step};
use crate::app::AppState;
use crate::auth::email_otp::{self, Context, RESET_PASSWORD};
use crate::auth::limits::{self, Verdict};
use crate::auth::password;
use crate::notify::{self, Kind};
use crate::oauth::claims::{ACR_1FA, AMR_OTP};
use crate::paths;

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
    page_or_error(&app, &headers, forgot_inner(&app, ip, &headers, jar, body).await)
}

async fn forgot_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let Step { req, loc, email, .. } = read_step(app, headers, &jar, body).await?;
    if email.is_empty() || email.len() > 254 {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "signup.invalid_email").in_flow(Some(&req)));
    }
    let now = app.clock.now();
    if let Verdict::Limited { retry_after } = limits::code_send(&app.db, &app.config.limits, &email, &ip.to_string(), now).await? {
        return Ok(render_limited(app, loc, "limited.too_many_codes", retry_after, &req));
    }
    let user = app.db.user_by_email(&email).await?;
    let (jar, browser) = browser_hash(app, jar);
    let ctx = Context {
        user_id: user.as_ref().map(|u| u.user_id.as_str()),
        browser_hash: &browser,
        request_id: (!req.is_empty()).then_some(req.as_str()),
    };
    let issued = email_otp::issue(&app.db, &app.hmac_key, &email, RESET_PASSWORD, ctx, app.config.otp_ttl, now).await?;
    // Sent after the answer, and the page never says whether it went: either would tell a
    // known address from an unknown one (OWASP WSTG-IDNT-04).
    if let Some(u) = &user {
        let mail_loc = u.locale.as_deref().unwrap_or(loc);
        notify::send_later(
            &app.pages,
            &app.mailer,
            &app.config.issuer,
            Kind::ResetPassword,
            &u.email,
            mail_loc,
            Some(&issued.code),
            None,
        );
    }
    let view = CodeView {
        req: &req,
        email: &email,
        purpose: RESET_PASSWORD,
        notice: Some("code.sent"),
        error: None,
        mail_failed: false,
    };
    Ok(render_code_page(app, jar, loc, view))
}

/// POST /password/reset — the code and the new password together.
pub async fn reset_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, reset_inner(&app, ip, &headers, jar, body).await)
}

async fn reset_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let step = read_step(app, headers, &jar, body).await?;
    let new_password = field(&step.pairs, "password").unwrap_or("");
    // A weak password is refused before the code is looked at, so it costs no try.
    if let Err(problem) = password::policy(new_password, &step.email) {
        return Ok(code_again(app, jar, &step, RESET_PASSWORD, problem));
    }
    let (jar, user_id) = match check_typed(app, ip, jar, &step, RESET_PASSWORD).await? {
        Typed::Spent { jar, user_id, .. } => (jar, user_id),
        Typed::Page(page) => return Ok(page),
    };
    let (req, loc, email, now) = (step.req.as_str(), step.loc, step.email.as_str(), app.clock.now());
    let hash = app.hasher.hash(new_password).await?;
    app.db.user_set_password_hash(&user_id, &hash, now).await?;
    let ended = app.db.sessions_end_for_user(&user_id, None).await?;
    app.db.tokens_revoke_for_user(&user_id).await?;
    limits::password_cleared(&app.db, email).await?;
    tracing::info!(user_id = %user_id, sessions_ended = ended, "password reset; sessions and tokens revoked");
    if let Some(user) = app.db.user_get(&user_id).await? {
        let link = format!("{}{}", app.config.issuer, paths::PASSWORD_FORGOT);
        let mail_loc = user.locale.as_deref().unwrap_or(loc);
        notify::send(
            &app.pages,
            &app.mailer,
            &app.config.issuer,
            Kind::PasswordChanged,
            &user.email,
            mail_loc,
            None,
            Some(&link),
        )
        .await;
    }
    // The code proved the mailbox: the address is verified, and this browser is logged in.
    app.db.user_verify_email(&user_id, true, now).await?;
    complete_login_confirmed(
        app,
        jar,
        (&user_id, vec![AMR_OTP.to_owned()], ACR_1FA),
        (!req.is_empty()).then_some(req),
        loc,
        "done.reset",
    )
    .await
}
