//! Hosted pages: log in, sign up, consent, account. Plain forms, no JavaScript needed.

use axum::body::Body;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::authorize::{answer_consent, current_session, decision, load_request, respond_error};
use super::client_ip::ClientIp;
use super::email_code::{CodeView, render_code_page, render_limited};
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, SESSION_COOKIE, browser_hash, cookie, cookie_name, csrf_guard, csrf_token, field, locale};
use crate::app::AppState;
use crate::auth::email_otp::{self, Context, SECOND_FACTOR, VERIFY_EMAIL};
use crate::auth::limits::{self, Gate, Verdict};
use crate::auth::{Outcome, password};
use crate::notify::{self, Kind};
use crate::oauth::authorize::{Consent, Next};
use crate::oauth::claims::{ACR_1FA, AMR_PASSWORD};
use crate::paths;
use crate::secret::{random_token, sha256_b64};
use crate::store::{LoginSession, NewUser, normalize_email};

fn query_pairs(q: Option<String>) -> Vec<(String, String)> {
    extract::parse(q.unwrap_or_default().as_bytes())
}

fn page<S: Serialize>(app: &AppState, jar: CookieJar, status: StatusCode, name: &str, ctx: &S, loc: &str) -> Response {
    match app.pages.render(name, ctx) {
        Ok(html) => (jar, no_store((status, Html(html)).into_response())).into_response(),
        Err(e) => render_page_error(app, loc, &PageError::internal(e)),
    }
}

pub(super) async fn read_form(
    app: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    body: Body,
) -> Result<Vec<(String, String)>, PageError> {
    let pairs = extract::form(headers, body).await.map_err(|e| match e {
        extract::BodyError::TooLarge => PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "error.bad_request"),
        extract::BodyError::NotForm | extract::BodyError::ControlChar => PageError::new(StatusCode::BAD_REQUEST, "error.bad_request"),
    })?;
    // A refused form keeps its way back into the sign-in request it came from.
    csrf_guard(app, jar, headers, field(&pairs, "csrf")).map_err(|e| e.in_flow(field(&pairs, "req")))?;
    Ok(pairs)
}

/// The `req` id, its locale and the client name, when a page serves an authorization request.
struct Flow {
    req_id: String,
    /// The request asked for two factors (`acr_values`).
    wants_2fa: bool,
    ui_locales: Option<String>,
    login_hint: Option<String>,
    client_name: Option<String>,
}

async fn flow(app: &AppState, req_id: Option<&str>) -> Result<Option<Flow>, PageError> {
    match req_id {
        None | Some("") => Ok(None),
        Some(id) => {
            let (row, req, client) = load_request(app, Some(id)).await?;
            Ok(Some(Flow {
                req_id: row.request_id,
                wants_2fa: req.wants_2fa(),
                ui_locales: req.ui_locales,
                login_hint: req.login_hint,
                client_name: Some(client.name),
            }))
        }
    }
}

#[derive(Serialize)]
struct LoginPage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    req: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    client_name: Option<&'a str>,
    signup_url: Option<String>,
    code_action: &'a str,
    forgot_url: String,
}

fn signup_url(app: &AppState, req: &str) -> Option<String> {
    app.config.signup_open.then(|| {
        if req.is_empty() {
            paths::SIGNUP.to_owned()
        } else {
            format!("{}?req={req}", paths::SIGNUP)
        }
    })
}

fn render_login(
    app: &AppState,
    jar: CookieJar,
    status: StatusCode,
    f: Option<&Flow>,
    loc: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let (jar, csrf) = csrf_token(app, jar);
    let req = f.map(|f| f.req_id.as_str()).unwrap_or("");
    let ctx = LoginPage {
        locale: loc,
        action: paths::LOGIN,
        csrf: &csrf,
        req,
        email,
        error,
        notice: None,
        client_name: f.and_then(|f| f.client_name.as_deref()),
        signup_url: signup_url(app, req),
        code_action: paths::LOGIN_CODE,
        forgot_url: forgot_url(req),
    };
    page(app, jar, status, "login.html", &ctx, loc)
}

