//! The account security page (`/account`): the address and its state, password and email
//! changes, active sessions and recent security events. Plain forms, no JavaScript needed;
//! every post is CSRF-checked, and the sensitive ones need a recent authentication.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use serde::Serialize;

use super::authorize::current_session;
use super::client_ip::ClientIp;
use super::error::{PageError, no_store, page_or_error, render_page_error};
use super::extract::{self, SESSION_COOKIE, browser_hash, cookie_name, csrf_token, field, locale};
use super::login::read_form;
use crate::app::AppState;
use crate::auth::email_otp::{self, CHANGE_EMAIL, Context};
use crate::auth::limits::{self, CodeGate, Gate, Verdict};
use crate::auth::password;
use crate::device;
use crate::notify::{self, Kind};
use crate::paths;
use crate::secret::ct_eq;
use crate::store::{Event, EventKind, LoginSession, NewEvent, OtpCheck, SessionInfo, StoreError, User, normalize_email};

/// How many security events the page lists.
const EVENTS_SHOWN: i64 = 20;

/// Changing the password, the email or ending a session needs a login at most `reauth_after`
/// seconds old (`CLEF_REAUTH_AFTER`; issue 8 §4; OWASP ASVS 4.0.3 §3.7.1: re-authentication
/// before sensitive account changes). One rule for every sensitive action: `totp::recent_enough`.
fn needs_reauth(auth_time: i64, now: i64, reauth_after: i64) -> bool {
    !crate::auth::totp::recent_enough(auth_time, now, reauth_after)
}

/// As sent; stored bounded and never shown (the page shows `device::parse`'s labels).
pub(super) fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// An opaque name for one of the user's sessions in a form: an HMAC of its hash under the
/// server key, so the page never shows the hash (which names the session to the store) and a
/// handle means nothing outside the owner's own list.
pub(super) fn handle(app: &AppState, session_hash: &str) -> String {
    app.hmac_key.mac(&["session-handle", session_hash])
}

/// UTC, to the minute; `<time datetime>` carries the exact instant.
fn when(at: i64) -> (String, String) {
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => (
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            ),
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
        ),
        Err(_) => (String::new(), String::new()),
    }
}

#[derive(Serialize)]
struct SessionRow {
    handle: String,
    browser: Option<&'static str>,
    os: Option<&'static str>,
    ip: Option<String>,
    last_seen: String,
    last_seen_iso: String,
    current: bool,
}

#[derive(Serialize)]
struct EventRow {
    label: String,
    at: String,
    at_iso: String,
    ip: Option<String>,
    browser: Option<&'static str>,
    os: Option<&'static str>,
}

#[derive(Serialize)]
struct Actions {
    password: &'static str,
    email: &'static str,
    session_end: &'static str,
    sessions_end: &'static str,
    two_factor: &'static str,
}

const ACTIONS: Actions = Actions {
    password: paths::ACCOUNT_PASSWORD,
    email: paths::ACCOUNT_EMAIL,
    session_end: paths::ACCOUNT_SESSION_END,
    sessions_end: paths::ACCOUNT_SESSIONS_END,
    two_factor: paths::TWO_FACTOR,
};

#[derive(Serialize)]
struct AccountView<'a> {
    email: &'a str,
    email_verified: bool,
    has_password: bool,
    notice: Option<&'static str>,
    password_error: Option<&'static str>,
    email_error: Option<&'static str>,
    new_email: &'a str,
    sessions: Vec<SessionRow>,
    others: usize,
    events: Vec<EventRow>,
    actions: &'a Actions,
    // fed
    /// Linked upstream identities, and a "Link" button per upstream not linked yet.
    identities: Vec<IdentityRow>,
    link_buttons: Vec<super::upstream::Button>,
    unlink_action: &'a str,
}

