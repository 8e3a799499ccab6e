//! Renders what the login engine answers: one page per step, and the session when it finishes.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::authorize::load_request;
use super::client_ip::ClientIp;
use super::error::{PageError, no_store};
use super::extract::{SESSION_COOKIE, cookie, cookie_name, csrf_token, field};
use crate::app::AppState;
use crate::auth::Method;
use crate::auth::attempt::{CodeFor, Pending, Purpose, Requirement};
use crate::auth::engine::{self, Authenticated, Live, Step};
use crate::auth::methods::{Caller, Deps};
use crate::auth::policy::{Next, Why};
use crate::paths;
use crate::secret::{random_token, sha256_b64};
use crate::store::{EventKind, LoginSession, NewEvent, SessionMeta};

pub(super) fn deps(app: &AppState) -> Deps<'_> {
    Deps {
        db: &app.db,
        hasher: &app.hasher,
        hmac_key: &app.hmac_key,
        limits: &app.config.limits,
        pages: &app.pages,
        mailer: &app.mailer,
        issuer: &app.config.issuer,
        otp_ttl: app.config.otp_ttl,
        signup_open: app.config.signup_open,
        upstreams: &app.upstreams,
    }
}

/// The request behind a step: who asks, from where, in which language.
pub(super) struct Who {
    pub ip: String,
    pub user_agent: Option<String>,
    pub browser: String,
    pub loc: &'static str,
}

impl Who {
    pub fn new(ip: ClientIp, headers: &HeaderMap, browser: String, loc: &'static str) -> Who {
        Who {
            ip: ip.to_string(),
            user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
            browser,
            loc,
        }
    }

    pub fn caller(&self) -> Caller<'_> {
        Caller {
            ip: &self.ip,
            browser_hash: &self.browser,
            locale: self.loc,
            user_agent: self.user_agent.as_deref(),
        }
    }
}

/// A new attempt for the authorization request `req` (or none), with the level it asks for.
pub(super) async fn new_attempt(app: &AppState, req: &str, purpose: Purpose, email: &str, browser: &str) -> Result<Live, PageError> {
    let (request_id, requirement) = match req {
        "" => (None, Requirement::ONE),
        r => {
            let (row, q, _) = load_request(app, Some(r)).await?;
            (Some(row.request_id), Requirement::for_request(&q))
        }
    };
    Ok(engine::begin_attempt(
        purpose,
        request_id,
        requirement,
        email,
        browser,
        app.clock.now(),
    ))
}

/// The attempt a form continues (its `attempt` field), in this browser only: an id from
/// another browser, an expired one or a finished one all get the same page, `gone`.
pub(super) async fn posted_attempt(
    app: &AppState,
    pairs: &[(String, String)],
    browser: &str,
    gone: &'static str,
) -> Result<Live, PageError> {
    let id = field(pairs, "attempt").unwrap_or("");
    engine::load(&app.db, id, browser, app.clock.now())
        .await?
        // A re-authentication goes on only at /account/reauth, which checks its session; the
        // account page's link only at its callback.
        .filter(|live| !matches!(live.attempt.purpose, Purpose::Reauth { .. } | Purpose::LinkFromAccount { .. }))
        .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, gone))
}

/// The page language of an attempt: its request's `ui_locales`, then the browser's.
pub(super) async fn attempt_locale(app: &AppState, headers: &HeaderMap, live: &Live) -> &'static str {
    super::login::flow_locale(app, headers, live.attempt.request_id.as_deref().unwrap_or("")).await
}

fn with_req(path: &str, req: &str) -> String {
    if req.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?req={req}")
    }
}

#[derive(Serialize)]
struct CodePage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    attempt: &'a str,
    req: &'a str,
    email: &'a str,
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

#[derive(Serialize)]
struct PasswordPage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    attempt: &'a str,
    email: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    forgot_url: String,
}

fn html(app: &AppState, jar: CookieJar, status: StatusCode, name: &str, ctx: &impl Serialize) -> Result<Response, PageError> {
    let page = app.pages.render(name, ctx).map_err(PageError::internal)?;
    Ok((jar, no_store((status, Html(page)).into_response())).into_response())
}

