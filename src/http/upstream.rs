//! "Continue with Google" and any OpenID Connect upstream (issue 9): the login button's post,
//! the callback, the emailed code of a link's local login, and the account page's link and
//! unlink. The work is `auth::methods::upstream`'s; these read the request and render.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::account::{Post, read_post, user_agent};
use super::client_ip::ClientIp;
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, SESSION_COOKIE, browser_hash, cookie_name, field, locale};
use super::login::read_form;
use super::steps::{self, Who};
use crate::app::AppState;
use crate::auth::attempt::{Action, Purpose, Requirement};
use crate::auth::engine;
use crate::auth::methods::email_code::EmailCode;
use crate::auth::methods::upstream::{self, Callback};
use crate::paths;
use crate::secret::{Secret, sha256_b64};
use crate::store::{EventKind, Identity, NewEvent, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::LOGIN_UPSTREAM, post(start_post))
        .route(paths::LOGIN_CALLBACK, get(callback_get))
        .route(paths::LOGIN_UPSTREAM_CODE, post(link_code_post))
        .route(paths::ACCOUNT_UPSTREAM_LINK, post(account_link_post))
        .route(paths::ACCOUNT_UPSTREAM_UNLINK, post(unlink_post))
}

/// A button for each configured upstream, in configuration order (Google first).
#[derive(Serialize)]
pub struct Button {
    pub id: String,
    /// The configured label; Google's is the catalogue's, in the page's language.
    pub label: String,
    /// Google's branding: the "G" logo and its wording (developers.google.com/identity/branding-guidelines).
    pub google: bool,
    pub action: String,
}

pub fn buttons(app: &AppState, path: &'static str) -> Vec<Button> {
    app.upstreams
        .all()
        .map(|c| {
            let u = c.upstream();
            Button {
                id: u.id.clone(),
                label: u.button_label.clone(),
                google: u.id == "google",
                action: path.replace("{id}", &u.id),
            }
        })
        .collect()
}

/// POST /login/upstream/{id}: from the login or sign-up page (its CSRF token and `req`), a
/// new attempt and the redirect to the upstream.
pub async fn start_post(
    State(app): State<AppState>,
    ip: ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Response {
    page_or_error(&app, &headers, start_inner(&app, ip, &id, &headers, jar, body).await)
}

async fn start_inner(
    app: &AppState,
    ip: ClientIp,
    id: &str,
    headers: &HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let req = field(&pairs, "req").unwrap_or("");
    if req.len() > extract::MAX_REQ_ID {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "error.request_expired"));
    }
    let loc = super::login::flow_locale(app, headers, req).await;
    let (jar, browser) = browser_hash(app, jar);
    let mut live = steps::new_attempt(app, req, Purpose::Login, "", &browser).await?;
    live.attempt.claimed_email = None;
    let who = Who::new(ip, headers, browser, loc);
    let step = upstream::start(&steps::deps(app), live, id, app.clock.now()).await?;
    steps::render(app, jar, &who, step).await
}

/// GET /login/callback/{id}: the upstream's redirect back (OIDC Core §3.1.2.5).
pub async fn callback_get(
    State(app): State<AppState>,
    ip: ClientIp,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let pairs = extract::parse(q.unwrap_or_default().as_bytes());
    let cb = Callback {
        state: field(&pairs, "state").unwrap_or("").to_owned(),
        code: field(&pairs, "code").map(Secret::new),
        error: field(&pairs, "error").map(str::to_owned),
    };
    let loc = locale(&headers, None);
    let (jar, browser) = browser_hash(&app, jar);
    let who = Who::new(ip, &headers, browser, loc);
    let result = async {
        let step = upstream::callback(&steps::deps(&app), who.caller(), &id, cb, app.clock.now()).await?;
        steps::render(&app, jar, &who, step).await
    }
    .await;
    result.unwrap_or_else(|e| render_page_error(&app, loc, &e))
}

/// POST /login/upstream-link/code: "email me a code" on the link page, for that attempt.
pub async fn link_code_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, link_code_inner(&app, ip, &headers, jar, body).await)
}

async fn link_code_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let pairs = read_form(app, headers, &jar, body).await?;
    let (jar, browser) = browser_hash(app, jar);
    let live = steps::posted_attempt(app, &pairs, &browser, "login.attempt_over").await?;
    // Only a link waiting for its local login; anything else starts at the login page.
    if !matches!(live.attempt.purpose, Purpose::Link { .. }) || !live.attempt.factors.is_empty() || live.attempt.pending.is_some() {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "login.attempt_over"));
    }
    let loc = steps::attempt_locale(app, headers, &live).await;
    let who = Who::new(ip, headers, browser, loc);
    let step = engine::begin::<EmailCode>(&steps::deps(app), who.caller(), live, app.clock.now()).await?;
    steps::render(app, jar, &who, step).await
}