/// One linked upstream identity on the account page.
#[derive(Serialize)]
struct IdentityRow {
    handle: String,
    name: String,
    email: Option<String>,
    linked: String,
    linked_iso: String,
    /// Unlinking would leave no way in: the button is not offered.
    can_unlink: bool,
}

#[derive(Serialize)]
struct AccountPage<'a> {
    locale: &'a str,
    csrf: &'a str,
    logout_action: &'a str,
    login_url: &'a str,
    account: Option<AccountView<'a>>,
}

/// What a post wants said on the page it answers with.
#[derive(Default)]
struct Flash<'a> {
    notice: Option<&'static str>,
    password_error: Option<&'static str>,
    email_error: Option<&'static str>,
    new_email: &'a str,
}

fn html(app: &AppState, jar: CookieJar, status: StatusCode, name: &str, ctx: &impl Serialize, loc: &str) -> Response {
    match app.pages.render(name, ctx) {
        Ok(page) => (jar, no_store((status, Html(page)).into_response())).into_response(),
        Err(e) => render_page_error(app, loc, &PageError::internal(e)),
    }
}

fn session_rows(app: &AppState, sessions: Vec<SessionInfo>, current: &str) -> Vec<SessionRow> {
    sessions
        .into_iter()
        .map(|s| {
            let d = device::parse(s.user_agent.as_deref().unwrap_or(""));
            let (last_seen, last_seen_iso) = when(s.last_seen_at.max(s.created_at));
            SessionRow {
                handle: handle(app, &s.session_hash),
                browser: d.browser,
                os: d.os,
                ip: s.ip,
                last_seen,
                last_seen_iso,
                current: s.session_hash == current,
            }
        })
        .collect()
}

fn event_rows(events: Vec<Event>) -> Vec<EventRow> {
    events
        .into_iter()
        .map(|e| {
            let d = device::parse(e.user_agent.as_deref().unwrap_or(""));
            let (at, at_iso) = when(e.at);
            EventRow {
                label: format!("event.{}", e.kind.as_str()),
                at,
                at_iso,
                ip: e.ip,
                browser: d.browser,
                os: d.os,
            }
        })
        .collect()
}

async fn render_account(
    app: &AppState,
    jar: CookieJar,
    status: StatusCode,
    loc: &str,
    signed: &Signed,
    flash: Flash<'_>,
) -> Result<Response, PageError> {
    let now = app.clock.now();
    let (user, session) = (&signed.user, &signed.session);
    let mut sessions = session_rows(app, app.db.sessions_for_user(&user.user_id, now).await?, &session.session_hash);
    // This device first, then the others by last use.
    sessions.sort_by_key(|s| !s.current);
    let events = event_rows(app.db.events_recent(&user.user_id, EVENTS_SHOWN).await?);
    let linked = app.db.identities_for_user(&user.user_id).await?;
    let identities = linked
        .iter()
        .map(|i| {
            let (when, iso) = when(i.linked_at);
            IdentityRow {
                handle: super::upstream::handle(app, i),
                // The configured name; an upstream removed from the configuration shows its issuer.
                name: app
                    .upstreams
                    .get(&i.upstream_id)
                    .map_or_else(|| i.issuer.clone(), |c| c.upstream().display_name.clone()),
                email: i.email.clone(),
                linked: when,
                linked_iso: iso,
                can_unlink: super::upstream::another_way_in(user, &linked, Some(i)),
            }
        })
        .collect();
    let link_buttons = super::upstream::buttons(app, paths::ACCOUNT_UPSTREAM_LINK)
        .into_iter()
        .filter(|b| !linked.iter().any(|i| i.upstream_id == b.id))
        .collect();
    let (jar, csrf) = csrf_token(app, jar);
    let ctx = AccountPage {
        locale: loc,
        csrf: &csrf,
        logout_action: paths::END_SESSION,
        login_url: paths::LOGIN,
        account: Some(AccountView {
            email: &user.email,
            email_verified: user.email_verified,
            has_password: user.password_hash.is_some(),
            notice: flash.notice,
            password_error: flash.password_error,
            email_error: flash.email_error,
            new_email: flash.new_email,
            others: sessions.iter().filter(|s| !s.current).count(),
            sessions,
            events,
            actions: &ACTIONS,
            identities,
            link_buttons,
            unlink_action: paths::ACCOUNT_UPSTREAM_UNLINK,
        }),
    };
    Ok(html(app, jar, status, "account.html", &ctx, loc))
}

