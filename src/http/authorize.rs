//! GET/POST /authorize (RFC 6749 §4.1.1, OIDC Core §3.1.2) and the resume step after the
//! hosted login and consent pages.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;

use super::error::{PageError, no_store, render_page_error};
use super::extract::{self, SESSION_COOKIE, cookie_name, field, locale};
use crate::app::AppState;
use crate::oauth::OAuthError;
use crate::oauth::authorize::{self, Approval, AuthorizeRequest, Consent, Hint, Next, Params, ResponseMode, SessionView, Target};
use crate::oauth::claims::HintClaims;
use crate::oauth::{ErrorCode, scope};
use crate::paths;
use crate::secret::{random_token, sha256_b64};
use crate::store::{AuthRequestRow, Client, LoginSession, NewCode};

/// A pending request waits this long for the user to log in and consent.
const REQUEST_TTL: i64 = 30 * 60;

pub async fn get(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    handle(app, Method::GET, q, headers, jar, Body::empty()).await
}

pub async fn post(State(app): State<AppState>, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    handle(app, Method::POST, None, headers, jar, body).await
}

async fn handle(app: AppState, method: Method, q: Option<String>, headers: HeaderMap, jar: CookieJar, body: Body) -> Response {
    let loc = locale(&headers, None);
    let pairs = match extract::pairs(&method, q.as_deref(), &headers, body).await {
        Ok(p) => p,
        Err(extract::BodyError::TooLarge) => {
            return render_page_error(&app, loc, &PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "error.bad_request"));
        }
        Err(extract::BodyError::NotForm | extract::BodyError::ControlChar) => {
            return render_page_error(&app, loc, &PageError::new(StatusCode::BAD_REQUEST, "error.bad_request"));
        }
    };
    let params = Params::from_pairs(pairs);
    let loc = locale(&headers, params.get("ui_locales"));
    let client = match params.get("client_id") {
        Some(id) if !params.is_repeated("client_id") => match app.db.client_get(id).await {
            Ok(c) => c,
            Err(e) => return render_page_error(&app, loc, &e.into()),
        },
        _ => None,
    };
    // RFC 6749 §4.1.2.1: a bad client or redirect_uri is told to the user, never redirected.
    let query_target = authorize::check_target(&params, client.as_ref());
    let untrusted = |u: authorize::Untrusted| render_page_error(&app, loc, &PageError::new(StatusCode::BAD_REQUEST, u.message_key()));
    let Some(client) = client else {
        return match query_target {
            Err(u) => untrusted(u),
            Ok(_) => render_page_error(&app, loc, &PageError::new(StatusCode::BAD_REQUEST, "error.unknown_client")),
        };
    };
    // reqobj: RFC 9101 §5, the request object's parameters replace the query's. Its own
    // errors go to the query's redirect_uri when that one is registered, else to a page.
    let params = if params.get("request").is_some() || params.get("request_uri").is_some() {
        match expand_request(&app, &params, &client).await {
            Ok(p) => p,
            Err(e) => {
                return match &query_target {
                    Ok(t) => respond_error(&app, t, &e),
                    Err(u) => untrusted(*u),
                };
            }
        }
    } else {
        params
    };
    let target = match authorize::check_target(&params, Some(&client)) {
        Ok(t) => t,
        Err(u) => return untrusted(u),
    };
    let hint = match params.get("id_token_hint") {
        None => Hint::Absent,
        // Expired hints are fine (OIDC Core §3.1.2.1): only our signature and issuer count.
        Some(h) => match app.keys.verify::<HintClaims>(h, &app.config.issuer, app.clock.now()) {
            Ok((claims, typ))
                if crate::oauth::claims::is_id_token_typ(typ.as_deref()) && audience_contains(&claims.aud, &client.client_id) =>
            {
                Hint::Valid { sub: claims.sub }
            }
            _ => Hint::Invalid,
        },
    };
    // dcr: a pairwise client's hint names the user by its pairwise sub (OIDC Core §8.1).
    let hint = match (hint, client.meta.sector.as_deref()) {
        (Hint::Valid { sub }, Some(sector)) if client.meta.is_pairwise() => match app.db.pairwise_user(sector, &sub).await {
            Ok(Some(user_id)) => Hint::Valid { sub: user_id },
            Ok(None) => Hint::Valid { sub },
            Err(e) => return render_page_error(&app, loc, &e.into()),
        },
        (h, _) => h,
    };
    let req = match authorize::validate(&params, &client, &target, hint) {
        Ok(r) => r,
        Err(e) => return respond_error(&app, &target, &e),
    };
    proceed(&app, &jar, req, None, &client).await
}

