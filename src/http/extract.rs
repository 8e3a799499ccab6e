//! Request reading shared by handlers: bounded form bodies, parameters, cookies, CSRF, locale.

use axum::body::Body;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use crate::app::AppState;
use crate::i18n;
use crate::secret::{ct_eq, hmac_b64, random_token};

/// Form bodies are small; anything bigger is refused before it is buffered.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    NotForm,
}

/// Query pairs for GET, `application/x-www-form-urlencoded` body pairs for POST.
pub async fn pairs(method: &Method, query: Option<&str>, headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, BodyError> {
    if method == Method::GET {
        return Ok(parse(query.unwrap_or("").as_bytes()));
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
    Ok(parse(&bytes))
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
    let token = hmac_b64(&app.hmac_key, &["csrf", &seed]);
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

pub fn csrf_ok(app: &AppState, jar: &CookieJar, headers: &HeaderMap, presented: Option<&str>) -> bool {
    // A browser names the page that posted; a different origin is refused outright.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != app.config.issuer_origin
    {
        return false;
    }
    let Some(seed) = jar.get(&cookie_name(app, CSRF_COOKIE)) else {
        return false;
    };
    let Some(presented) = presented else { return false };
    ct_eq(&hmac_b64(&app.hmac_key, &["csrf", seed.value()]), presented)
}
