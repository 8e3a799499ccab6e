//! Request reading shared by handlers: bounded form bodies, parameters, cookies, CSRF, locale.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::error::PageError;
use crate::app::AppState;
use crate::i18n;
use crate::secret::random_token;

/// Form bodies are small; anything bigger is refused before it is buffered.
pub const MAX_BODY: usize = 64 * 1024;

/// Caps on form fields, checked before anything is looked up, hashed or written.
/// An email address: RFC 5321 §4.5.3.1 allows a 256-octet path, angle brackets included.
pub const MAX_EMAIL: usize = 254;
/// A display name.
pub const MAX_NAME: usize = 256;
/// A password, checked before argon2 sees it (the sign-up policy says the same).
pub const MAX_PASSWORD: usize = 1024;
/// A pending request's id (`req`).
pub const MAX_REQ_ID: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    NotForm,
    /// A name or value holds a control character (see `is_control`).
    ControlChar,
}

/// No parameter of ours carries a control character: a NUL would reach PostgreSQL (which
/// refuses it in text, an error instead of an answer) and CR, LF or ESC would reach logs.
/// Single-line form inputs cannot hold them either, so C0, DEL and C1 are refused everywhere.
pub fn is_control(c: char) -> bool {
    c.is_control()
}

fn reject_controls(pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, BodyError> {
    if pairs.iter().any(|(k, v)| k.chars().any(is_control) || v.chars().any(is_control)) {
        return Err(BodyError::ControlChar);
    }
    Ok(pairs)
}

/// Query pairs for GET, `application/x-www-form-urlencoded` body pairs for POST.
pub async fn pairs(method: &Method, query: Option<&str>, headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, BodyError> {
    if method == Method::GET {
        return reject_controls(parse(query.unwrap_or("").as_bytes()));
    }
    form(headers, body).await
}

pub async fn form(headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, BodyError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY) {
        return Err(BodyError::TooLarge);
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| BodyError::TooLarge)?;
    if !is_form {
        return Err(BodyError::NotForm);
    }
    reject_controls(parse(&bytes))
}

/// Refuses a GET or HEAD whose query holds a control character, before any handler reads it:
/// every such endpoint answers with a page, so the bad-request page is the right shape.
pub async fn refuse_control_in_query(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let bad = (req.method() == Method::GET || req.method() == Method::HEAD)
        && req.uri().query().is_some_and(|q| reject_controls(parse(q.as_bytes())).is_err());
    if bad {
        let loc = locale(req.headers(), None);
        return super::error::render_page_error(&app, loc, &PageError::new(StatusCode::BAD_REQUEST, "error.bad_request"));
    }
    next.run(req).await
}

pub fn parse(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).into_owned().collect()
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub fn locale(headers: &HeaderMap, ui_locales: Option<&str>) -> &'static str {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    i18n::negotiate(ui_locales, accept)
}

/// `__Host-` cookies are bound to our exact origin, but browsers accept them only over https.
pub fn cookie_name(app: &AppState, base: &'static str) -> String {
    if app.config.issuer_is_https {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

pub fn cookie(app: &AppState, base: &'static str, value: String, max_age: Option<i64>) -> Cookie<'static> {
    let mut c = Cookie::build((cookie_name(app, base), value))
        .path("/")
        .http_only(true)
        .secure(app.config.issuer_is_https)
        .same_site(SameSite::Lax)
        .build();
    if let Some(secs) = max_age {
        c.set_max_age(time::Duration::seconds(secs));
    }
    c
}

pub const SESSION_COOKIE: &str = "clef_session";
pub const CSRF_COOKIE: &str = "clef_csrf";

/// Synchronizer token: the form carries an HMAC of a random per-browser cookie, so a
/// cross-site page can neither read nor forge it.
pub fn csrf_token(app: &AppState, jar: CookieJar) -> (CookieJar, String) {
    let (jar, seed) = browser_seed(app, jar);
    let token = app.hmac_key.mac(&["csrf", &seed]);
    (jar, token)
}

/// A stable, non-secret handle on this browser (the hash of its CSRF cookie), for binding a
/// magic link or a second step to the browser that began the login.
pub fn browser_hash(app: &AppState, jar: CookieJar) -> (CookieJar, String) {
    let (jar, seed) = browser_seed(app, jar);
    (jar, crate::secret::sha256_b64(&seed))
}

fn browser_seed(app: &AppState, jar: CookieJar) -> (CookieJar, String) {
    let name = cookie_name(app, CSRF_COOKIE);
    let (jar, seed) = match jar.get(&name) {
        Some(c) if c.value().len() >= 32 => {
            let v = c.value().to_owned();
            (jar, v)
        }
        _ => {
            let v = random_token(32);
            (jar.add(cookie(app, CSRF_COOKIE, v.clone(), None)), v)
        }
    };
    (jar, seed)
}

/// Why a form post was refused; logged at info, never with the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// The browser says the post came from another site (`Sec-Fetch-Site` or `Origin`).
    CrossOrigin,
    /// The page was opened at another address than the issuer, so the browser's `Origin` and
    /// cookies belong to that address: a configuration problem, not an attack.
    WrongAddress,
    /// No CSRF cookie: cookies are blocked, or the form is older than the browser's cookies.
    MissingCookie,
    MissingToken,
    BadToken,
}

impl CsrfRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            CsrfRefusal::CrossOrigin => "cross-origin post",
            CsrfRefusal::WrongAddress => "page opened at another address than the issuer",
            CsrfRefusal::MissingCookie => "no CSRF cookie",
            CsrfRefusal::MissingToken => "no CSRF token in the form",
            CsrfRefusal::BadToken => "CSRF token does not match the cookie",
        }
    }
}