/// The signed-in user behind a request.
pub(super) struct Signed {
    pub session: LoginSession,
    pub user: User,
}

/// `current_session` also records the use for "last active".
pub(super) async fn signed_in(app: &AppState, jar: &CookieJar) -> Result<Option<Signed>, PageError> {
    let Some(session) = current_session(app, jar).await? else {
        return Ok(None);
    };
    let Some(user) = app.db.user_get(&session.user_id).await? else {
        return Ok(None);
    };
    Ok(Some(Signed { session, user }))
}

/// GET /account
pub async fn get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let loc = locale(&headers, None);
    let result = async {
        let Some(signed) = signed_in(&app, &jar).await? else {
            let (jar, csrf) = csrf_token(&app, jar);
            let ctx = AccountPage {
                locale: loc,
                csrf: &csrf,
                logout_action: paths::END_SESSION,
                login_url: paths::LOGIN,
                account: None,
            };
            return Ok(html(&app, jar, StatusCode::OK, "account.html", &ctx, loc));
        };
        let pairs = extract::parse(q.unwrap_or_default().as_bytes());
        // Only names from this list reach the page: the query is the visitor's to write.
        let notice = match field(&pairs, "done") {
            Some("password") => Some("account.done.password"),
            Some("email") => Some("account.done.email"),
            Some("session") => Some("account.done.session"),
            Some("others") => Some("account.done.others"),
            Some("linked") => Some("account.done.linked"),
            Some("already_linked") => Some("account.done.already_linked"),
            Some("unlinked") => Some("account.done.unlinked"),
            _ => None,
        };
        let flash = Flash {
            notice,
            ..Flash::default()
        };
        render_account(&app, jar, StatusCode::OK, loc, &signed, flash).await
    }
    .await;
    result.unwrap_or_else(|e| render_page_error(&app, loc, &e))
}

/// A post from the account page that passed the CSRF check, by a signed-in user whose login
/// is recent enough for its action (`read_post` answers anything else).
pub(super) struct Post {
    pub pairs: Vec<(String, String)>,
    pub signed: Signed,
    /// The page's language (the browser's, as on GET).
    pub loc: &'static str,
    /// The mails' language: the account's own, else the page's.
    pub mail_loc: String,
}

pub(super) async fn read_post(
    app: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    body: Body,
    action: &str,
) -> Result<Result<Post, Response>, PageError> {
    let pairs = read_form(app, headers, jar, body).await?;
    let Some(signed) = signed_in(app, jar).await? else {
        return Ok(Err(no_store(Redirect::to(paths::LOGIN).into_response())));
    };
    if needs_reauth(signed.session.auth_time, app.clock.now(), app.config.reauth_after) {
        tracing::info!(user_id = %signed.user.user_id, action, "account action needs a recent login");
        let to = format!("{}?then={action}", paths::REAUTH);
        return Ok(Err(no_store(Redirect::to(&to).into_response())));
    }
    let loc = locale(headers, None);
    let mail_loc = signed.user.locale.clone().unwrap_or_else(|| loc.to_owned());
    Ok(Ok(Post {
        pairs,
        signed,
        loc,
        mail_loc,
    }))
}

fn done(what: &str) -> Response {
    no_store(Redirect::to(&format!("{}?done={what}", paths::ACCOUNT)).into_response())
}

pub(super) fn event<'a>(ip: &'a str, ua: Option<&'a str>) -> NewEvent<'a> {
    NewEvent {
        ip: Some(ip),
        user_agent: ua,
        detail: None,
    }
}