pub async fn login_get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let pairs = query_pairs(q);
    let f = match flow(&app, field(&pairs, "req")).await {
        Ok(f) => f,
        Err(e) => return render_page_error(&app, locale(&headers, None), &e),
    };
    let loc = locale(&headers, f.as_ref().and_then(|f| f.ui_locales.as_deref()));
    let email = f
        .as_ref()
        .and_then(|f| f.login_hint.clone())
        .or_else(|| field(&pairs, "email").map(str::to_owned))
        .unwrap_or_default();
    render_login(&app, jar, StatusCode::OK, f.as_ref(), loc, &email, None)
}

pub async fn login_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, login_post_inner(&app, ip, &headers, jar, body).await)
}

async fn login_post_inner(
    app: &AppState,
    client_ip: ClientIp,
    headers: &HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let f = flow(app, field(&pairs, "req")).await?;
    let loc = locale(headers, f.as_ref().and_then(|f| f.ui_locales.as_deref()));
    let email = normalize_email(field(&pairs, "email").unwrap_or(""));
    let password = field(&pairs, "password").unwrap_or("");
    if email.len() > extract::MAX_EMAIL || password.len() > extract::MAX_PASSWORD {
        // No account has such an address or password: the usual failure, nothing counted or written.
        return Ok(render_login(app, jar, StatusCode::OK, f.as_ref(), loc, "", Some("login.failed")));
    }
    let ip = client_ip.to_string();
    let now = app.clock.now();
    let l = &app.config.limits;
    // Limits first: a locked account or a noisy address costs no argon2 work.
    let (refusal, retry_after) = match limits::password_gate(&app.db, l, &email, &ip, now).await? {
        Gate::Open(reservation) => {
            let user_id = match password::verify(&app.db, &app.hasher, &email, password).await? {
                Outcome::Done { user_id } => {
                    reservation.succeeded().await?;
                    user_id
                }
                Outcome::Unverified { user_id } => {
                    // The right password, so no failure; but nobody signs in with it yet.
                    drop(reservation);
                    return verify_first(app, client_ip, jar, &user_id, &email, f.as_ref(), loc).await;
                }
                Outcome::Retry => {
                    tracing::info!(client_ip = %client_ip, "password login failed");
                    if reservation.failed(l, now).await?
                        && let Some(user) = app.db.user_by_email(&email).await?
                    {
                        tracing::warn!(user_id = %user.user_id, client_ip = %client_ip, "password login locked after repeated failures");
                        let link = format!("{}{}", app.config.issuer, paths::LOGIN);
                        let mail_loc = user.locale.as_deref().unwrap_or(loc);
                        // After the answer: only a known address gets this mail, so waiting would tell.
                        notify::send_later(
                            &app.pages,
                            &app.mailer,
                            &app.config.issuer,
                            Kind::Locked,
                            &user.email,
                            mail_loc,
                            None,
                            Some(&link),
                        );
                    }
                    return Ok(render_login(
                        app,
                        jar,
                        StatusCode::OK,
                        f.as_ref(),
                        loc,
                        &email,
                        Some("login.failed"),
                    ));
                }
            };
            return finish_password(app, jar, f.as_ref(), &user_id, &email, loc).await;
        }
        Gate::AccountLocked { retry_after } => ("login.locked", retry_after),
        Gate::AddressLimited { retry_after } => ("login.ip_limited", retry_after),
        Gate::Busy => ("login.busy", 5),
    };
    // Which limit applies is said: the account's lock, or this address's throttle.
    tracing::info!(client_ip = %client_ip, limit = refusal, "password login refused before hashing");
    let mut resp = render_login(app, jar, StatusCode::TOO_MANY_REQUESTS, f.as_ref(), loc, &email, Some(refusal));
    if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    Ok(resp)
}

/// A right password: the second step when asked for, else the login is complete.
async fn finish_password(
    app: &AppState,
    jar: CookieJar,
    f: Option<&Flow>,
    user_id: &str,
    email: &str,
    loc: &str,
) -> Result<Response, PageError> {
    let req = f.map(|f| f.req_id.as_str());
    if f.is_some_and(|f| f.wants_2fa) {
        return step_up(app, jar, user_id, email, req.unwrap_or(""), loc).await;
    }
    tracing::info!(user_id = %user_id, "password login succeeded");
    complete_login(app, jar, user_id, vec![AMR_PASSWORD.to_owned()], ACR_1FA, req).await
}