/// The CSRF check for every form post of the hosted pages.
///
/// The synchronizer token is the defence; the browser's own provenance headers only refuse
/// earlier (OWASP CSRF Prevention Cheat Sheet, "Fetch Metadata headers" and "Verifying
/// Origin with standard headers"):
/// - `Sec-Fetch-Site`, when sent, must be `same-origin`: browsers set it and scripts cannot.
/// - `Origin`, when sent, must be the issuer's origin exactly. `Origin: null` is refused: our
///   pages use `strict-origin-when-cross-origin`, under which a browser names our origin on our
///   own posts, so `null` only comes from an opaque origin (a sandboxed frame, a `data:` page,
///   a cross-origin redirect), which is what a forging page would use. The cheat sheet warns
///   against allow-listing `null` for that reason.
/// - No header at all (a non-browser client, an old browser): the token decides.
pub fn csrf_check(app: &AppState, jar: &CookieJar, headers: &HeaderMap, presented: Option<&str>) -> Result<(), CsrfRefusal> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Some(origin) = origin
        && origin != app.config.issuer_origin
    {
        // Our own page, served under another name (127.0.0.1 for localhost, another port):
        // the origin is the address this request was sent to.
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let same_server = host.is_some_and(|h| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(h))
        });
        return Err(if same_server && fetch_site.is_none_or(|s| s == "same-origin") {
            CsrfRefusal::WrongAddress
        } else {
            CsrfRefusal::CrossOrigin
        });
    }
    if fetch_site.is_some_and(|s| s != "same-origin") {
        return Err(CsrfRefusal::CrossOrigin);
    }
    let seed = jar.get(&cookie_name(app, CSRF_COOKIE)).ok_or(CsrfRefusal::MissingCookie)?;
    let presented = presented.filter(|p| !p.is_empty()).ok_or(CsrfRefusal::MissingToken)?;
    // Any current or previous key: a form rendered just before a secret rotation still posts.
    if app.hmac_key.verify(&["csrf", seed.value()], presented) {
        Ok(())
    } else {
        Err(CsrfRefusal::BadToken)
    }
}

/// `csrf_check` for a handler: logs a refusal and names the page to show for it.
pub fn csrf_guard(app: &AppState, jar: &CookieJar, headers: &HeaderMap, presented: Option<&str>) -> Result<(), PageError> {
    csrf_check(app, jar, headers, presented).map_err(|refusal| {
        crate::telemetry::refused("csrf");
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
        if refusal == CsrfRefusal::WrongAddress {
            tracing::warn!(
                origin = ?origin,
                issuer = %app.config.issuer,
                "form post refused: the page was opened at another address than CLEF_ISSUER; open clef at the issuer's address or change CLEF_ISSUER"
            );
            PageError {
                detail: Some(format!("{}{}", app.config.issuer, crate::paths::LOGIN)),
                ..PageError::new(StatusCode::MISDIRECTED_REQUEST, "error.wrong_address")
            }
        } else {
            tracing::info!(reason = refusal.reason(), origin = ?origin, "form post refused");
            PageError::new(StatusCode::FORBIDDEN, "error.csrf")
        }
    })
}
