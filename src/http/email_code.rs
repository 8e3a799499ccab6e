//! Passwordless login and the second step by emailed code: send, check, and the magic link.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::client_ip::ClientIp;
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, browser_hash, csrf_token, field, locale};
use super::login::{Step, complete_login, complete_login_confirmed, read_step};
use crate::app::AppState;
use crate::auth::email_otp::{self, Context, LOGIN, RESET_PASSWORD, SECOND_FACTOR, VERIFY_EMAIL};
use crate::auth::limits::{self, CodeGate, Verdict};
use crate::notify::{self, Kind};
use crate::oauth::claims::{ACR_1FA, ACR_2FA, AMR_OTP, AMR_PASSWORD};
use crate::paths;
use crate::store::{OtpCheck, SpentOtp};

#[derive(Serialize)]
struct CodePage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    req: &'a str,
    email: &'a str,
    purpose: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    mail_failed: bool,
    new_password: bool,
    back_url: String,
    /// How long a code lives, for "a code works for N minutes".
    expires_minutes: i64,
    /// Where "send a new code" posts; none for the second step, which needs the password again.
    resend_action: Option<&'a str>,
}

pub struct CodeView<'a> {
    pub req: &'a str,
    pub email: &'a str,
    pub purpose: &'a str,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
    pub mail_failed: bool,
}

fn back_url(req: &str) -> String {
    if req.is_empty() {
        paths::LOGIN.to_owned()
    } else {
        format!("{}?req={req}", paths::LOGIN)
    }
}

pub fn render_code_page(app: &AppState, jar: CookieJar, loc: &str, v: CodeView<'_>) -> Response {
    let (jar, csrf) = csrf_token(app, jar);
    let reset = v.purpose == RESET_PASSWORD;
    let ctx = CodePage {
        locale: loc,
        action: if reset { paths::PASSWORD_RESET } else { paths::LOGIN_CODE_VERIFY },
        csrf: &csrf,
        req: v.req,
        email: v.email,
        purpose: v.purpose,
        notice: v.notice,
        error: v.error,
        mail_failed: v.mail_failed,
        new_password: reset,
        back_url: back_url(v.req),
        expires_minutes: (app.config.otp_ttl + 59) / 60,
        resend_action: match v.purpose {
            RESET_PASSWORD => Some(paths::PASSWORD_FORGOT),
            // A fresh login code also proves the mailbox, so it verifies a new account too.
            LOGIN | VERIFY_EMAIL => Some(paths::LOGIN_CODE),
            _ => None,
        },
    };
    match app.pages.render("code.html", &ctx) {
        Ok(html) => (jar, no_store(Html(html).into_response())).into_response(),
        Err(e) => render_page_error(app, loc, &PageError::internal(e)),
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

/// POST /login/code — "email me a code". The answer is the same whether or not the address
/// has an account, and so is the work: a code row is written either way.
pub async fn send_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, send_inner(&app, ip, &headers, jar, body).await)
}

async fn send_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let Step { req, loc, email, .. } = read_step(app, headers, &jar, body).await?;
    if email.is_empty() || email.len() > 254 {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "signup.invalid_email").in_flow(Some(&req)));
    }
    let now = app.clock.now();
    if let Verdict::Limited { retry_after } = limits::code_send(&app.db, &app.config.limits, &email, &ip.to_string(), now).await? {
        tracing::info!("code sends limited");
        return Ok(render_limited(app, loc, "limited.too_many_codes", retry_after, &req));
    }
    let user = app.db.user_by_email(&email).await?;
    let (jar, browser) = browser_hash(app, jar);
    let ctx = Context {
        user_id: user.as_ref().map(|u| u.user_id.as_str()),
        browser_hash: &browser,
        request_id: (!req.is_empty()).then_some(req.as_str()),
    };
    let issued = email_otp::issue(&app.db, &app.hmac_key, &email, LOGIN, ctx, app.config.otp_ttl, now).await?;
    // Sent after the answer, and the page never says whether it went: with sign-up closed an
    // unknown address gets no mail, so waiting or reporting would tell it apart (OWASP WSTG-IDNT-04).
    match &user {
        Some(u) => {
            let link = format!("{}{}?token={}", app.config.issuer, paths::LOGIN_LINK, issued.link_token);
            let mail_loc = u.locale.as_deref().unwrap_or(loc);
            notify::send_later(
                &app.pages,
                &app.mailer,
                &app.config.issuer,
                Kind::LoginCode,
                &u.email,
                mail_loc,
                Some(&issued.code),
                Some(&link),
            );
        }
        None if app.config.signup_open => {
            let link = format!("{}{}", app.config.issuer, paths::SIGNUP);
            notify::send_later(
                &app.pages,
                &app.mailer,
                &app.config.issuer,
                Kind::SignupOffer,
                &email,
                loc,
                None,
                Some(&link),
            );
        }
        None => {}
    }
    let view = CodeView {
        req: &req,
        email: &email,
        purpose: LOGIN,
        notice: Some("code.sent"),
        error: None,
        mail_failed: false,
    };
    Ok(render_code_page(app, jar, loc, view))
}