/// POST /account/password: the current password (when the account has one) and a new one.
pub async fn password_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, password_inner(&app, ip, &headers, jar, body).await)
}

async fn password_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let p = match read_post(app, headers, &jar, body, "password").await? {
        Ok(p) => p,
        Err(resp) => return Ok(resp),
    };
    let (user, loc) = (&p.signed.user, p.loc);
    let refuse = |status, key| {
        let flash = Flash {
            password_error: Some(key),
            ..Flash::default()
        };
        render_account(app, jar.clone(), status, loc, &p.signed, flash)
    };
    let current = field(&p.pairs, "current_password").unwrap_or("");
    let new = field(&p.pairs, "new_password").unwrap_or("");
    // A weak new password is refused before the current one is checked, so it costs no try.
    if let Err(problem) = password::policy(new, &user.email) {
        return refuse(StatusCode::OK, problem).await;
    }
    if let Some(stored) = user.password_hash.as_deref() {
        if current.len() > extract::MAX_PASSWORD {
            return refuse(StatusCode::OK, "account.password_wrong").await;
        }
        let (l, now, client_ip) = (&app.config.limits, app.clock.now(), ip.to_string());
        // The login's own gate, keyed by the account's address: a session cannot be used to
        // guess the password faster than the login page allows, and failures here count there.
        let refusal = match limits::password_gate(&app.db, l, &user.email, &client_ip, now).await? {
            Gate::Open(reservation) => {
                if app.hasher.verify(current, Some(stored)).await? {
                    reservation.succeeded().await?;
                    None
                } else {
                    tracing::info!(user_id = %user.user_id, client_ip = %ip, "password change: wrong current password");
                    if reservation.failed(l, now).await? {
                        tracing::warn!(user_id = %user.user_id, client_ip = %ip, "password login locked after repeated failures");
                        let link = format!("{}{}", app.config.issuer, paths::LOGIN);
                        notify::send_later(
                            &app.pages,
                            &app.mailer,
                            &app.config.issuer,
                            Kind::Locked,
                            &user.email,
                            &p.mail_loc,
                            None,
                            Some(&link),
                        );
                    }
                    Some((StatusCode::OK, "account.password_wrong"))
                }
            }
            Gate::AccountLocked { .. } => Some((StatusCode::TOO_MANY_REQUESTS, "account.password_locked")),
            Gate::AddressLimited { .. } => Some((StatusCode::TOO_MANY_REQUESTS, "login.ip_limited")),
            Gate::Busy => Some((StatusCode::TOO_MANY_REQUESTS, "login.busy")),
        };
        if let Some((status, key)) = refusal {
            return refuse(status, key).await;
        }
    }
    let hash = app.hasher.hash(new).await?;
    let (now, client_ip, ua) = (app.clock.now(), ip.to_string(), user_agent(headers));
    // The new password, the other sessions' end and the event land together or not at all.
    let mut tx = app.db.begin().await?;
    tx.user_set_password_hash(&user.user_id, &hash, now).await?;
    let ended = tx
        .sessions_end_for_user(&user.user_id, Some(&p.signed.session.session_hash), now)
        .await?;
    tx.event_record(&user.user_id, EventKind::PasswordChanged, &event(&client_ip, ua.as_deref()), now)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, sessions_ended = ended, "password changed from the account page");
    let link = format!("{}{}", app.config.issuer, paths::PASSWORD_FORGOT);
    // Follows a proven factor, so it may wait for the mail (README, "No user enumeration by time").
    notify::send(
        &app.pages,
        &app.mailer,
        &app.config.issuer,
        Kind::PasswordChanged,
        &user.email,
        &p.mail_loc,
        None,
        Some(&link),
    )
    .await;
    Ok(done("password"))
}

/// The same sanity check sign-up applies to an address.
fn plausible_email(e: &str) -> bool {
    let Some((local, domain)) = e.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= extract::MAX_EMAIL
        && !e.contains(char::is_whitespace)
}

