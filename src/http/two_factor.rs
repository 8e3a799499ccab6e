//! The two-factor pages under /account/two-factor: status, TOTP enrolment, backup codes shown
//! once, regenerate and disable. Behind a login session, plain forms, no JavaScript; every
//! post passes the CSRF check. Disable and regenerate need a recent authentication.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::account::{Signed, signed_in};
use super::client_ip::ClientIp;
use super::error::{PageError, no_store, render_page_error};
use super::extract::{self, csrf_token, field, locale};
use super::login::read_form;
use crate::app::AppState;
use crate::auth::attempt::Action;
use crate::auth::second_factor::{self, Confirmed, Enrolment, TotpState};
use crate::auth::totp;
use crate::paths;
use crate::store::{NewEvent, User};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::TWO_FACTOR, get(status_get))
        .route(paths::TWO_FACTOR_ENABLE, post(enable_post))
        .route(paths::TWO_FACTOR_CONFIRM, post(confirm_post))
        .route(paths::TWO_FACTOR_DISABLE, post(disable_post))
        .route(paths::TWO_FACTOR_BACKUP_CODES, post(regenerate_post))
}

/// The page a request is answered with, or where it is sent.
type Answer = Result<Response, PageError>;

fn page<S: Serialize>(app: &AppState, jar: CookieJar, name: &str, ctx: &S, loc: &str) -> Response {
    match app.pages.render(name, ctx) {
        Ok(html) => (jar, no_store((StatusCode::OK, Html(html)).into_response())).into_response(),
        Err(e) => render_page_error(app, loc, &PageError::internal(e)),
    }
}

fn see_other(to: &str) -> Response {
    no_store(Redirect::to(to).into_response())
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

/// The security event's where and how.
fn event<'a>(ip: &'a str, headers: &'a HeaderMap) -> NewEvent<'a> {
    NewEvent {
        ip: Some(ip),
        user_agent: user_agent(headers),
        detail: None,
    }
}

fn answer(app: &AppState, loc: &str, r: Answer) -> Response {
    r.unwrap_or_else(|e| render_page_error(app, loc, &e))
}

#[derive(Serialize)]
struct StatusPage<'a> {
    locale: &'a str,
    csrf: &'a str,
    email: &'a str,
    totp_on: bool,
    backup_codes_left: i64,
    locked_minutes: Option<i64>,
    notice: Option<&'static str>,
    enable_action: &'static str,
    disable_action: &'static str,
    regenerate_action: &'static str,
    account_url: &'static str,
}

pub async fn status_get(State(app): State<AppState>, headers: HeaderMap, jar: CookieJar, query: axum::extract::RawQuery) -> Response {
    let loc = locale(&headers, None);
    answer(&app, loc, status(&app, jar, loc, query.0.as_deref()).await)
}

async fn status(app: &AppState, jar: CookieJar, loc: &str, query: Option<&str>) -> Answer {
    let Some(Signed { user, .. }) = signed_in(app, &jar).await? else {
        return Ok(see_other(paths::LOGIN));
    };
    let now = app.clock.now();
    let st = second_factor::status(&app.db, &user.user_id, now).await?;
    let totp_on = st.totp == TotpState::On;
    let backup_codes_left = st.backup_codes_left;
    let locked_minutes = st.locked_until.map(|until| (until - now + 59) / 60);
    let pairs = extract::parse(query.unwrap_or("").as_bytes());
    // Only our own notices, by name: a query string cannot put text on the page.
    let notice = match field(&pairs, "done") {
        Some("disabled") => Some("two_factor.notice.disabled"),
        _ => None,
    };
    let (jar, csrf) = csrf_token(app, jar);
    let ctx = StatusPage {
        locale: loc,
        csrf: &csrf,
        email: &user.email,
        totp_on,
        backup_codes_left,
        locked_minutes,
        notice,
        enable_action: paths::TWO_FACTOR_ENABLE,
        disable_action: paths::TWO_FACTOR_DISABLE,
        regenerate_action: paths::TWO_FACTOR_BACKUP_CODES,
        account_url: paths::ACCOUNT,
    };
    Ok(page(app, jar, "two_factor.html", &ctx, loc))
}

#[derive(Serialize)]
struct EnrolPage<'a> {
    locale: &'a str,
    csrf: &'a str,
    action: &'static str,
    qr_svg: &'a str,
    otpauth_uri: &'a str,
    secret_grouped: &'a str,
    error: Option<&'static str>,
    back_url: &'static str,
}

fn enrol_page(app: &AppState, jar: CookieJar, loc: &str, user: &User, secret: &[u8], error: Option<&'static str>) -> Answer {
    let e = Enrolment::new(&app.config.totp_issuer, user, secret)?;
    let (jar, csrf) = csrf_token(app, jar);
    let ctx = EnrolPage {
        locale: loc,
        csrf: &csrf,
        action: paths::TWO_FACTOR_CONFIRM,
        qr_svg: &e.qr_svg,
        otpauth_uri: &e.otpauth_uri,
        secret_grouped: &e.secret_grouped,
        error,
        back_url: paths::TWO_FACTOR,
    };
    Ok(page(app, jar, "two_factor_enrol.html", &ctx, loc))
}

/// Starts an enrolment: a fresh secret, stored sealed and pending until a valid code.
pub async fn enable_post(State(app): State<AppState>, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    let loc = locale(&headers, None);
    answer(&app, loc, enable(&app, &headers, jar, loc, body).await)
}