/// reqobj: the parameters a `request` object carries (RFC 9101 §5, OIDC Core §6.1), after
/// its algorithm, signature (the client's `jwks`, or its `jwks_uri` fetched again once for an
/// unknown key) and claims are checked.
async fn expand_request(app: &AppState, params: &Params, client: &Client) -> Result<Params, OAuthError> {
    use crate::oauth::request_object::{self, invalid};
    if params.is_repeated("request") || params.is_repeated("request_uri") {
        return Err(OAuthError::invalid_request("parameter request or request_uri is repeated"));
    }
    let fetched;
    let jwt = match (params.get("request"), params.get("request_uri")) {
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("request and request_uri cannot both be sent")),
        (Some(jwt), None) => jwt,
        (None, Some(uri)) => {
            fetched = fetch_request_uri(app, client, uri).await?;
            fetched.as_str()
        }
        (None, None) => return Err(OAuthError::invalid_request("request is required")),
    };
    let opened = request_object::open(client, jwt)?;
    let now = app.clock.now();
    if opened.signed {
        use crate::oauth::jose::JwsError;
        let checked = if let Some(doc) = &client.meta.jwks {
            let keys = crate::oauth::jose::parse_jwks(doc).map_err(|_| invalid("the client's jwks cannot be used"))?;
            request_object::verify(&opened, &keys)
        } else if let Some(uri) = &client.meta.jwks_uri {
            let fetch = |again| async move {
                app.fetcher.jwks(uri, again, now).await.map_err(|e| {
                    tracing::info!(client_id = %client.client_id, error = %e, "client jwks_uri unusable");
                    invalid("the client's jwks_uri could not be used")
                })
            };
            match request_object::verify(&opened, &fetch(false).await?) {
                Err(JwsError::UnknownKey) => request_object::verify(&opened, &fetch(true).await?),
                other => other,
            }
        } else {
            return Err(invalid("the client has no keys to verify a signed request object"));
        };
        checked.map_err(|e| match e {
            JwsError::UnknownKey => invalid("request object is signed with an unknown key"),
            JwsError::Algorithm => invalid("request object alg is not allowed"),
            _ => invalid("request object signature is invalid"),
        })?;
    }
    let pairs = request_object::parameters(&opened, client, &app.config.issuer, now)?;
    Ok(Params::from_pairs(pairs))
}

/// reqobj: RFC 9101 §5.2.3 / OIDC Core §6.2. The object behind a `request_uri`, fetched with
/// the same rules as a `jwks_uri` (https, or loopback when clef runs there; no redirects; a
/// short timeout) and bounded in size. RFC 9101 §10.4: so that clef is not made to fetch any
/// URL a stranger writes into an authorization link, the host must be one of the client's
/// registered redirect URIs.
async fn fetch_request_uri(app: &AppState, client: &Client, uri: &str) -> Result<String, OAuthError> {
    use crate::oauth::request_object::MAX_REQUEST;
    let bad = |why: &'static str| OAuthError::new(ErrorCode::InvalidRequestUri, why);
    // RFC 9101 §5.2: at most 512 ASCII characters.
    if uri.len() > 512 {
        return Err(bad("request_uri is too long"));
    }
    let host = |u: &str| url::Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_owned));
    let wanted = host(uri).ok_or_else(|| bad("request_uri is not a URL"))?;
    if !client.redirect_uris.iter().any(|r| host(r).as_deref() == Some(wanted.as_str())) {
        return Err(bad("request_uri must be on the host of a registered redirect_uri"));
    }
    let body = app
        .fetcher
        .get_bounded(uri, "application/oauth-authz-req+jwt, application/jwt", MAX_REQUEST)
        .await
        .map_err(|e| {
            tracing::info!(client_id = %client.client_id, error = %e, "request_uri unusable");
            bad("request_uri could not be fetched")
        })?;
    String::from_utf8(body)
        .map(|s| s.trim().to_owned())
        .map_err(|_| bad("request_uri does not hold a JWT"))
}

fn audience_contains(aud: &serde_json::Value, client_id: &str) -> bool {
    match aud {
        serde_json::Value::String(s) => s == client_id,
        serde_json::Value::Array(a) => a.iter().any(|v| v.as_str() == Some(client_id)),
        _ => false,
    }
}

/// GET /authorize/resume?req=… — where login and consent send the browser back.
pub async fn resume(State(app): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, jar: CookieJar) -> Response {
    let pairs = extract::parse(q.unwrap_or_default().as_bytes());
    match load_request(&app, field(&pairs, "req")).await {
        Ok((row, req, client)) => proceed(&app, &jar, req, Some(row.request_id), &client).await,
        Err(e) => render_page_error(&app, locale(&headers, None), &e),
    }
}