#[derive(Serialize)]
struct EmailCodePage<'a> {
    locale: &'a str,
    action: &'a str,
    csrf: &'a str,
    email: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    expires_minutes: i64,
    back_url: &'a str,
}

fn render_email_code(app: &AppState, jar: CookieJar, status: StatusCode, loc: &str, email: &str, error: Option<&str>) -> Response {
    let (jar, csrf) = csrf_token(app, jar);
    let ctx = EmailCodePage {
        locale: loc,
        action: paths::ACCOUNT_EMAIL_VERIFY,
        csrf: &csrf,
        email,
        notice: error.is_none().then_some("account.email_code_sent"),
        error,
        expires_minutes: (app.config.otp_ttl + 59) / 60,
        back_url: paths::ACCOUNT,
    };
    html(app, jar, status, "account_email_code.html", &ctx, loc)
}

/// POST /account/email: a code to the new address; the address changes once it is typed.
pub async fn email_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, email_inner(&app, ip, &headers, jar, body).await)
}

async fn email_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let p = match read_post(app, headers, &jar, body, "email").await? {
        Ok(p) => p,
        Err(resp) => return Ok(resp),
    };
    let (user, loc) = (&p.signed.user, p.loc);
    let new = normalize_email(field(&p.pairs, "email").unwrap_or(""));
    let problem = if !plausible_email(&new) {
        Some("signup.invalid_email")
    } else if new == user.email {
        Some("account.email_same")
    } else {
        None
    };
    if let Some(key) = problem {
        let flash = Flash {
            email_error: Some(key),
            new_email: if new.len() <= extract::MAX_EMAIL { &new } else { "" },
            ..Flash::default()
        };
        return render_account(app, jar, StatusCode::OK, loc, &p.signed, flash).await;
    }
    let now = app.clock.now();
    // The login codes' own budget: this page cannot mail an address more often than "email me a code" can.
    if let Verdict::Limited { .. } = limits::code_send(&app.db, &app.config.limits, &new, &ip.to_string(), now).await? {
        let flash = Flash {
            email_error: Some("limited.too_many_codes"),
            new_email: &new,
            ..Flash::default()
        };
        return render_account(app, jar, StatusCode::TOO_MANY_REQUESTS, loc, &p.signed, flash).await;
    }
    // An address another account uses is refused the way sign-up refuses it: the page says
    // the same thing, the same code row is written (with no user, so it can never change
    // anything), and the address's owner is told by mail instead, after the answer.
    let taken = app.db.user_by_email(&new).await?;
    let (jar, browser) = browser_hash(app, jar);
    let ctx = Context {
        user_id: taken.is_none().then_some(user.user_id.as_str()),
        browser_hash: &browser,
        request_id: None,
    };
    let issued = email_otp::issue(&app.db, &app.hmac_key, &new, CHANGE_EMAIL, ctx, app.config.otp_ttl, now).await?;
    match &taken {
        None => notify::send_later(
            &app.pages,
            &app.mailer,
            &app.config.issuer,
            Kind::ChangeEmailCode,
            &new,
            &p.mail_loc,
            Some(&issued.code),
            None,
        ),
        Some(owner) => {
            tracing::info!(user_id = %user.user_id, "email change to an address in use; its owner is told");
            let link = format!("{}{}", app.config.issuer, paths::LOGIN);
            notify::send_later(
                &app.pages,
                &app.mailer,
                &app.config.issuer,
                Kind::EmailInUse,
                &owner.email,
                owner.locale.as_deref().unwrap_or(loc),
                None,
                Some(&link),
            );
        }
    }
    Ok(render_email_code(app, jar, StatusCode::OK, loc, &new, None))
}

/// POST /account/email/verify: the code from the new address.
pub async fn email_verify_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, email_verify_inner(&app, ip, &headers, jar, body).await)
}

