//! Hosted pages: log in, sign up, consent, account. Plain forms, no JavaScript needed. The
//! login chain itself is `auth::engine`'s: these handlers read a form, call it, and render.

use axum::body::Body;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::authorize::{answer_consent, decision, load_request, respond_error};
use super::client_ip::ClientIp;
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, browser_hash, csrf_guard, csrf_token, field, locale};
use super::steps::{self, Who};
use crate::app::AppState;
use crate::auth::attempt::Purpose;
use crate::auth::engine;
use crate::auth::methods::AuthMethod;
use crate::auth::methods::backup_code::BackupCode;
use crate::auth::methods::password::Password;
use crate::auth::methods::totp::Totp;
use crate::auth::password;
use crate::oauth::authorize::{Consent, Next};
use crate::paths;
use crate::secret::Secret;
use crate::store::{StoreError, normalize_email};

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
    ui_locales: Option<String>,
    login_hint: Option<String>,
    client_name: Option<String>,
    // dcr
    links: ClientLinks,
}

/// What a client registered to be shown with its name (OIDC Registration §2): a logo only
/// from https or loopback, so our page loads nothing over plain http from the network.
#[derive(Default)]
struct ClientLinks {
    logo: Option<String>,
    policy_uri: Option<String>,
    tos_uri: Option<String>,
}

impl ClientLinks {
    fn of(c: &crate::store::Client) -> ClientLinks {
        ClientLinks {
            logo: c.meta.logo_uri.clone().filter(|u| crate::oauth::registration::displayable_logo(u)),
            policy_uri: c.meta.policy_uri.clone(),
            tos_uri: c.meta.tos_uri.clone(),
        }
    }
}

/// The pages' CSP allows images from our origin only; a client's logo needs its origin too.
fn allow_logo(mut resp: Response, logo: Option<&str>) -> Response {
    let origin = logo.and_then(|l| url::Url::parse(l).ok()).map(|u| u.origin().ascii_serialization());
    if let Some(origin) = origin
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: {origin}; frame-ancestors 'none'; base-uri 'none'"
        ))
    {
        resp.headers_mut().insert(axum::http::header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

async fn flow(app: &AppState, req_id: Option<&str>) -> Result<Option<Flow>, PageError> {
    match req_id {
        None | Some("") => Ok(None),
        Some(id) => {
            let (row, req, client) = load_request(app, Some(id)).await?;
            Ok(Some(Flow {
                req_id: row.request_id,
                ui_locales: req.ui_locales,
                login_hint: req.login_hint,
                links: ClientLinks::of(&client),
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
    // fed
    upstreams: Vec<super::upstream::Button>,
    client_logo: Option<&'a str>,
    client_policy_uri: Option<&'a str>,
    client_tos_uri: Option<&'a str>,
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

/// The login page: the address once, then the methods (the same ones for every address).
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
        upstreams: super::upstream::buttons(app, paths::LOGIN_UPSTREAM),
        client_logo: f.and_then(|f| f.links.logo.as_deref()),
        client_policy_uri: f.and_then(|f| f.links.policy_uri.as_deref()),
        client_tos_uri: f.and_then(|f| f.links.tos_uri.as_deref()),
    };
    allow_logo(page(app, jar, status, "login.html", &ctx, loc), ctx.client_logo)
}

/// The login page again for a step of the engine (a wrong password, a limit).
pub(super) async fn render_login_for(
    app: &AppState,
    jar: CookieJar,
    status: StatusCode,
    req: &str,
    loc: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    match flow(app, Some(req)).await {
        Ok(f) => render_login(app, jar, status, f.as_ref(), loc, email, error),
        Err(e) => render_page_error(app, loc, &e),
    }
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

/// POST /login — the address and its password, as the first factor.
pub async fn login_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, login_post_inner(&app, ip, &headers, jar, body).await)
}

async fn login_post_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let f = flow(app, field(&pairs, "req")).await?;
    let loc = locale(headers, f.as_ref().and_then(|f| f.ui_locales.as_deref()));
    let email = normalize_email(field(&pairs, "email").unwrap_or(""));
    let password = field(&pairs, "password").unwrap_or("");
    if email.len() > extract::MAX_EMAIL || password.len() > extract::MAX_PASSWORD {
        // No account has such an address or password: the usual failure, nothing counted or written.
        return Ok(render_login(app, jar, StatusCode::OK, f.as_ref(), loc, "", Some("login.failed")));
    }
    let (jar, browser) = browser_hash(app, jar);
    let req = f.as_ref().map(|f| f.req_id.as_str()).unwrap_or("");
    let live = steps::new_attempt(app, req, Purpose::Login, &email, &browser).await?;
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::submit::<Password>(&steps::deps(app), who.caller(), live, Secret::new(password), app.clock.now()).await?;
    steps::render(app, jar, &who, step).await
}

/// POST /login/password — the password as a further factor, for the attempt's known user.
pub async fn password_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, password_post_inner(&app, ip, &headers, jar, body).await)
}

async fn password_post_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let (jar, browser) = browser_hash(app, jar);
    let live = steps::posted_attempt(app, &pairs, &browser, "login.attempt_over").await?;
    let loc = steps::attempt_locale(app, headers, &live).await;
    let password = field(&pairs, "password").unwrap_or("");
    // Longer than any password we accept: wrong, without hashing it.
    let password = if password.len() > extract::MAX_PASSWORD { "" } else { password };
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::submit::<Password>(&steps::deps(app), who.caller(), live, Secret::new(password), app.clock.now()).await?;
    steps::render(app, jar, &who, step).await
}

/// POST /login/totp and /login/backup-code — the second factor of a user with TOTP on.
pub async fn totp_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, second_factor::<Totp>(&app, ip, &headers, jar, body).await)
}

