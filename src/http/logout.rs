//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), with a confirmation form so
//! a cross-site link cannot log the user out.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use serde::Serialize;

use super::error::{PageError, no_store, render_page_error};
use super::extract::{self, SESSION_COOKIE, cookie_name, csrf_guard, csrf_token, field, locale};
use crate::app::AppState;
use crate::oauth::authorize::{Params, query_url};
use crate::oauth::claims::HintClaims;
use crate::paths;
use crate::secret::sha256_b64;

#[derive(Serialize)]
struct LogoutPage<'a> {
    locale: &'a str,
    done: bool,
    action: &'a str,
    csrf: &'a str,
    client_name: Option<&'a str>,
    hidden: Vec<(&'static str, String)>,
}

/// Where to go after logging out, once checked against the client's registration.
struct After {
    client_id: Option<String>,
    client_name: Option<String>,
    redirect: Option<String>,
    state: Option<String>,
}

async fn validate(app: &AppState, params: &Params) -> Result<After, PageError> {
    let bad = || PageError::new(StatusCode::BAD_REQUEST, "error.bad_request");
    params.reject_repeated().map_err(|_| bad())?;
    let hint_aud = match params.get("id_token_hint") {
        None => None,
        Some(h) => {
            let (claims, typ) = app
                .keys
                .verify::<HintClaims>(h, &app.config.issuer, app.clock.now())
                .map_err(|_| bad())?;
            if !crate::oauth::claims::is_id_token_typ(typ.as_deref()) {
                return Err(bad());
            }
            match claims.aud {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Array(a) => a.first().and_then(|v| v.as_str()).map(str::to_owned),
                _ => None,
            }
        }
    };
    let client_id = match (params.get("client_id"), hint_aud) {
        (Some(c), Some(a)) if c != a => return Err(bad()),
        (Some(c), _) => Some(c.to_owned()),
        (None, a) => a,
    };
    let client = match &client_id {
        Some(id) => Some(app.db.client_get(id).await?.ok_or_else(bad)?),
        None => None,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match &client {
            Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri.to_owned()),
            _ => return Err(PageError::new(StatusCode::BAD_REQUEST, "error.logout_redirect")),
        },
    };
    Ok(After {
        client_name: client.map(|c| c.name),
        client_id,
        redirect,
        state: params.get("state").map(str::to_owned),
    })
}

fn confirm_page(app: &AppState, jar: CookieJar, loc: &str, after: &After) -> Response {
    let (jar, csrf) = csrf_token(app, jar);
    let mut hidden = Vec::new();
    if let Some(c) = &after.client_id {
        hidden.push(("client_id", c.clone()));
    }
    if let Some(r) = &after.redirect {
        hidden.push(("post_logout_redirect_uri", r.clone()));
    }
    if let Some(s) = &after.state {
        hidden.push(("state", s.clone()));
    }
    let ctx = LogoutPage {
        locale: loc,
        done: false,
        action: paths::END_SESSION,
        csrf: &csrf,
        client_name: after.client_name.as_deref(),
        hidden,
    };
    match app.pages.render("logout.html", &ctx) {
        Ok(html) => (jar, no_store(Html(html).into_response())).into_response(),
        Err(e) => render_page_error(app, loc, &PageError::internal(e)),
    }
}

pub async fn get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let pairs = extract::parse(q.unwrap_or_default().as_bytes());
    let params = Params::from_pairs(pairs);
    let loc = locale(&headers, params.get("ui_locales"));
    match validate(&app, &params).await {
        Ok(after) => confirm_page(&app, jar, loc, &after),
        Err(e) => render_page_error(&app, loc, &e),
    }
}

pub async fn post(
    State(app): State<AppState>,
    client_ip: super::client_ip::ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    body: Body,
) -> Response {
    let loc = locale(&headers, None);
    let pairs = match extract::pairs(&Method::POST, None, &headers, body).await {
        Ok(p) => p,
        Err(_) => return render_page_error(&app, loc, &PageError::new(StatusCode::BAD_REQUEST, "error.bad_request")),
    };
    let confirmed = field(&pairs, "csrf").is_some();
    let params = Params::from_pairs(pairs.iter().filter(|(k, _)| k != "csrf" && k != "decision").cloned());
    let loc = locale(&headers, params.get("ui_locales"));
    let after = match validate(&app, &params).await {
        Ok(a) => a,
        Err(e) => return render_page_error(&app, loc, &e),
    };
    // A relying party may POST the logout request itself: that still needs the user's click.
    if !confirmed {
        return confirm_page(&app, jar, loc, &after);
    }
    if let Err(e) = csrf_guard(&app, &jar, &headers, field(&pairs, "csrf")) {
        return render_page_error(&app, loc, &e);
    }
    let name = cookie_name(&app, SESSION_COOKIE);
    // ops: whose session it was, for the audit log (read before it goes).
    let now = app.clock.now();
    let mut user_id = None;
    if let Some(c) = jar.get(&name) {
        let hash = sha256_b64(c.value());
        user_id = app.db.session_get(&hash, now).await.ok().flatten().map(|s| s.user_id);
        // Back-Channel Logout 1.0 §2.5: the session's clients are told, from the queue this writes.
        if let Err(e) = app.db.session_logout(&hash, now).await {
            return render_page_error(&app, loc, &e.into());
        }
    }
    let jar = jar.remove(Cookie::build(name).path("/"));
    tracing::info!("logged out");
    if let Some(user_id) = &user_id {
        let ip = client_ip.to_string();
        let ua = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
        let e = crate::store::AuditEvent {
            user_id: Some(user_id),
            client_id: after.client_id.as_deref(),
            ip: Some(&ip),
            user_agent: ua,
            ..Default::default()
        };
        if let Err(err) = app.db.audit_record(crate::store::EventKind::Logout, &e, now).await {
            tracing::warn!(error = %err, "security event not recorded");
        }
    }
    if let Some(uri) = after.redirect {
        let mut p: Vec<(&'static str, String)> = Vec::new();
        if let Some(s) = after.state {
            p.push(("state", s));
        }
        let url = if p.is_empty() { uri } else { query_url(&uri, &p) };
        return (jar, no_store(Redirect::to(&url).into_response())).into_response();
    }
    let (jar, csrf) = csrf_token(&app, jar);
    let ctx = LogoutPage {
        locale: loc,
        done: true,
        action: paths::END_SESSION,
        csrf: &csrf,
        client_name: None,
        hidden: vec![],
    };
    match app.pages.render("logout.html", &ctx) {
        Ok(html) => (jar, no_store(Html(html).into_response())).into_response(),
        Err(e) => render_page_error(&app, loc, &PageError::internal(e)),
    }
}