async fn email_verify_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let p = match read_post(app, headers, &jar, body, "email").await? {
        Ok(p) => p,
        Err(resp) => return Ok(resp),
    };
    let (user, loc) = (&p.signed.user, p.loc);
    let new = normalize_email(field(&p.pairs, "email").unwrap_or(""));
    if !plausible_email(&new) {
        return Err(PageError::new(StatusCode::BAD_REQUEST, "signup.invalid_email"));
    }
    let now = app.clock.now();
    // The login codes' limits, keyed by the new address.
    match limits::code_check(&app.db, &app.config.limits, &new, &ip.to_string(), now).await? {
        CodeGate::Allowed { .. } => {}
        CodeGate::Wait { .. } | CodeGate::Locked { .. } => {
            return Ok(render_email_code(
                app,
                jar,
                StatusCode::TOO_MANY_REQUESTS,
                loc,
                &new,
                Some("limited.too_many_tries"),
            ));
        }
    }
    let (jar, browser) = browser_hash(app, jar);
    let typed = field(&p.pairs, "code").unwrap_or("");
    let spent = match email_otp::check(&app.db, &app.hmac_key, &new, CHANGE_EMAIL, typed, now).await? {
        // Bound to this account and to the browser that asked: a code alone moves nothing.
        OtpCheck::Accepted(otp) if otp.user_id.as_deref() == Some(user.user_id.as_str()) && ct_eq(&otp.browser_hash, &browser) => otp,
        OtpCheck::Accepted(_) | OtpCheck::Dead => {
            return Ok(render_email_code(app, jar, StatusCode::OK, loc, &new, Some("code.expired")));
        }
        OtpCheck::Wrong { .. } => return Ok(render_email_code(app, jar, StatusCode::OK, loc, &new, Some("code.wrong"))),
    };
    limits::code_succeeded(&app.db, &spent.email).await?;
    let (client_ip, ua) = (ip.to_string(), user_agent(headers));
    let mut tx = app.db.begin().await?;
    match tx.user_set_email(&user.user_id, &new, now).await {
        Ok(()) => {}
        // Taken since the code was sent: only the new address's holder, who typed its code, sees this.
        Err(StoreError::Conflict(_)) => {
            tx.rollback().await?;
            let flash = Flash {
                email_error: Some("account.email_unavailable"),
                ..Flash::default()
            };
            return render_account(app, jar, StatusCode::CONFLICT, loc, &p.signed, flash).await;
        }
        Err(e) => return Err(e.into()),
    }
    tx.event_record(&user.user_id, EventKind::EmailChanged, &event(&client_ip, ua.as_deref()), now)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "email changed from the account page");
    let link = format!("{}{}", app.config.issuer, paths::LOGIN);
    // The old address hears of it: if this was not its owner, they know at once.
    notify::send(
        &app.pages,
        &app.mailer,
        &app.config.issuer,
        Kind::EmailChanged,
        &user.email,
        &p.mail_loc,
        None,
        Some(&link),
    )
    .await;
    Ok(done("email"))
}

/// The user's own live session that `presented` (a handle from their list) names. Only this
/// user's sessions are candidates, so another user's handle names none, just as an unknown one.
pub(super) async fn own_session(app: &AppState, user_id: &str, presented: &str, now: i64) -> Result<Option<SessionInfo>, StoreError> {
    if presented.is_empty() || presented.len() > 128 {
        return Ok(None);
    }
    Ok(app
        .db
        .sessions_for_user(user_id, now)
        .await?
        .into_iter()
        .find(|s| app.hmac_key.verify(&["session-handle", &s.session_hash], presented)))
}

/// Ends one of the user's sessions and records it, in one transaction. False: it was gone.
pub(super) async fn end_session(
    app: &AppState,
    user: &User,
    session_hash: &str,
    event: &NewEvent<'_>,
    mail_loc: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = app.db.begin().await?;
    if !tx.session_end_for_user(&user.user_id, session_hash, now).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.event_record(&user.user_id, EventKind::SessionEnded, event, now).await?;
    tx.commit().await?;
    sessions_ended_notice(app, user, mail_loc);
    Ok(true)
}