/// The stored request behind a `req` id, with its client.
pub async fn load_request(app: &AppState, req_id: Option<&str>) -> Result<(AuthRequestRow, AuthorizeRequest, Client), PageError> {
    let expired = || PageError::new(StatusCode::BAD_REQUEST, "error.request_expired");
    let id = req_id
        .filter(|s| !s.is_empty() && s.len() <= extract::MAX_REQ_ID)
        .ok_or_else(expired)?;
    let row = app.db.auth_request_get(id, app.clock.now()).await?.ok_or_else(expired)?;
    let req: AuthorizeRequest = serde_json::from_str(&row.params).map_err(PageError::internal)?;
    let client = app.db.client_get(&row.client_id).await?.ok_or_else(expired)?;
    Ok((row, req, client))
}

pub async fn current_session(app: &AppState, jar: &CookieJar) -> Result<Option<LoginSession>, PageError> {
    let Some(c) = jar.get(&cookie_name(app, SESSION_COOKIE)) else {
        return Ok(None);
    };
    let (hash, now) = (sha256_b64(c.value()), app.clock.now());
    let session = app.db.session_get(&hash, now).await?;
    if session.is_some() {
        // "Last seen" on the account page; at most one write a minute (`Db::session_touch`).
        app.db.session_touch(&hash, now).await?;
    }
    Ok(session)
}

/// Decides between login, consent and a code, and goes there.
pub async fn proceed(app: &AppState, jar: &CookieJar, req: AuthorizeRequest, request_id: Option<String>, client: &Client) -> Response {
    let loc = crate::i18n::negotiate(req.ui_locales.as_deref(), None);
    match step(app, jar, req, request_id, client).await {
        Ok(resp) => resp,
        Err(e) => render_page_error(app, loc, &e),
    }
}

/// The one decision behind every code: the authorization endpoint, the resume step and the
/// consent page all ask it, with the browser's current session.
pub(super) async fn decision(
    app: &AppState,
    jar: &CookieJar,
    req: &AuthorizeRequest,
    client: &Client,
    consent: Option<Consent>,
) -> Result<Next, PageError> {
    let now = app.clock.now();
    let session = current_session(app, jar).await?;
    let consent = match (consent, &session) {
        (Some(c), _) => c,
        (None, Some(s)) => {
            let covered = app
                .db
                .consent_get(&s.user_id, &client.client_id)
                .await?
                .is_some_and(|g| scope::covered_by(&req.scope, &g));
            if covered { Consent::Covered } else { Consent::Missing }
        }
        (None, None) => Consent::Missing,
    };
    let view = session.as_ref().map(|s| SessionView {
        user_id: &s.user_id,
        auth_time: s.auth_time,
        amr: &s.amr,
        acr: &s.acr,
        sid: s.sid.as_deref(),
    });
    Ok(authorize::decide(req, view, consent, client.skip_consent, now))
}

async fn step(
    app: &AppState,
    jar: &CookieJar,
    req: AuthorizeRequest,
    request_id: Option<String>,
    client: &Client,
) -> Result<Response, PageError> {
    let now = app.clock.now();
    match decision(app, jar, &req, client, None).await? {
        Next::Issue(approval) => {
            if let Some(id) = &request_id {
                take_request(app, id).await?;
            }
            issue_code(app, &req, approval).await
        }
        Next::Fail(e) => {
            if let Some(id) = &request_id {
                take_request(app, id).await?;
            }
            Ok(respond_error(app, &req.target(), &e))
        }
        next => {
            let id = match request_id {
                Some(id) => id,
                None => {
                    let id = random_token(24);
                    let row = AuthRequestRow {
                        request_id: id.clone(),
                        client_id: client.client_id.clone(),
                        params: serde_json::to_string(&req).map_err(PageError::internal)?,
                        created_at: now,
                    };
                    app.db.auth_request_put(&row, now + REQUEST_TTL).await?;
                    id
                }
            };
            let page = if next == Next::Consent { paths::CONSENT } else { paths::LOGIN };
            Ok(no_store(Redirect::to(&format!("{page}?req={id}")).into_response()))
        }
    }
}

/// Deletes a pending request as it is answered; of two answers racing, only one goes on.
async fn take_request(app: &AppState, request_id: &str) -> Result<(), PageError> {
    if app.db.auth_request_delete(request_id).await? {
        Ok(())
    } else {
        Err(PageError::new(StatusCode::BAD_REQUEST, "error.request_expired"))
    }
}