/// POST /login/code/verify — a typed code, for passwordless login or the second step.
pub async fn verify_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, verify_inner(&app, ip, &headers, jar, body).await)
}

async fn verify_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let step = read_step(app, headers, &jar, body).await?;
    let purpose = match field(&step.pairs, "purpose") {
        Some(SECOND_FACTOR) => SECOND_FACTOR,
        Some(VERIFY_EMAIL) => VERIFY_EMAIL,
        _ => LOGIN,
    };
    let (jar, user_id, spent) = match check_typed(app, ip, jar, &step, purpose).await? {
        Typed::Spent { jar, user_id, otp } => (jar, user_id, otp),
        Typed::Page(page) => return Ok(page),
    };
    // A second-step code is good only in the browser that passed the first step.
    let (jar, browser) = browser_hash(app, jar);
    let same_browser = spent.browser_hash == browser;
    if purpose == SECOND_FACTOR && !same_browser {
        return Ok(code_again(app, jar, &step, purpose, "code.expired"));
    }
    // A pending password survives only a verification code typed where it was chosen.
    let keep = purpose == VERIFY_EMAIL && same_browser;
    finish(app, jar, &user_id, purpose, keep, spent.request_id.as_deref(), step.loc).await
}

/// The code form again, saying what went wrong.
pub(super) fn code_again(app: &AppState, jar: CookieJar, step: &Step, purpose: &str, error: &str) -> Response {
    let view = CodeView {
        req: &step.req,
        email: &step.email,
        purpose,
        notice: None,
        error: Some(error),
        mail_failed: false,
    };
    render_code_page(app, jar, step.loc, view)
}

/// What a typed code came to.
pub(super) enum Typed {
    Spent {
        jar: CookieJar,
        user_id: String,
        otp: SpentOtp,
    },
    /// The page to answer with instead: the limit page, or the form with the reason.
    Page(Response),
}

/// Counts the try against the check limits, then checks the form's `code`. A code for an
/// address with no account proves nothing and fails like a wrong one.
pub(super) async fn check_typed(
    app: &AppState,
    ip: ClientIp,
    jar: CookieJar,
    step: &Step,
    purpose: &'static str,
) -> Result<Typed, PageError> {
    let now = app.clock.now();
    let failures = match limits::code_check(&app.db, &app.config.limits, &step.email, &ip.to_string(), now).await? {
        CodeGate::Allowed { failures } => failures,
        CodeGate::Wait { retry_after } => {
            tracing::info!(client_ip = %ip, "code checks limited");
            return Ok(Typed::Page(render_limited(
                app,
                step.loc,
                "limited.too_many_tries",
                retry_after,
                &step.req,
            )));
        }
        CodeGate::Locked { retry_after } => {
            tracing::info!(client_ip = %ip, "code checks locked after consecutive wrong codes");
            return Ok(Typed::Page(render_limited(
                app,
                step.loc,
                "limited.codes_locked",
                retry_after,
                &step.req,
            )));
        }
    };
    let typed = field(&step.pairs, "code").unwrap_or("");
    let reason = match email_otp::check(&app.db, &app.hmac_key, &step.email, purpose, typed, now).await? {
        OtpCheck::Accepted(otp) => match otp.user_id.clone() {
            Some(user_id) => {
                limits::code_succeeded(&app.db, &step.email).await?;
                return Ok(Typed::Spent { jar, user_id, otp });
            }
            None => "code.wrong",
        },
        OtpCheck::Wrong { .. } => "code.wrong",
        OtpCheck::Dead => "code.expired",
    };
    if limits::code_lock_reached(&app.config.limits, failures) {
        codes_locked(app, &step.email, step.loc, ip).await?;
    }
    Ok(Typed::Page(code_again(app, jar, step, purpose, reason)))
}