/// The right password, but a pending one: nobody is signed in until the address is proven
/// from this browser. A code bound to it goes to the address, and the page says to enter it;
/// a wrong password gets the usual failure, so only who knows the password sees this.
async fn verify_first(
    app: &AppState,
    client_ip: ClientIp,
    jar: CookieJar,
    user_id: &str,
    email: &str,
    f: Option<&Flow>,
    loc: &str,
) -> Result<Response, PageError> {
    let now = app.clock.now();
    let req = f.map(|f| f.req_id.as_str()).unwrap_or("");
    if let Verdict::Limited { retry_after } = limits::code_send(&app.db, &app.config.limits, email, &client_ip.to_string(), now).await? {
        return Ok(render_limited(app, loc, "limited.too_many_codes", retry_after, req));
    }
    let (jar, issued, link) = bound_code(app, jar, user_id, email, VERIFY_EMAIL, req, now).await?;
    notify::send_later(
        &app.pages,
        &app.mailer,
        &app.config.issuer,
        Kind::VerifyEmail,
        email,
        loc,
        Some(&issued.code),
        Some(&link),
    );
    tracing::info!(user_id = %user_id, "password login held until the address is verified");
    let view = CodeView {
        req,
        email,
        purpose: VERIFY_EMAIL,
        notice: Some("login.verify_first"),
        error: None,
        mail_failed: false,
    };
    Ok(render_code_page(app, jar, loc, view))
}

/// A code for a known user, bound to this browser and to the request, with its magic link.
async fn bound_code(
    app: &AppState,
    jar: CookieJar,
    user_id: &str,
    email: &str,
    purpose: &'static str,
    req: &str,
    now: i64,
) -> Result<(CookieJar, email_otp::Issued, String), PageError> {
    let (jar, browser) = browser_hash(app, jar);
    let ctx = Context {
        user_id: Some(user_id),
        browser_hash: &browser,
        request_id: (!req.is_empty()).then_some(req),
    };
    let issued = email_otp::issue(&app.db, &app.hmac_key, email, purpose, ctx, app.config.otp_ttl, now).await?;
    let link = format!("{}{}?token={}", app.config.issuer, paths::LOGIN_LINK, issued.link_token);
    Ok((jar, issued, link))
}

/// Password accepted, a second factor asked for: an emailed code bound to this browser.
async fn step_up(app: &AppState, jar: CookieJar, user_id: &str, email: &str, req: &str, loc: &str) -> Result<Response, PageError> {
    let (jar, issued, link) = bound_code(app, jar, user_id, email, SECOND_FACTOR, req, app.clock.now()).await?;
    let delivered = notify::send(
        &app.pages,
        &app.mailer,
        &app.config.issuer,
        Kind::SecondFactor,
        email,
        loc,
        Some(&issued.code),
        Some(&link),
    )
    .await;
    tracing::info!(user_id = %user_id, "password accepted; second step by email code");
    let view = CodeView {
        req,
        email,
        purpose: SECOND_FACTOR,
        notice: Some("login.second_factor"),
        error: None,
        mail_failed: !delivered,
    };
    Ok(render_code_page(app, jar, loc, view))
}

/// Ends a successful login: a new session, then back to the authorization request or the account page.
pub(super) async fn complete_login(
    app: &AppState,
    jar: CookieJar,
    user_id: &str,
    amr: Vec<String>,
    acr: &str,
    req: Option<&str>,
) -> Result<Response, PageError> {
    let jar = start_session(app, jar, user_id, amr, acr).await?;
    let next = match req.filter(|r| !r.is_empty()) {
        Some(r) => {
            mark_fresh_login(app, r).await?;
            format!("{}?req={r}", paths::AUTHORIZE_RESUME)
        }
        None => paths::ACCOUNT.to_owned(),
    };
    Ok((jar, no_store(Redirect::to(&next).into_response())).into_response())
}

#[derive(Serialize)]
struct DonePage<'a> {
    locale: &'a str,
    /// `done.signup` or `done.reset`: the title and text keys.
    confirmed: &'a str,
    email: Option<&'a str>,
    next_url: String,
}