async fn enable(app: &AppState, headers: &HeaderMap, jar: CookieJar, loc: &str, body: Body) -> Answer {
    // Only the start needs a recent login: the confirmation can only finish a secret that a
    // recent session started.
    let user = match sensitive(app, headers, &jar, body, Action::EnableTotp).await? {
        Ok(u) => u,
        Err(redirect) => return Ok(redirect),
    };
    let Some(secret) = second_factor::start(app, &user, app.clock.now()).await? else {
        // Already on: the status page says so and offers what can be done.
        return Ok(see_other(paths::TWO_FACTOR));
    };
    enrol_page(app, jar, loc, &user, &secret, None)
}

#[derive(Serialize)]
struct CodesPage<'a> {
    locale: &'a str,
    notice: &'static str,
    codes: &'a [String],
    download_href: String,
    download_name: &'static str,
    back_url: &'static str,
}

/// The codes, shown once. The download is a `data:` link with a `download` attribute: a file
/// made by the browser from the page itself, with no request and no script (the CSP's
/// `default-src 'none'` governs fetches, not downloads).
fn codes_page(app: &AppState, jar: CookieJar, loc: &str, notice: &'static str, codes: &[String]) -> Response {
    let heading = app.pages.text(loc, "two_factor.codes.file_heading").unwrap_or("Backup codes");
    let text = format!("{heading} ({})\n\n{}\n", app.config.totp_issuer, codes.join("\n"));
    let encoded: String = form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let ctx = CodesPage {
        locale: loc,
        notice,
        codes,
        download_href: format!("data:text/plain;charset=utf-8,{encoded}"),
        download_name: "backup-codes.txt",
        back_url: paths::TWO_FACTOR,
    };
    page(app, jar, "two_factor_codes.html", &ctx, loc)
}

/// The first code: TOTP goes on, with eight backup codes, in one transaction.
pub async fn confirm_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    let loc = locale(&headers, None);
    answer(&app, loc, confirm(&app, ip, &headers, jar, loc, body).await)
}

async fn confirm(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, loc: &str, body: Body) -> Answer {
    let pairs = read_form(app, headers, &jar, body).await?;
    let Some(Signed { user, .. }) = signed_in(app, &jar).await? else {
        return Ok(see_other(paths::LOGIN));
    };
    let ip = ip.to_string();
    let event = event(&ip, headers);
    let code = field(&pairs, "code").unwrap_or("");
    match second_factor::confirm(app, &user, code, &event, loc, app.clock.now()).await? {
        // Nothing pending (already on, or never started): the status page shows which.
        Confirmed::NothingPending => Ok(see_other(paths::TWO_FACTOR)),
        Confirmed::Wrong { secret } => enrol_page(app, jar, loc, &user, &secret, Some("two_factor.wrong_code")),
        Confirmed::On { codes } => Ok(codes_page(app, jar, loc, "two_factor.notice.enabled", &codes)),
    }
}

/// The session is too old for a sensitive action: re-authenticate, then back to it.
fn reauth(action: Action) -> Response {
    see_other(&format!("{}?then={}", paths::REAUTH, action.as_str()))
}

/// A sensitive action's preamble: the form, a session, and a recent enough authentication.
async fn sensitive(
    app: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    body: Body,
    action: Action,
) -> Result<Result<User, Response>, PageError> {
    read_form(app, headers, jar, body).await?;
    let Some(Signed { session, user }) = signed_in(app, jar).await? else {
        return Ok(Err(see_other(paths::LOGIN)));
    };
    if !totp::recent_enough(session.auth_time, app.clock.now(), app.config.reauth_after) {
        return Ok(Err(reauth(action)));
    }
    Ok(Ok(user))
}

pub async fn disable_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    let loc = locale(&headers, None);
    answer(&app, loc, disable(&app, ip, &headers, jar, loc, body).await)
}

async fn disable(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, loc: &str, body: Body) -> Answer {
    let user = match sensitive(app, headers, &jar, body, Action::DisableTotp).await? {
        Ok(u) => u,
        Err(redirect) => return Ok(redirect),
    };
    let ip = ip.to_string();
    if !second_factor::disable(app, &user, &event(&ip, headers), loc, app.clock.now()).await? {
        return Ok(see_other(paths::TWO_FACTOR));
    }
    Ok(see_other(&format!("{}?done=disabled", paths::TWO_FACTOR)))
}

pub async fn regenerate_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    let loc = locale(&headers, None);
    answer(&app, loc, regenerate(&app, ip, &headers, jar, loc, body).await)
}

async fn regenerate(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, loc: &str, body: Body) -> Answer {
    let user = match sensitive(app, headers, &jar, body, Action::RegenerateBackupCodes).await? {
        Ok(u) => u,
        Err(redirect) => return Ok(redirect),
    };
    let ip = ip.to_string();
    match second_factor::regenerate(app, &user, &event(&ip, headers), loc, app.clock.now()).await? {
        Some(codes) => Ok(codes_page(app, jar, loc, "two_factor.notice.regenerated", &codes)),
        None => Ok(see_other(paths::TWO_FACTOR)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_actions_round_trip_by_name() {
        for a in [Action::EnableTotp, Action::DisableTotp, Action::RegenerateBackupCodes] {
            assert_eq!(Action::parse(a.as_str()), a);
            assert_eq!(a.page(), paths::TWO_FACTOR);
        }
        assert_eq!(Action::parse("delete_everything"), Action::Account);
    }
}