fn with_retry_after(mut resp: Response, retry_after: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The code form of an attempt waiting for an emailed code.
pub(super) fn code_page(
    app: &AppState,
    jar: CookieJar,
    loc: &str,
    live: &Live,
    notice: Option<&str>,
    error: Option<&str>,
    mail_failed: bool,
) -> Result<Response, PageError> {
    let code_for = match live.attempt.pending {
        Some(Pending::EmailCode { code_for }) => code_for,
        Some(Pending::Upstream(_)) | None => return Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over")),
    };
    let (jar, csrf) = csrf_token(app, jar);
    let req = live.attempt.request_id.as_deref().unwrap_or("");
    let reset = code_for == CodeFor::ResetPassword;
    let ctx = CodePage {
        locale: loc,
        action: if reset { paths::PASSWORD_RESET } else { paths::LOGIN_CODE_VERIFY },
        csrf: &csrf,
        attempt: &live.id,
        req,
        email: live.attempt.claimed_email.as_deref().unwrap_or(""),
        notice,
        error,
        mail_failed,
        new_password: reset,
        back_url: with_req(paths::LOGIN, req),
        expires_minutes: (app.config.otp_ttl + 59) / 60,
        resend_action: match code_for {
            CodeFor::ResetPassword => Some(paths::PASSWORD_FORGOT),
            // A fresh login code also proves the mailbox, so it verifies a new account too.
            CodeFor::Login | CodeFor::VerifyEmail => Some(paths::LOGIN_CODE),
            CodeFor::SecondFactor | CodeFor::Reauth => None,
        },
    };
    html(app, jar, StatusCode::OK, "code.html", &ctx)
}

/// The password asked of a user an emailed code already identified.
fn password_page(app: &AppState, jar: CookieJar, loc: &str, live: &Live, error: Option<&str>) -> Result<Response, PageError> {
    let (jar, csrf) = csrf_token(app, jar);
    let req = live.attempt.request_id.as_deref().unwrap_or("");
    let ctx = PasswordPage {
        locale: loc,
        action: paths::LOGIN_PASSWORD,
        csrf: &csrf,
        attempt: &live.id,
        email: live.attempt.claimed_email.as_deref().unwrap_or(""),
        notice: Some("login.second_factor_password"),
        error,
        forgot_url: with_req(paths::PASSWORD_FORGOT, req),
    };
    html(app, jar, StatusCode::OK, "password.html", &ctx)
}

#[derive(Serialize)]
struct TotpPage<'a> {
    locale: &'a str,
    totp_action: &'a str,
    backup_action: &'a str,
    csrf: &'a str,
    attempt: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

/// The authenticator code, with a backup code as the way out for a lost phone.
fn totp_page(app: &AppState, jar: CookieJar, loc: &str, live: &Live, error: Option<&str>) -> Result<Response, PageError> {
    let (jar, csrf) = csrf_token(app, jar);
    let ctx = TotpPage {
        locale: loc,
        totp_action: paths::LOGIN_TOTP,
        backup_action: paths::LOGIN_BACKUP_CODE,
        csrf: &csrf,
        attempt: &live.id,
        email: live.attempt.claimed_email.as_deref().unwrap_or(""),
        error,
    };
    html(app, jar, StatusCode::OK, "login_totp.html", &ctx)
}

/// The page for an engine step: the form of the step it asks for, the limit it hit, the end
/// it reached, or the session it earned.
pub(super) async fn render(app: &AppState, jar: CookieJar, who: &Who, step: Step) -> Result<Response, PageError> {
    let loc = who.loc;
    match step {
        Step::Finished(done) => complete_login(app, jar, who, done).await,
        // Not reached: `posted_attempt` keeps re-authentications off the login routes.
        Step::Reauthenticated { .. } => Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over")),
        Step::Over { why, request_id } => {
            let (status, message) = match why {
                Why::Expired | Why::UserGone => (StatusCode::BAD_REQUEST, "login.attempt_over"),
                Why::TooManyFailures => (StatusCode::TOO_MANY_REQUESTS, "login.too_many_failures"),
                // Said, never looped back to the login page: nothing there would help.
                Why::NoSecondFactor => (StatusCode::FORBIDDEN, "login.no_second_factor"),
                Why::SecondFactorLocked => (StatusCode::TOO_MANY_REQUESTS, "login.second_factor_locked"),
                Why::IdentityTaken => (StatusCode::CONFLICT, "upstream.linked_elsewhere"),
            };
            Err(PageError::new(status, message).in_flow(request_id.as_deref()))
        }
        // fed
        Step::Redirect(to) => Ok((jar, no_store(Redirect::to(&to).into_response())).into_response()),
        Step::UpstreamFailed { failure, request_id } => {
            use crate::auth::methods::upstream::Failure;
            let status = match failure {
                Failure::Unreachable => StatusCode::BAD_GATEWAY,
                Failure::Unknown => StatusCode::NOT_FOUND,
                Failure::SignupClosed | Failure::Denied => StatusCode::FORBIDDEN,
                Failure::LinkedElsewhere | Failure::Race => StatusCode::CONFLICT,
                Failure::State | Failure::Rejected | Failure::NoEmail => StatusCode::BAD_REQUEST,
            };
            Err(PageError::new(status, failure.key()).in_flow(request_id.as_deref()))
        }
        Step::Linked { already, .. } => {
            let to = format!("{}?done={}", paths::ACCOUNT, if already { "already_linked" } else { "linked" });
            Ok((jar, no_store(Redirect::to(&to).into_response())).into_response())
        }
        Step::Refused {
            live,
            message,
            retry_after,
        } => {
            let req = live.attempt.request_id.as_deref().unwrap_or("");
            if message.starts_with("login.") && live.attempt.factors.is_empty() && live.attempt.pending.is_none() {
                // The password gate: the login form again, saying which limit applies.
                let email = live.attempt.claimed_email.as_deref().unwrap_or("");
                let resp = super::login::render_login_for(app, jar, StatusCode::TOO_MANY_REQUESTS, req, loc, email, Some(message)).await;
                return Ok(with_retry_after(resp, retry_after));
            }
            Ok(super::email_code::render_limited(app, loc, message, retry_after, req))
        }
        Step::Show {
            live,
            next,
            problem,
            notice,
            mail_failed,
        } => match (&next, live.attempt.pending.is_some()) {
            (Next::Choose(_) | Next::Ask(_), true) => code_page(app, jar, loc, &live, notice, problem, mail_failed),
            // fed: a link's local login, on its own page saying why.
            (Next::Choose(_), false) if matches!(live.attempt.purpose, Purpose::Link { .. }) => link_page(app, jar, loc, &live, problem),
            (Next::Choose(_), false) => {
                let req = live.attempt.request_id.as_deref().unwrap_or("");
                let email = live.attempt.claimed_email.as_deref().unwrap_or("");
                Ok(super::login::render_login_for(app, jar, StatusCode::OK, req, loc, email, problem).await)
            }
            (Next::Ask(methods), false) if methods.contains(&Method::Password) => password_page(app, jar, loc, &live, problem),
            (Next::Ask(methods), false) if methods.contains(&Method::Totp) || methods.contains(&Method::BackupCode) => {
                totp_page(app, jar, loc, &live, problem)
            }
            // A method with no page of its own.
            (Next::Ask(_), false) => Err(PageError::new(StatusCode::FORBIDDEN, "login.method_unavailable")),
            (Next::NewPassword | Next::Done { .. } | Next::Over(_), _) => {
                Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over"))
            }
        },
    }
}

/// A new session id on every login (no fixation); any previous session of this browser ends.
/// The one place a login session is created, and its security event recorded.
async fn start_session(app: &AppState, jar: CookieJar, who: &Who, done: &Authenticated) -> Result<CookieJar, PageError> {
    let now = app.clock.now();
    let mut sid = None;
    if let Some(old) = jar.get(&cookie_name(app, SESSION_COOKIE)) {
        let old_hash = sha256_b64(old.value());
        match app.db.session_get(&old_hash, now).await? {
            // The same user logging in again (prompt=login, max_age): a new cookie, but the
            // same `sid`, so the relying parties' sessions go on (Back-Channel Logout 1.0 §2.1).
            Some(s) if s.user_id == done.user_id && s.sid.is_some() => {
                sid = s.sid;
                app.db.session_delete(&old_hash).await?;
            }
            // Someone else: the old session ends, and its relying parties hear of it.
            Some(_) => {
                app.db.session_logout(&old_hash, now).await?;
            }
            None => app.db.session_delete(&old_hash).await?,
        }
    }
    let id = random_token(32);
    let session = LoginSession {
        session_hash: sha256_b64(&id),
        user_id: done.user_id.clone(),
        auth_time: now,
        amr: done.amr.clone(),
        acr: done.acr.to_owned(),
        expires_at: now + app.config.session_ttl,
        sid: Some(sid.unwrap_or_else(|| random_token(24))),
    };
    let meta = SessionMeta {
        user_agent: who.user_agent.clone(),
        ip: Some(who.ip.clone()),
    };
    app.db.session_create(&session, &meta, now).await?;
    let event = NewEvent {
        ip: Some(&who.ip),
        user_agent: who.user_agent.as_deref(),
        detail: Some(&done.amr.join(" ")),
    };
    app.db.event_record(&done.user_id, EventKind::Login, &event, now).await?;
    tracing::info!(user_id = %done.user_id, client_ip = %who.ip, amr = ?done.amr, "login succeeded");
    crate::telemetry::login_completed();
    Ok(jar.add(cookie(app, SESSION_COOKIE, id, Some(app.config.session_ttl))))
}

/// Records that the user logged in during this request, which satisfies prompt=login and max_age.
async fn mark_fresh_login(app: &AppState, req_id: &str) -> Result<(), PageError> {
    let (row, mut req, _) = load_request(app, Some(req_id)).await?;
    req.fresh_login = true;
    let params = serde_json::to_string(&req).map_err(PageError::internal)?;
    app.db.auth_request_set_params(&row.request_id, &params).await?;
    Ok(())
}

#[derive(Serialize)]
struct DonePage<'a> {
    locale: &'a str,
    /// `done.signup` or `done.reset`: the title and text keys.
    confirmed: &'a str,
    email: Option<&'a str>,
    next_url: String,
}