/// POST /account/upstream/{id}/link: the same redirect, bound to the signed-in user.
pub async fn account_link_post(
    State(app): State<AppState>,
    ip: ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Response {
    page_or_error(&app, &headers, account_link_inner(&app, ip, &id, &headers, jar, body).await)
}

async fn account_link_inner(
    app: &AppState,
    ip: ClientIp,
    id: &str,
    headers: &HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Result<Response, PageError> {
    let _ = read_form(app, headers, &jar, body).await?;
    let Some(signed) = super::account::signed_in(app, &jar).await? else {
        return Ok(no_store(Redirect::to(paths::LOGIN).into_response()));
    };
    let Some(session_hash) = jar.get(&cookie_name(app, SESSION_COOKIE)).map(|c| sha256_b64(c.value())) else {
        return Ok(no_store(Redirect::to(paths::LOGIN).into_response()));
    };
    let loc = locale(headers, None);
    let (jar, browser) = browser_hash(app, jar);
    let now = app.clock.now();
    let purpose = Purpose::LinkFromAccount { session_hash };
    let mut live = engine::begin_attempt(purpose, None, Requirement::ONE, &signed.user.email, &browser, now);
    // The user is the session's, never a form's.
    live.attempt.user_id = Some(signed.user.user_id.clone());
    let who = Who::new(ip, headers, browser, loc);
    let step = upstream::start(&steps::deps(app), live, id, now).await?;
    steps::render(app, jar, &who, step).await
}

/// Whether the account keeps a way in without `leaving`: a usable password, a verified
/// address (emailed codes), or another linked identity.
pub fn another_way_in(user: &crate::store::User, identities: &[Identity], leaving: Option<&Identity>) -> bool {
    let password = user.password_hash.is_some() && !user.password_pending;
    let others = identities
        .iter()
        .filter(|i| leaving.is_none_or(|l| !(l.issuer == i.issuer && l.subject == i.subject)))
        .count();
    password || user.email_verified || others > 0
}

/// An opaque name for one identity in the account page's form (as session handles are).
pub fn handle(app: &AppState, i: &Identity) -> String {
    app.hmac_key.mac(&["identity-handle", &i.issuer, &i.subject])
}

/// POST /account/upstream/unlink: a sensitive action (re-authentication first), refused while
/// the identity is the only way in.
pub async fn unlink_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, unlink_inner(&app, ip, &headers, jar, body).await)
}

async fn unlink_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let p: Post = match read_post(app, headers, &jar, body, Action::Unlink.as_str()).await? {
        Ok(p) => p,
        Err(resp) => return Ok(resp),
    };
    let user = &p.signed.user;
    let presented = field(&p.pairs, "identity").unwrap_or("");
    let identities = app.db.identities_for_user(&user.user_id).await?;
    let Some(target) = identities
        .iter()
        .find(|i| presented.len() <= 128 && app.hmac_key.verify(&["identity-handle", &i.issuer, &i.subject], presented))
    else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "account.identity_unknown"));
    };
    if !another_way_in(user, &identities, Some(target)) {
        tracing::info!(user_id = %user.user_id, upstream = %target.upstream_id, "unlink refused: the only way in");
        return Err(PageError::new(StatusCode::CONFLICT, "account.unlink_last"));
    }
    let (now, client_ip, ua) = (app.clock.now(), ip.to_string(), user_agent(headers));
    let mut tx = app.db.begin().await?;
    match tx.identity_unlink(&user.user_id, &target.issuer, &target.subject).await {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => {
            tx.rollback().await?;
            return Err(PageError::new(StatusCode::BAD_REQUEST, "account.identity_unknown"));
        }
        Err(e) => return Err(e.into()),
    }
    // Re-checked inside the transaction: two unlinks at once must not leave the account locked out.
    if !user.email_verified && user.password_hash.is_none() && tx.identities_count(&user.user_id).await? == 0 {
        tx.rollback().await?;
        return Err(PageError::new(StatusCode::CONFLICT, "account.unlink_last"));
    }
    let event = NewEvent {
        ip: Some(&client_ip),
        user_agent: ua.as_deref(),
        detail: Some(&target.upstream_id),
    };
    tx.event_record(&user.user_id, EventKind::UpstreamUnlinked, &event, now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, upstream = %target.upstream_id, "upstream identity unlinked");
    let _ = p.loc;
    Ok(no_store(Redirect::to(&format!("{}?done=unlinked", paths::ACCOUNT)).into_response()))
}