/// Ends a login that also finished something the user should see confirmed (a verified
/// sign-up, a new password): the same session as `complete_login`, then a page saying so
/// with a button to where the redirect would have gone.
pub(super) async fn complete_login_confirmed(
    app: &AppState,
    jar: CookieJar,
    login: (&str, Vec<String>, &str),
    req: Option<&str>,
    loc: &str,
    done: &str,
) -> Result<Response, PageError> {
    let (user_id, amr, acr) = login;
    let redirect = complete_login(app, jar, user_id, amr, acr, req).await?;
    let Some(next_url) = redirect
        .headers()
        .get(axum::http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(redirect);
    };
    let email = app.db.user_get(user_id).await?.map(|u| u.email);
    let ctx = DonePage {
        locale: loc,
        confirmed: done,
        email: email.as_deref(),
        next_url,
    };
    let html = app.pages.render("done.html", &ctx).map_err(PageError::internal)?;
    // Keep the session cookie `complete_login` set, swap the redirect for the page.
    let (mut parts, _) = redirect.into_parts();
    parts.status = StatusCode::OK;
    parts.headers.remove(axum::http::header::LOCATION);
    let mut resp = Response::from_parts(parts, Body::from(html));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(no_store(resp))
}

/// What every code and reset form starts from.
pub(super) struct Step {
    pub pairs: Vec<(String, String)>,
    pub req: String,
    pub loc: &'static str,
    pub email: String,
}

/// Reads a code or reset form: CSRF-checked fields, the request it belongs to, its language.
pub(super) async fn read_step(app: &AppState, headers: &HeaderMap, jar: &CookieJar, body: Body) -> Result<Step, PageError> {
    let pairs = read_form(app, headers, jar, body).await?;
    let req = field(&pairs, "req").unwrap_or("").to_owned();
    // `req` is stored with an issued code: never at a size the sender chose.
    if req.len() > extract::MAX_REQ_ID {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "error.request_expired"));
    }
    let loc = flow_locale(app, headers, &req).await;
    let email = normalize_email(field(&pairs, "email").unwrap_or(""));
    if email.len() > extract::MAX_EMAIL {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "signup.invalid_email"));
    }
    Ok(Step { pairs, req, loc, email })
}

/// The page language for a step that may belong to an authorization request.
pub(super) async fn flow_locale(app: &AppState, headers: &HeaderMap, req: &str) -> &'static str {
    let ui = match req {
        "" => None,
        r => load_request(app, Some(r)).await.ok().and_then(|(_, q, _)| q.ui_locales),
    };
    locale(headers, ui.as_deref())
}

/// A new session id on every login (no fixation); any previous session of this browser ends.
async fn start_session(app: &AppState, jar: CookieJar, user_id: &str, amr: Vec<String>, acr: &str) -> Result<CookieJar, PageError> {
    let now = app.clock.now();
    if let Some(old) = jar.get(&cookie_name(app, SESSION_COOKIE)) {
        app.db.session_delete(&sha256_b64(old.value())).await?;
    }
    let id = random_token(32);
    let session = LoginSession {
        session_hash: sha256_b64(&id),
        user_id: user_id.to_owned(),
        auth_time: now,
        amr,
        acr: acr.to_owned(),
        expires_at: now + app.config.session_ttl,
    };
    app.db.session_create(&session, now).await?;
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
struct SignupPage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    req: &'a str,
    email: &'a str,
    name: &'a str,
    error: Option<&'a str>,
    login_url: String,
}

fn forgot_url(req: &str) -> String {
    if req.is_empty() {
        paths::PASSWORD_FORGOT.to_owned()
    } else {
        format!("{}?req={req}", paths::PASSWORD_FORGOT)
    }
}

fn login_url(req: &str) -> String {
    if req.is_empty() {
        paths::LOGIN.to_owned()
    } else {
        format!("{}?req={req}", paths::LOGIN)
    }
}

