//! /account/reauth: step-up before a sensitive account action (issue 8 §4; OWASP ASVS 4.0.3
//! §3.7.1). A login attempt with `Purpose::Reauth` on the same engine and policy as a login,
//! for the session's own user, bound to this browser and to this session. A pass renews the
//! session's authentication time and goes back to the action's page, where the user submits
//! the action afresh with a fresh form; no POST is replayed.

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::authorize::current_session;
use super::client_ip::ClientIp;
use super::error::{PageError, no_store, page_or_error};
use super::extract::{self, SESSION_COOKIE, browser_hash, cookie_name, csrf_token, field, locale};
use super::login::read_form;
use super::steps::{self, Who};
use crate::app::AppState;
use crate::auth::Method;
use crate::auth::attempt::{Action, Purpose, Requirement};
use crate::auth::engine::{self, Live, Step};
use crate::auth::methods::AuthMethod;
use crate::auth::methods::backup_code::BackupCode;
use crate::auth::methods::email_code::EmailCode;
use crate::auth::methods::password::Password;
use crate::auth::methods::totp::Totp;
use crate::auth::policy::{Next, Why};
use crate::paths;
use crate::secret::{Secret, sha256_b64};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::REAUTH, get(start_get).post(start_post))
        .route(paths::REAUTH_PASSWORD, post(password_post))
        .route(paths::REAUTH_TOTP, post(totp_post))
        .route(paths::REAUTH_BACKUP_CODE, post(backup_code_post))
        .route(paths::REAUTH_CODE, post(code_post))
}

fn see_other(to: &str) -> Response {
    no_store(Redirect::to(to).into_response())
}

/// The hash of this browser's session cookie, as `login_sessions` keys it.
fn session_hash(app: &AppState, jar: &CookieJar) -> Option<String> {
    jar.get(&cookie_name(app, SESSION_COOKIE)).map(|c| sha256_b64(c.value()))
}

/// GET /account/reauth?then=ACTION — starts the confirmation for the signed-in user. An
/// account that confirms by an emailed code first gets a button: a GET (a link from any site)
/// never sends mail.
pub async fn start_get(State(app): State<AppState>, ip: ClientIp, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let pairs = extract::parse(q.unwrap_or_default().as_bytes());
    page_or_error(&app, &headers, start(&app, ip, &pairs, &headers, jar, false).await)
}

/// POST /account/reauth (`then`, CSRF): the "email me a code" button of that page.
pub async fn start_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    let answer = async {
        let pairs = read_form(&app, &headers, &jar, body).await?;
        start(&app, ip, &pairs, &headers, jar, true).await
    };
    page_or_error(&app, &headers, answer.await)
}

async fn start(
    app: &AppState,
    ip: ClientIp,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    jar: CookieJar,
    posted: bool,
) -> Result<Response, PageError> {
    let (Some(session), Some(hash)) = (current_session(app, &jar).await?, session_hash(app, &jar)) else {
        return Ok(see_other(paths::LOGIN));
    };
    let Some(user) = app.db.user_get(&session.user_id).await? else {
        return Ok(see_other(paths::LOGIN));
    };
    // Parsed into the list of account pages: the query never names where the user goes.
    let back = Action::parse(field(pairs, "then").unwrap_or(""));
    let (jar, browser) = browser_hash(app, jar);
    // The account pages' language: the browser's.
    let loc = locale(headers, None);
    let now = app.clock.now();
    let by_mail = engine::enrolled(&app.db, &user.user_id)
        .await
        .map_err(PageError::internal)?
        .is_some_and(|e| !e.totp && !e.password);
    if by_mail && !posted {
        return send_page(app, jar, loc, &user.email, back);
    }
    let purpose = Purpose::Reauth { session_hash: hash, back };
    // `fresh`: the factor must be passed in this attempt, whatever the session already holds.
    let requirement = Requirement {
        fresh: true,
        ..Requirement::ONE
    };
    let mut live = engine::begin_attempt(purpose, None, requirement, &user.email, &browser, now);
    // The user is the session's, never a form's.
    live.attempt.user_id = Some(user.user_id.clone());
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::reauth(&steps::deps(app), who.caller(), live, now).await?;
    render(app, jar, &who, step).await
}