/// Answers the consent page. The decision runs again with consent now given, so a session
/// that would not get a code from /authorize (too old, one factor short, prompt=login) does
/// not get one here either: it is sent to log in, and the request waits.
pub(super) async fn answer_consent(
    app: &AppState,
    jar: &CookieJar,
    request_id: &str,
    req: &AuthorizeRequest,
    client: &Client,
    allow: bool,
) -> Result<Response, PageError> {
    let approval = match decision(app, jar, req, client, Some(Consent::Given)).await? {
        Next::Issue(a) => a,
        Next::Fail(e) => {
            take_request(app, request_id).await?;
            return Ok(respond_error(app, &req.target(), &e));
        }
        Next::Login | Next::Consent => {
            return Ok(no_store(
                Redirect::to(&format!("{}?req={request_id}", paths::LOGIN)).into_response(),
            ));
        }
    };
    take_request(app, request_id).await?;
    if !allow {
        return Ok(respond_error(
            app,
            &req.target(),
            &OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
        ));
    }
    let now = app.clock.now();
    let granted = app.db.consent_get(&approval.user_id, &client.client_id).await?.unwrap_or_default();
    app.db
        .consent_put(&approval.user_id, &client.client_id, &scope::union(&granted, &req.scope), now)
        .await?;
    tracing::info!(client_id = %client.client_id, "consent granted");
    issue_code(app, req, approval).await
}

/// Stores a fresh code bound to client, redirect_uri, PKCE challenge and nonce. Private, and
/// it takes an [`Approval`], which only `decide` makes: no path reaches it around the checks.
async fn issue_code(app: &AppState, req: &AuthorizeRequest, approval: Approval) -> Result<Response, PageError> {
    let now = app.clock.now();
    let code = random_token(32);
    app.db
        .code_create(
            &NewCode {
                code_hash: sha256_b64(&code),
                grant_id: random_token(16),
                client_id: req.client_id.clone(),
                user_id: approval.user_id,
                redirect_uri: req.redirect_uri.clone(),
                scope: crate::oauth::scope::join(&req.scope),
                nonce: req.nonce.clone(),
                code_challenge: req.code_challenge.clone(),
                auth_time: approval.auth_time,
                amr: approval.amr,
                acr: approval.acr,
                expires_at: now + app.config.code_ttl,
                sid: approval.sid,
                resources: req.resources.clone(),
                claims: (!req.claims.is_empty())
                    .then(|| serde_json::to_string(&req.claims))
                    .transpose()
                    .map_err(PageError::internal)?,
            },
            now,
        )
        .await?;
    tracing::info!(client_id = %req.client_id, "authorization code issued");
    let target = req.target();
    Ok(respond(app, &target, authorize::success_params(&code, &target, &app.config.issuer)))
}

pub fn respond_error(app: &AppState, target: &Target, err: &OAuthError) -> Response {
    respond(app, target, authorize::error_params(err, target, &app.config.issuer))
}

#[derive(serde::Serialize)]
struct FormPostPage<'a> {
    locale: &'a str,
    redirect_uri: &'a str,
    params: Vec<(&'static str, String)>,
    nonce: &'a str,
}

/// Sends the authorization response in the requested response_mode.
fn respond(app: &AppState, target: &Target, params: Vec<(&'static str, String)>) -> Response {
    match target.response_mode {
        ResponseMode::Query => no_store(Redirect::to(&authorize::query_url(&target.redirect_uri, &params)).into_response()),
        ResponseMode::FormPost => {
            // OAuth 2.0 Form Post Response Mode: an auto-submitting form, allowed to post
            // only to this redirect URI by its own CSP.
            let nonce = random_token(16);
            let locale = crate::i18n::negotiate(target.ui_locales.as_deref(), None);
            let page = FormPostPage {
                locale,
                redirect_uri: &target.redirect_uri,
                params,
                nonce: &nonce,
            };
            let html = match app.pages.render("form_post.html", &page) {
                Ok(h) => h,
                Err(e) => return render_page_error(app, locale, &PageError::internal(e)),
            };
            let mut resp = no_store(Html(html).into_response());
            // `form-action` is not covered by `default-src` (CSP 3 §6.4.1): without it the page
            // could post anywhere, so it names the redirect URI's origin and nothing else.
            let csp = format!(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
                form_action_source(&target.redirect_uri)
            );
            if let Ok(v) = HeaderValue::from_str(&csp) {
                resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            resp
        }
    }
}

/// The CSP source for a redirect URI's origin: `scheme://host[:port]`, or `scheme:` for a
/// private-use scheme, whose origin is opaque. The URI was matched against the client's
/// registered ones; one that does not parse gets `'none'`.
fn form_action_source(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(u) => match u.origin() {
            url::Origin::Tuple(..) => u.origin().ascii_serialization(),
            url::Origin::Opaque(_) => format!("{}:", u.scheme()),
        },
        Err(_) => "'none'".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::form_action_source;

    #[test]
    fn form_action_is_the_redirect_origin() {
        assert_eq!(form_action_source("https://rp.example/cb?x=1"), "https://rp.example");
        assert_eq!(form_action_source("http://127.0.0.1:8080/cb"), "http://127.0.0.1:8080");
        assert_eq!(form_action_source("com.example.app:/cb"), "com.example.app:");
        assert_eq!(form_action_source("not a uri"), "'none'");
    }
}