pub async fn signup_get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let pairs = query_pairs(q);
    let f = match flow(&app, field(&pairs, "req")).await {
        Ok(f) => f,
        Err(e) => return render_page_error(&app, locale(&headers, None), &e),
    };
    let loc = locale(&headers, f.as_ref().and_then(|f| f.ui_locales.as_deref()));
    if !app.config.signup_open {
        let closed = PageError::new(StatusCode::FORBIDDEN, "signup.closed").in_flow(f.as_ref().map(|f| f.req_id.as_str()));
        return render_page_error(&app, loc, &closed);
    }
    let req = f.as_ref().map(|f| f.req_id.as_str()).unwrap_or("");
    let (jar, csrf) = csrf_token(&app, jar);
    let ctx = SignupPage {
        locale: loc,
        action: paths::SIGNUP,
        csrf: &csrf,
        req,
        email: "",
        name: "",
        error: None,
        login_url: login_url(req),
    };
    page(&app, jar, StatusCode::OK, "signup.html", &ctx, loc)
}

fn plausible_email(e: &str) -> bool {
    let Some((local, domain)) = e.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= extract::MAX_EMAIL
        && !e.contains(char::is_whitespace)
}

pub async fn signup_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, signup_post_inner(&app, ip, &headers, jar, body).await)
}

async fn signup_post_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let f = flow(app, field(&pairs, "req")).await?;
    let loc = locale(headers, f.as_ref().and_then(|f| f.ui_locales.as_deref()));
    if !app.config.signup_open {
        return Err(PageError::new(StatusCode::FORBIDDEN, "signup.closed").in_flow(f.as_ref().map(|f| f.req_id.as_str())));
    }
    let req = f.as_ref().map(|f| f.req_id.as_str()).unwrap_or("");
    let email = normalize_email(field(&pairs, "email").unwrap_or(""));
    let name = field(&pairs, "name").unwrap_or("").trim();
    // An empty password makes a passwordless account: it logs in with emailed codes.
    let password = field(&pairs, "password").filter(|p| !p.is_empty());
    let problem = if !plausible_email(&email) {
        Some("signup.invalid_email")
    } else if name.len() > extract::MAX_NAME {
        Some("signup.name_too_long")
    } else {
        password.and_then(|p| password::policy(p, &email).err())
    };
    if let Some(problem) = problem {
        let (jar, csrf) = csrf_token(app, jar);
        let ctx = SignupPage {
            locale: loc,
            action: paths::SIGNUP,
            csrf: &csrf,
            req,
            email: &email,
            name,
            error: Some(problem),
            login_url: login_url(req),
        };
        return Ok(page(app, jar, StatusCode::OK, "signup.html", &ctx, loc));
    }
    let now = app.clock.now();
    if let Verdict::Limited { retry_after } = limits::code_send(&app.db, &app.config.limits, &email, &ip.to_string(), now).await? {
        return Ok(render_limited(app, loc, "limited.too_many_codes", retry_after, req));
    }
    // Hash before looking the email up, so a taken address costs the same time as a new one.
    let hash = match password {
        Some(p) => Some(app.hasher.hash(p).await?),
        None => None,
    };
    let (jar, browser) = browser_hash(app, jar);
    // Mails after the answer, for both branches: a taken address must not show by time.
    match app.db.user_by_email(&email).await? {
        // Never say that the address is taken: the owner is told by mail instead.
        Some(existing) => {
            tracing::info!("sign-up for an existing email");
            let link = format!("{}{}", app.config.issuer, paths::LOGIN);
            let mail_loc = existing.locale.as_deref().unwrap_or(loc);
            notify::send_later(
                &app.pages,
                &app.mailer,
                &app.config.issuer,
                Kind::AccountExists,
                &existing.email,
                mail_loc,
                None,
                Some(&link),
            );
        }
        None => {
            let user = NewUser {
                user_id: random_token(16),
                email: email.clone(),
                email_verified: false,
                name: (!name.is_empty()).then(|| name.to_owned()),
                password_hash: hash,
                roles: vec![],
                locale: Some(loc.to_owned()),
                phone_number: None,
                address: None,
                // Chosen before the address is proven: pending until verified here.
                password_pending: true,
            };
            match app.db.user_create(&user, now).await {
                Ok(()) => {}
                // Two sign-ups racing for one address: the loser is told like any taken one.
                Err(crate::store::StoreError::Conflict(_)) => return Err(PageError::new(StatusCode::CONFLICT, "signup.try_again")),
                Err(e) => return Err(e.into()),
            }
            tracing::info!(user_id = %user.user_id, "account created by sign-up; verification sent");
            let ctx = Context {
                user_id: Some(&user.user_id),
                browser_hash: &browser,
                request_id: (!req.is_empty()).then_some(req),
            };
            let issued = email_otp::issue(&app.db, &app.hmac_key, &email, VERIFY_EMAIL, ctx, app.config.otp_ttl, now).await?;
            let link = format!("{}{}?token={}", app.config.issuer, paths::LOGIN_LINK, issued.link_token);
            notify::send_later(
                &app.pages,
                &app.mailer,
                &app.config.issuer,
                Kind::VerifyEmail,
                &email,
                loc,
                Some(&issued.code),
                Some(&link),
            );
        }
    }
    let view = CodeView {
        req,
        email: &email,
        purpose: VERIFY_EMAIL,
        notice: Some("signup.check_email_code"),
        error: None,
        mail_failed: false,
    };
    Ok(render_code_page(app, jar, loc, view))
}