pub async fn password_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, submit::<Password>(&app, ip, &headers, jar, body).await)
}

pub async fn totp_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, submit::<Totp>(&app, ip, &headers, jar, body).await)
}

pub async fn backup_code_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, submit::<BackupCode>(&app, ip, &headers, jar, body).await)
}

pub async fn code_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, submit::<EmailCode>(&app, ip, &headers, jar, body).await)
}

/// One input for a re-authentication: the form (CSRF), the attempt of this browser, and the
/// session it was started for, which must be this browser's current one.
async fn submit<M: AuthMethod<Input = Secret>>(
    app: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let Some(session) = current_session(app, &jar).await? else {
        return Ok(see_other(paths::LOGIN));
    };
    let (jar, browser) = browser_hash(app, jar);
    let now = app.clock.now();
    let id = field(&pairs, "attempt").unwrap_or("");
    let live = engine::load(&app.db, id, &browser, now)
        .await?
        .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over"))?;
    let Purpose::Reauth { session_hash: bound, .. } = &live.attempt.purpose else {
        // A login attempt's id posted here: it goes on at /login only.
        return Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over"));
    };
    // Compared as hashes of random ids; equal length, so `==` says nothing worth timing.
    if *bound != session.session_hash || live.attempt.user_id.as_deref() != Some(session.user_id.as_str()) {
        tracing::info!(user_id = %session.user_id, "re-authentication continued from another session refused");
        return Err(PageError::new(StatusCode::FORBIDDEN, "reauth.wrong_session"));
    }
    let loc = locale(headers, None);
    let input = field(&pairs, if M::METHOD == Method::Password { "password" } else { "code" }).unwrap_or("");
    // Longer than any password or code we accept: wrong, without hashing it.
    let input = if input.len() > extract::MAX_PASSWORD { "" } else { input };
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::submit::<M>(&steps::deps(app), who.caller(), live, Secret::new(input), now).await?;
    render(app, jar, &who, step).await
}

#[derive(Serialize)]
struct ReauthPage<'a> {
    locale: &'a str,
    csrf: &'a str,
    attempt: &'a str,
    email: &'a str,
    /// "confirm it's you to …": the catalogue key of the action.
    reason: String,
    /// Which form: `password`, `totp` (with the backup code) or `code`.
    ask: &'static str,
    error: Option<&'a str>,
    mail_failed: bool,
    password_action: &'static str,
    totp_action: &'static str,
    backup_action: &'static str,
    code_action: &'static str,
    cancel_url: &'static str,
}

fn back_of(live: &Live) -> Action {
    match live.attempt.purpose {
        Purpose::Reauth { back, .. } => back,
        _ => Action::Account,
    }
}

#[allow(clippy::too_many_arguments)]
fn page(
    app: &AppState,
    jar: CookieJar,
    status: StatusCode,
    who: &Who,
    live: &Live,
    ask: &'static str,
    error: Option<&str>,
    mail_failed: bool,
) -> Result<Response, PageError> {
    let (jar, csrf) = csrf_token(app, jar);
    let back = back_of(live);
    let ctx = ReauthPage {
        locale: who.loc,
        csrf: &csrf,
        attempt: &live.id,
        email: live.attempt.claimed_email.as_deref().unwrap_or(""),
        reason: format!("reauth.reason.{}", back.as_str()),
        ask,
        // The page asks for the password alone: "email or password" would be wrong here.
        error: error.map(|e| if e == "login.failed" { "reauth.wrong_password" } else { e }),
        mail_failed,
        password_action: paths::REAUTH_PASSWORD,
        totp_action: paths::REAUTH_TOTP,
        backup_action: paths::REAUTH_BACKUP_CODE,
        code_action: paths::REAUTH_CODE,
        cancel_url: back.page(),
    };
    let html = app.pages.render("reauth.html", &ctx).map_err(PageError::internal)?;
    Ok((jar, no_store((status, Html(html)).into_response())).into_response())
}