/// The TOTP enrolment offered after a two-factor login made with the emailed code.
#[derive(Serialize)]
struct OfferPage<'a> {
    locale: &'a str,
    setup_url: &'a str,
    next_url: String,
}

/// Ends a successful login: a new session, then back to the authorization request or the
/// account page; after a verified sign-up or a new password, through a page saying so.
async fn complete_login(app: &AppState, jar: CookieJar, who: &Who, done: Authenticated) -> Result<Response, PageError> {
    let jar = start_session(app, jar, who, &done).await?;
    let next_url = match &done.request_id {
        Some(r) => {
            mark_fresh_login(app, r).await?;
            format!("{}?req={r}", paths::AUTHORIZE_RESUME)
        }
        None => paths::ACCOUNT.to_owned(),
    };
    let Some(confirmed) = done.confirm else {
        if done.offer == Some(Method::Totp) {
            // After the session exists, so "Not now" is the same redirect a login without the
            // offer would have sent.
            let ctx = OfferPage {
                locale: who.loc,
                setup_url: paths::TWO_FACTOR,
                next_url,
            };
            let page = app.pages.render("offer_totp.html", &ctx).map_err(PageError::internal)?;
            return Ok((jar, no_store(Html(page).into_response())).into_response());
        }
        return Ok((jar, no_store(Redirect::to(&next_url).into_response())).into_response());
    };
    let email = app.db.user_get(&done.user_id).await?.map(|u| u.email);
    let ctx = DonePage {
        locale: who.loc,
        confirmed,
        email: email.as_deref(),
        next_url,
    };
    let page = app.pages.render("done.html", &ctx).map_err(PageError::internal)?;
    let mut resp = Response::new(Body::from(page));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    Ok((jar, no_store(resp)).into_response())
}