/// Issue 8 §4: ending sessions is a sensitive action, and the owner hears of it, so a thief
/// who logs the owner out everywhere does not do it unseen.
fn sessions_ended_notice(app: &AppState, user: &User, mail_loc: &str) {
    let link = format!("{}{}", app.config.issuer, paths::ACCOUNT);
    notify::send_later(
        &app.pages,
        &app.mailer,
        &app.config.issuer,
        Kind::SessionsEnded,
        &user.email,
        mail_loc,
        None,
        Some(&link),
    );
}

/// POST /account/sessions/end: "log out this one", by the handle the page showed.
pub async fn session_end_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, session_end_inner(&app, ip, &headers, jar, body).await)
}

async fn session_end_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let p = match read_post(app, headers, &jar, body, "session").await? {
        Ok(p) => p,
        Err(resp) => return Ok(resp),
    };
    let (user, now) = (&p.signed.user, app.clock.now());
    let unknown = || PageError::new(StatusCode::BAD_REQUEST, "account.session_unknown");
    let presented = field(&p.pairs, "session").unwrap_or("");
    let target = own_session(app, &user.user_id, presented, now).await?.ok_or_else(unknown)?;
    let (client_ip, ua) = (ip.to_string(), user_agent(headers));
    if !end_session(app, user, &target.session_hash, &event(&client_ip, ua.as_deref()), &p.mail_loc, now).await? {
        return Err(unknown());
    }
    tracing::info!(user_id = %user.user_id, "session ended from the account page");
    if target.session_hash == p.signed.session.session_hash {
        // This device's own session: the browser is signed out, and its cookie goes too.
        let jar = jar.remove(Cookie::build(cookie_name(app, SESSION_COOKIE)).path("/"));
        return Ok((jar, no_store(Redirect::to(paths::ACCOUNT).into_response())).into_response());
    }
    Ok(done("session"))
}

/// POST /account/sessions/end-others: "log out everywhere else".
pub async fn sessions_end_post(State(app): State<AppState>, ip: ClientIp, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    page_or_error(&app, &headers, sessions_end_inner(&app, ip, &headers, jar, body).await)
}