pub async fn backup_code_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, second_factor::<BackupCode>(&app, ip, &headers, jar, body).await)
}

async fn second_factor<M: AuthMethod<Input = Secret>>(
    app: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let (jar, browser) = browser_hash(app, jar);
    let live = steps::posted_attempt(app, &pairs, &browser, "login.attempt_over").await?;
    let loc = steps::attempt_locale(app, headers, &live).await;
    let code = field(&pairs, "code").unwrap_or("");
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::submit::<M>(&steps::deps(app), who.caller(), live, Secret::new(code), app.clock.now()).await?;
    steps::render(app, jar, &who, step).await
}

/// What every code and reset form starts from.
pub(super) struct Step {
    pub req: String,
    pub loc: &'static str,
    pub email: String,
}

/// Reads a form that starts an attempt by email: CSRF-checked fields, the request it belongs
/// to, its language.
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
    Ok(Step { req, loc, email })
}

/// The page language for a step that may belong to an authorization request.
pub(super) async fn flow_locale(app: &AppState, headers: &HeaderMap, req: &str) -> &'static str {
    let ui = match req {
        "" => None,
        r => load_request(app, Some(r)).await.ok().and_then(|(_, q, _)| q.ui_locales),
    };
    locale(headers, ui.as_deref())
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
    // fed
    upstreams: Vec<super::upstream::Button>,
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
        upstreams: super::upstream::buttons(&app, paths::LOGIN_UPSTREAM),
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
            upstreams: super::upstream::buttons(app, paths::LOGIN_UPSTREAM),
        };
        return Ok(page(app, jar, StatusCode::OK, "signup.html", &ctx, loc));
    }
    let (jar, browser) = browser_hash(app, jar);
    let live = steps::new_attempt(app, req, Purpose::Signup, &email, &browser).await?;
    let who = Who::new(ip, headers, browser, loc);
    let name = (!name.is_empty()).then_some(name);
    let step = match engine::signup(
        &steps::deps(app),
        who.caller(),
        live,
        name,
        password.map(Secret::new),
        app.clock.now(),
    )
    .await
    {
        Ok(step) => step,
        // Two sign-ups racing for one address: the loser is told like any taken one.
        Err(crate::auth::AuthError::Store(StoreError::Conflict(_))) => {
            return Err(PageError::new(StatusCode::CONFLICT, "signup.try_again"));
        }
        Err(e) => return Err(e.into()),
    };
    steps::render(app, jar, &who, step).await
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
    client_logo: Option<&'a str>,
    client_policy_uri: Option<&'a str>,
    client_tos_uri: Option<&'a str>,
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
    let links = ClientLinks::of(&client);
    let ctx = ConsentPage {
        locale: loc,
        action: paths::CONSENT,
        csrf: &csrf,
        req: &row.request_id,
        client_name: &client.name,
        email: &user.email,
        scopes: &req.scope,
        client_logo: links.logo.as_deref(),
        client_policy_uri: links.policy_uri.as_deref(),
        client_tos_uri: links.tos_uri.as_deref(),
    };
    allow_logo(page(&app, jar, StatusCode::OK, "consent.html", &ctx, loc), ctx.client_logo)
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