// fed
#[derive(Serialize)]
struct LinkPage<'a> {
    locale: &'a str,
    password_action: &'a str,
    code_action: &'a str,
    csrf: &'a str,
    attempt: &'a str,
    email: &'a str,
    upstream_name: &'a str,
    error: Option<&'a str>,
    back_url: String,
}

/// "Log in to your existing account to link Google": the local login a link waits for.
fn link_page(app: &AppState, jar: CookieJar, loc: &str, live: &Live, error: Option<&str>) -> Result<Response, PageError> {
    let Purpose::Link { upstream, .. } = &live.attempt.purpose else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over"));
    };
    let name = app
        .upstreams
        .get(upstream)
        .map_or(upstream.as_str(), |c| c.upstream().display_name.as_str());
    let (jar, csrf) = csrf_token(app, jar);
    let req = live.attempt.request_id.as_deref().unwrap_or("");
    let ctx = LinkPage {
        locale: loc,
        password_action: paths::LOGIN_PASSWORD,
        code_action: paths::LOGIN_UPSTREAM_CODE,
        csrf: &csrf,
        attempt: &live.id,
        email: live.attempt.claimed_email.as_deref().unwrap_or(""),
        upstream_name: name,
        error,
        back_url: with_req(paths::LOGIN, req),
    };
    html(app, jar, StatusCode::OK, "upstream_link.html", &ctx)
}