async fn sessions_end_inner(app: &AppState, ip: ClientIp, headers: &HeaderMap, jar: CookieJar, body: Body) -> Result<Response, PageError> {
    let p = match read_post(app, headers, &jar, body, "sessions").await? {
        Ok(p) => p,
        Err(resp) => return Ok(resp),
    };
    let (user, now) = (&p.signed.user, app.clock.now());
    let (client_ip, ua) = (ip.to_string(), user_agent(headers));
    let mut tx = app.db.begin().await?;
    let ended = tx
        .sessions_end_for_user(&user.user_id, Some(&p.signed.session.session_hash), now)
        .await?;
    tx.event_record(&user.user_id, EventKind::OtherSessionsEnded, &event(&client_ip, ua.as_deref()), now)
        .await?;
    tx.commit().await?;
    if ended > 0 {
        sessions_ended_notice(app, user, &p.mail_loc);
    }
    tracing::info!(user_id = %user.user_id, sessions_ended = ended, "other sessions ended from the account page");
    Ok(done("others"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reauth_after_five_minutes() {
        let t = 1_000_000;
        for (auth_time, stale) in [(t, false), (t - 299, false), (t - 300, false), (t - 301, true), (t - 86_400, true)] {
            assert_eq!(needs_reauth(auth_time, t, 300), stale, "{}", t - auth_time);
        }
        assert!(!needs_reauth(t, t, 0), "a login this second is always recent");
    }

    #[test]
    fn times_are_utc_to_the_minute() {
        assert_eq!(
            when(1_764_627_000),
            ("2025-12-01 22:10 UTC".to_owned(), "2025-12-01T22:10:00Z".to_owned())
        );
    }

    /// The signed-in page renders in both languages, escapes what clients chose (user agent
    /// labels come from a table, addresses and IPs are escaped), and names this device.
    #[test]
    fn account_page_renders_in_both_languages() {
        let pages = crate::pages::Pages::load(None).unwrap();
        for (loc, two_factor, this_device) in [
            ("en", "Two-factor login", "This device"),
            ("fr", "Connexion en deux étapes", "Cet appareil"),
        ] {
            let ctx = AccountPage {
                locale: loc,
                csrf: "c",
                logout_action: "/logout",
                login_url: "/login",
                account: Some(AccountView {
                    email: "ana@example.test",
                    email_verified: false,
                    has_password: true,
                    notice: Some("account.done.password"),
                    password_error: Some("account.password_wrong"),
                    email_error: Some("account.email_same"),
                    new_email: "<b>x</b>@example.test",
                    sessions: vec![
                        SessionRow {
                            handle: "h1".into(),
                            browser: Some("Firefox"),
                            os: Some("Linux"),
                            ip: Some("192.0.2.1".into()),
                            last_seen: "2026-12-01 22:10 UTC".into(),
                            last_seen_iso: "2026-12-01T22:10:00Z".into(),
                            current: true,
                        },
                        SessionRow {
                            handle: "h2".into(),
                            browser: None,
                            os: None,
                            ip: Some("<script>".into()),
                            last_seen: "x".into(),
                            last_seen_iso: "x".into(),
                            current: false,
                        },
                    ],
                    others: 1,
                    events: EventKind::ALL
                        .iter()
                        .map(|k| EventRow {
                            label: format!("event.{}", k.as_str()),
                            at: "2026-12-01 22:10 UTC".into(),
                            at_iso: "2026-12-01T22:10:00Z".into(),
                            ip: Some("192.0.2.1".into()),
                            browser: Some("Chrome"),
                            os: None,
                        })
                        .collect(),
                    actions: &ACTIONS,
                    identities: vec![IdentityRow {
                        handle: "i1".into(),
                        name: "Google".into(),
                        email: Some("<i>ana</i>@gmail.example".into()),
                        linked: "2026-12-01 22:10 UTC".into(),
                        linked_iso: "2026-12-01T22:10:00Z".into(),
                        can_unlink: true,
                    }],
                    link_buttons: vec![super::super::upstream::Button {
                        id: "corp".into(),
                        label: "Continue with Corp".into(),
                        google: false,
                        action: "/account/upstream/corp/link".into(),
                    }],
                    unlink_action: "/account/upstream/unlink",
                }),
            };
            let page = pages.render("account.html", &ctx).unwrap_or_else(|e| panic!("{loc}: {e:#}"));
            assert!(page.contains(&format!("lang=\"{loc}\"")));
            assert!(page.contains(two_factor), "{loc}: {page}");
            assert!(page.contains(this_device), "{loc}");
            assert!(page.contains("Firefox"), "{loc}");
            assert!(!page.contains("<script>") && !page.contains("<b>x"), "escaped: {page}");
            assert!(page.contains("name=\"session\" value=\"h2\""), "{page}");
            let signed_out = AccountPage {
                locale: loc,
                csrf: "c",
                logout_action: "/logout",
                login_url: "/login",
                account: None,
            };
            pages.render("account.html", &signed_out).unwrap();
            let code = EmailCodePage {
                locale: loc,
                action: "/account/email/verify",
                csrf: "c",
                email: "new@example.test",
                notice: Some("account.email_code_sent"),
                error: Some("code.wrong"),
                expires_minutes: 5,
                back_url: "/account",
            };
            let code = pages.render("account_email_code.html", &code).unwrap();
            assert!(code.contains("autocomplete=\"one-time-code\""));
        }
    }
}