#[derive(Serialize)]
struct ConsentPage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    req: &'a str,
    client_name: &'a str,
    email: &'a str,
    scopes: &'a [String],
}

pub async fn consent_get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let pairs = query_pairs(q);
    let (row, req, client) = match load_request(&app, field(&pairs, "req")).await {
        Ok(v) => v,
        Err(e) => return render_page_error(&app, locale(&headers, None), &e),
    };
    let loc = locale(&headers, req.ui_locales.as_deref());
    // The page is shown only to a session that would get a code once it answers.
    let user_id = match decision(&app, &jar, &req, &client, Some(Consent::Given)).await {
        Ok(Next::Issue(approval)) => approval.user_id,
        Ok(Next::Fail(e)) => return respond_error(&app, &req.target(), &e),
        Ok(Next::Login | Next::Consent) => {
            return no_store(Redirect::to(&format!("{}?req={}", paths::LOGIN, row.request_id)).into_response());
        }
        Err(e) => return render_page_error(&app, loc, &e),
    };
    let user = match app.db.user_get(&user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return no_store(Redirect::to(&format!("{}?req={}", paths::LOGIN, row.request_id)).into_response()),
        Err(e) => return render_page_error(&app, loc, &e.into()),
    };
    let (jar, csrf) = csrf_token(&app, jar);
    let ctx = ConsentPage {
        locale: loc,
        action: paths::CONSENT,
        csrf: &csrf,
        req: &row.request_id,
        client_name: &client.name,
        email: &user.email,
        scopes: &req.scope,
    };
    page(&app, jar, StatusCode::OK, "consent.html", &ctx, loc)
}

async fn signed_in_user(app: &AppState, jar: &CookieJar) -> Result<Option<(LoginSession, crate::store::User)>, PageError> {
    let Some(s) = current_session(app, jar).await? else {
        return Ok(None);
    };
    Ok(app.db.user_get(&s.user_id).await?.map(|u| (s, u)))
}

pub async fn consent_post(State(app): State<AppState>, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, consent_post_inner(&app, &headers, jar, body).await)
}

async fn consent_post_inner(app: &AppState, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let (row, req, client) = load_request(app, field(&pairs, "req")).await?;
    // A malformed answer leaves the request waiting for a proper one.
    let allow = match field(&pairs, "decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => return Err(PageError::new(StatusCode::BAD_REQUEST, "error.bad_request")),
    };
    answer_consent(app, &jar, &row.request_id, &req, &client, allow).await
}

#[derive(Serialize)]
struct AccountPage<'a> {
    locale: &'a str,
    email: Option<&'a str>,
    csrf: &'a str,
    logout_action: &'a str,
    login_url: &'a str,
}

pub async fn account_get(State(app): State<AppState>, headers: HeaderMap, jar: CookieJar) -> Response {
    let loc = locale(&headers, None);
    let user = match signed_in_user(&app, &jar).await {
        Ok(u) => u,
        Err(e) => return render_page_error(&app, loc, &e),
    };
    let (jar, csrf) = csrf_token(&app, jar);
    let ctx = AccountPage {
        locale: loc,
        email: user.as_ref().map(|u| u.1.email.as_str()),
        csrf: &csrf,
        logout_action: paths::END_SESSION,
        login_url: paths::LOGIN,
    };
    page(&app, jar, StatusCode::OK, "account.html", &ctx, loc)
}