/// The owner of an account whose code login just locked is told, once.
async fn codes_locked(app: &AppState, email: &str, loc: &str, ip: ClientIp) -> Result<(), PageError> {
    let Some(user) = app.db.user_by_email(email).await? else {
        return Ok(());
    };
    tracing::warn!(user_id = %user.user_id, client_ip = %ip, "code login locked after consecutive wrong codes");
    let link = format!("{}{}", app.config.issuer, paths::LOGIN);
    let mail_loc = user.locale.as_deref().unwrap_or(loc);
    // After the answer: only a known address gets this mail, so waiting would tell.
    notify::send_later(
        &app.pages,
        &app.mailer,
        &app.config.issuer,
        Kind::CodesLocked,
        &user.email,
        mail_loc,
        None,
        Some(&link),
    );
    Ok(())
}

/// The code or link proved the user holds the mailbox: the address is verified too, and a
/// first verification earns the welcome mail.
///
/// Account pre-hijacking (Sudhodanan & Paverd, USENIX Security 2022): a password chosen at
/// sign-up, before the address was proven, is kept only when `keep_pending_password` says the
/// proof came from the browser that chose it (a verification code of that sign-up or of a
/// held password login). Any other proof (an emailed login code, a code typed elsewhere) is
/// the mailbox's owner, who may not be whoever chose the password: it is removed.
async fn finish(
    app: &AppState,
    jar: CookieJar,
    user_id: &str,
    purpose: &str,
    keep_pending_password: bool,
    req: Option<&str>,
    loc: &str,
) -> Result<Response, PageError> {
    if app.db.user_verify_email(user_id, keep_pending_password, app.clock.now()).await?
        && let Some(user) = app.db.user_get(user_id).await?
    {
        let link = format!("{}{}", app.config.issuer, paths::ACCOUNT);
        let loc = user.locale.as_deref().unwrap_or(crate::i18n::DEFAULT_LOCALE);
        notify::send(
            &app.pages,
            &app.mailer,
            &app.config.issuer,
            Kind::Welcome,
            &user.email,
            loc,
            None,
            Some(&link),
        )
        .await;
    }
    if purpose == RESET_PASSWORD {
        // Reset codes finish in the reset handler, never as a login here.
        return Err(PageError::new(StatusCode::BAD_REQUEST, "code.link_invalid"));
    }
    let (amr, acr) = if purpose == SECOND_FACTOR {
        (vec![AMR_PASSWORD.to_owned(), AMR_OTP.to_owned()], ACR_2FA)
    } else {
        (vec![AMR_OTP.to_owned()], ACR_1FA)
    };
    tracing::info!(user_id = %user_id, purpose, "email code accepted");
    if purpose == VERIFY_EMAIL {
        return complete_login_confirmed(app, jar, (user_id, amr, acr), req, loc, "done.signup").await;
    }
    complete_login(app, jar, user_id, amr, acr, req).await
}

/// GET /login/link?token=… — the magic link; single use, and only in the browser that asked.
pub async fn link_get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let loc = locale(&headers, None);
    let pairs = extract::parse(q.unwrap_or_default().as_bytes());
    let token = field(&pairs, "token").unwrap_or("");
    let (jar, browser) = browser_hash(&app, jar);
    let result = async {
        let invalid = || PageError::new(StatusCode::BAD_REQUEST, "code.link_invalid");
        if token.is_empty() || token.len() > 128 {
            return Err(invalid());
        }
        let spent = email_otp::take_link(&app.db, token, &browser, app.clock.now())
            .await?
            .ok_or_else(invalid)?;
        let user_id = spent.user_id.clone().ok_or_else(invalid)?;
        // Links work only in the browser that asked (`take_link`).
        let keep = spent.purpose == VERIFY_EMAIL;
        finish(&app, jar, &user_id, &spent.purpose, keep, spent.request_id.as_deref(), loc).await
    }
    .await;
    result.unwrap_or_else(|e| render_page_error(&app, loc, &e))
}