/// The first page for an account that confirms by mail: what will happen, and a button.
fn send_page(app: &AppState, jar: CookieJar, loc: &'static str, email: &str, back: Action) -> Result<Response, PageError> {
    let (jar, csrf) = csrf_token(app, jar);
    let ctx = ReauthPage {
        locale: loc,
        csrf: &csrf,
        attempt: "",
        email,
        reason: format!("reauth.reason.{}", back.as_str()),
        ask: "send",
        error: None,
        mail_failed: false,
        password_action: paths::REAUTH_PASSWORD,
        totp_action: paths::REAUTH_TOTP,
        backup_action: paths::REAUTH_BACKUP_CODE,
        code_action: paths::REAUTH_CODE,
        cancel_url: back.page(),
    };
    let ctx = SendPage {
        page: ctx,
        send_action: paths::REAUTH,
        then: back.as_str(),
    };
    let html = app.pages.render("reauth.html", &ctx).map_err(PageError::internal)?;
    Ok((jar, no_store((StatusCode::OK, Html(html)).into_response())).into_response())
}

#[derive(Serialize)]
struct SendPage<'a> {
    #[serde(flatten)]
    page: ReauthPage<'a>,
    send_action: &'static str,
    then: &'static str,
}

fn form_for(methods: &[Method]) -> &'static str {
    if methods.contains(&Method::Totp) || methods.contains(&Method::BackupCode) {
        "totp"
    } else if methods.contains(&Method::Password) {
        "password"
    } else {
        "code"
    }
}

/// The page for an engine step of a re-authentication.
async fn render(app: &AppState, jar: CookieJar, who: &Who, step: Step) -> Result<Response, PageError> {
    match step {
        // RFC 9110 §15.4.4: 303, so the browser GETs the page and the user submits afresh.
        Step::Reauthenticated { back, .. } => Ok((jar, see_other(back.page())).into_response()),
        Step::Show {
            live,
            next: Next::Ask(methods),
            problem,
            mail_failed,
            ..
        } => page(app, jar, StatusCode::OK, who, &live, form_for(&methods), problem, mail_failed),
        Step::Refused {
            live,
            message,
            retry_after,
        } => {
            // The password gate's messages name the password form; the per-minute limits are
            // shared by emailed codes and the second factor, so the account says which it was.
            let ask = if message.starts_with("login.") {
                "password"
            } else {
                let enrolled = match live.attempt.user_id.as_deref() {
                    Some(u) => engine::enrolled(&app.db, u).await.map_err(PageError::internal)?,
                    None => None,
                };
                if enrolled.is_some_and(|e| e.totp) { "totp" } else { "code" }
            };
            let mut resp = page(app, jar, StatusCode::TOO_MANY_REQUESTS, who, &live, ask, Some(message), false)?;
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(resp)
        }
        Step::Over { why, .. } => {
            let (status, message) = match why {
                Why::TooManyFailures => (StatusCode::TOO_MANY_REQUESTS, "login.too_many_failures"),
                Why::SecondFactorLocked => (StatusCode::TOO_MANY_REQUESTS, "login.second_factor_locked"),
                Why::Expired | Why::UserGone | Why::NoSecondFactor | Why::IdentityTaken => (StatusCode::BAD_REQUEST, "login.attempt_over"),
            };
            Err(PageError::new(status, message))
        }
        // A login's steps: not reached by a re-authentication.
        Step::Show { .. } | Step::Finished(_) | Step::Redirect(_) | Step::UpstreamFailed { .. } | Step::Linked { .. } => {
            Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over"))
        }
    }
}
