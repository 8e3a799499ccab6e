//! The account API (issue 8 §5): bearer tokens with the `account` scope, for the token's own
//! user, with RFC 6750 challenges an app can act on.

use clef::admin::ClientSpec;
use clef::store::EventKind;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::e2e;
use crate::support::rp::Rp;
use crate::support::{Browser, TestServer};

const PW: &str = "correct horse battery";

async fn rp(h: &TestServer, name: &str, first_party: bool) -> Rp {
    let created = h
        .client(ClientSpec {
            name: name.into(),
            redirect_uris: vec![format!("http://127.0.0.1/{name}/cb")],
            skip_consent: first_party,
            ..ClientSpec::default()
        })
        .await;
    Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{name}/cb")).await
}

/// Logs `email` in through the pages and returns the access token and its granted scope.
pub async fn token(h: &TestServer, rp: &Rp, email: &str, scopes: &[&str]) -> (String, String) {
    token_in(&h.browser(), rp, email, scopes, &[]).await
}

/// The same from browser `b`, which may hold a login session already, with extra
/// authorization parameters (`max_age`, `prompt`).
pub async fn token_in(b: &Browser, rp: &Rp, email: &str, scopes: &[&str], extra: &[(&str, &str)]) -> (String, String) {
    token_in_with(b, rp, email, scopes, extra, None).await
}

/// The same, answering the authenticator-code step with `totp` when the login asks for it.
async fn token_in_with(b: &Browser, rp: &Rp, email: &str, scopes: &[&str], extra: &[(&str, &str)], totp: Option<&str>) -> (String, String) {
    let start = rp.start_with(scopes, extra);
    let back = b.authorize_with(&start.url, email, PW, totp).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let at = openidconnect::OAuth2TokenResponse::access_token(&tokens).secret().clone();
    let scope = openidconnect::OAuth2TokenResponse::scopes(&tokens)
        .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    (at, scope)
}

/// GET on an account API path; returns the status, the challenge and the JSON body.
pub async fn get(h: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, String, serde_json::Value) {
    let mut req = reqwest::Client::new().get(h.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    read(req.send().await.unwrap()).await
}

/// The status, the challenge and the JSON body of an answer, which is never stored.
async fn read(resp: reqwest::Response) -> (StatusCode, String, serde_json::Value) {
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(resp.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, challenge, body)
}

async fn status_for_the_tokens_own_user(h: &TestServer) {
    let sub = h.user("api@example.test", PW).await;
    h.user("other@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (at, scope) = token(h, &rp, "api@example.test", &["account"]).await;
    assert!(scope.split(' ').any(|s| s == "account"), "{scope}");
    let (status, _, body) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sub"], sub.as_str());
    assert_eq!(body["email"], "api@example.test");
    assert!(body["auth_time"].as_i64().unwrap() > 0);
}

/// RFC 6750 §3.1: no token, a bad one and one without the scope each get their own answer.
async fn challenges_say_what_is_missing(h: &TestServer) {
    h.user("ch@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (none, challenge, _) = get(h, "/account/api/status", None).await;
    assert_eq!(none, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge, "Bearer realm=\"clef\"");

    let (bad, challenge, body) = get(h, "/account/api/status", Some("a.b.c")).await;
    assert_eq!(bad, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["error"], "invalid_token");

    let (at, _) = token(h, &rp, "ch@example.test", &["email"]).await;
    let (status, challenge, body) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"account\""), "{challenge}");
    assert_eq!(body["error"], "insufficient_scope");
}

/// A third-party app cannot obtain the scope, even with the user's consent: it is dropped
/// from the grant (RFC 6749 §3.3) and the token is refused by the API.
async fn third_party_apps_do_not_get_the_scope(h: &TestServer) {
    h.user("tp@example.test", PW).await;
    let rp = rp(h, "tp", false).await;
    let (at, scope) = token(h, &rp, "tp@example.test", &["account", "email"]).await;
    assert!(!scope.split(' ').any(|s| s == "account"), "{scope}");
    assert!(scope.split(' ').any(|s| s == "email"), "{scope}");
    let (status, _, _) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A revoked token stops working at once.
async fn revoked_tokens_are_refused(h: &TestServer) {
    h.user("rv@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (at, _) = token(h, &rp, "rv@example.test", &["account"]).await;
    let resp = rp
        .http
        .post(h.url("/revoke"))
        .basic_auth(&rp.client_id, rp.client_secret.as_deref())
        .form(&[("token", at.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, challenge, _) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

/// POST on an account API path with an optional JSON body; status, challenge and JSON body.
async fn post(h: &TestServer, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, String, Value) {
    let mut req = reqwest::Client::new().post(h.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.unwrap()).await
}

/// Enrols through the API as an app would: start, read the otpauth URI, compute the code with
/// totp-rs, confirm. Returns the authenticator and the backup codes.
async fn enrol(h: &TestServer, at: &str) -> (totp_rs::Totp, Vec<String>) {
    let (status, _, started) = post(h, "/account/api/totp/start", Some(at), None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let t = totp_rs::Totp::from_url(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let code = t.generate(h.clock.now() as u64).to_string();
    let (status, _, done) = post(h, "/account/api/totp/confirm", Some(at), Some(json!({ "code": code }))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let codes = done["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (t, codes)
}

async fn two_factor_of(h: &TestServer, at: &str) -> Value {
    let (status, _, body) = get(h, "/account/api/status", Some(at)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["two_factor"].clone()
}

/// Status says off, then pending after a start, then on with eight codes.
async fn status_with_and_without_totp(h: &TestServer) {
    h.user("st@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (at, _) = token(h, &rp, "st@example.test", &["account"]).await;
    assert_eq!(
        two_factor_of(h, &at).await,
        json!({ "totp": "off", "backup_codes_left": 0, "locked_until": null })
    );
    let (status, _, _) = post(h, "/account/api/totp/start", Some(&at), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(two_factor_of(h, &at).await["totp"], "pending");
    // A pending secret is not a second factor: the user is not locked out of anything.
    enrol(h, &at).await;
    assert_eq!(
        two_factor_of(h, &at).await,
        json!({ "totp": "on", "backup_codes_left": 8, "locked_until": null })
    );
    // Five wrong codes at the login step lock the second factor: the status says until when.
    let user = h.state.db.user_by_email("st@example.test").await.unwrap().unwrap();
    let now = h.clock.now();
    for _ in 0..5 {
        clef::auth::totp::check_login(&h.state.db, &h.state.hmac_key, &user.user_id, "999999", now)
            .await
            .unwrap();
    }
    assert_eq!(two_factor_of(h, &at).await["locked_until"], now + 15 * 60);
}

/// The enrolment material, a wrong code (400, still pending), the right one (8 codes, event,
/// mail), then a start or a confirm while on (409).
async fn enrol_through_the_api(h: &TestServer) {
    let user_id = h.user("en@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (at, _) = token(h, &rp, "en@example.test", &["account"]).await;
    let (status, _, s) = post(h, "/account/api/totp/start", Some(&at), None).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let uri = s["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/clef:en%40example.test?secret="), "{uri}");
    assert!(uri.ends_with("&issuer=clef"), "{uri}");
    let t = totp_rs::Totp::from_url(uri).unwrap();
    let grouped = s["secret"].as_str().unwrap();
    assert_eq!(grouped.replace(' ', ""), t.secret().to_base32(), "the typed form is the same key");
    assert!(grouped.split(' ').all(|g| g.len() == 4), "{grouped}");
    let svg = s["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    let data = s["qr_data_uri"].as_str().unwrap();
    let b64 = data.strip_prefix("data:image/svg+xml;base64,").unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(decoded, svg.as_bytes());

    // Bad bodies get OAuth-shaped errors, never a 500.
    let client = reqwest::Client::new();
    for (ctype, body) in [
        ("text/plain", "{\"code\":\"123456\"}".to_owned()),
        ("application/json", "not json".to_owned()),
        ("application/json", "{\"kode\":\"123456\"}".to_owned()),
        ("application/json", "{\"code\":123456}".to_owned()),
        ("application/json", format!("{{\"code\":\"{}\"}}", "1".repeat(100))),
    ] {
        let r = client
            .post(h.url("/account/api/totp/confirm"))
            .bearer_auth(&at)
            .header(header::CONTENT_TYPE, ctype)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{ctype} {body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{body}");
    }
    let big = client
        .post(h.url("/account/api/totp/confirm"))
        .bearer_auth(&at)
        .header(header::CONTENT_TYPE, "application/json")
        .body(format!("{{\"code\":\"{}\"}}", " ".repeat(10_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.json::<Value>().await.unwrap()["error"], "invalid_request");

    let (status, _, wrong) = post(h, "/account/api/totp/confirm", Some(&at), Some(json!({ "code": "000000" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}");
    assert_eq!(wrong["error"], "invalid_request");
    assert_eq!(two_factor_of(h, &at).await["totp"], "pending");

    let code = t.generate(h.clock.now() as u64).to_string();
    let (status, _, done) = post(h, "/account/api/totp/confirm", Some(&at), Some(json!({ "code": code }))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["totp"], "on");
    let codes = done["backup_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 8);
    assert!(codes.iter().all(|c| c.as_str().unwrap().len() == 11), "{done}");
    let cred = h.state.db.totp_get(&user_id).await.unwrap().unwrap();
    assert!(cred.enabled);
    assert_eq!(cred.last_step, Some(h.clock.now() / 30), "the first code's step is spent");
    let events = h.state.db.events_recent(&user_id, 10).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventKind::TotpEnabled));
    assert!(h.mail.to("en@example.test").iter().any(|m| m.subject == "Two-factor login is on"));

    let (status, _, again) = post(h, "/account/api/totp/start", Some(&at), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"], "invalid_request");
    let (status, _, again) = post(h, "/account/api/totp/confirm", Some(&at), Some(json!({ "code": code }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(
        h.state.db.totp_get(&user_id).await.unwrap().unwrap().sealed_secret,
        cred.sealed_secret,
        "the working secret stays"
    );
}

/// The RFC 9470 answer: 401, `insufficient_user_authentication`, and the `max_age` to ask for.
fn assert_step_up(status: StatusCode, challenge: &str, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"insufficient_user_authentication\""), "{challenge}");
    assert!(challenge.contains("max_age=\"300\""), "{challenge}");
    assert_eq!(body["error"], "insufficient_user_authentication");
}

/// Disable and regenerate with a login older than CLEF_REAUTH_AFTER: the step-up challenge and
/// nothing changes; with a fresh login: done, with the pages' events and mails.
async fn disable_and_regenerate_need_a_recent_login(h: &TestServer) {
    const EMAIL: &str = "dr@example.test";
    let user_id = h.user(EMAIL, PW).await;
    let rp = rp(h, "fp", true).await;
    let b = h.browser();
    let (old, _) = token_in(&b, &rp, EMAIL, &["account"], &[]).await;
    let (totp, first_codes) = enrol(h, &old).await;
    h.clock.advance(301);
    let (status, challenge, body) = post(h, "/account/api/totp/disable", Some(&old), None).await;
    assert_step_up(status, &challenge, &body);
    // Starting an enrolment needs a recent login too (checked before the state of the account).
    let (status, challenge, body) = post(h, "/account/api/totp/start", Some(&old), None).await;
    assert_step_up(status, &challenge, &body);
    let (status, challenge, body) = post(h, "/account/api/backup-codes", Some(&old), None).await;
    assert_step_up(status, &challenge, &body);
    // The old token still works where no recent login is needed.
    assert_eq!(two_factor_of(h, &old).await["totp"], "on");

    // A new code from the same browser session is no fresher: the session's login is old.
    let (again, _) = token_in(&b, &rp, EMAIL, &["account"], &[]).await;
    let (status, challenge, body) = post(h, "/account/api/backup-codes", Some(&again), None).await;
    assert_step_up(status, &challenge, &body);

    // What the app does with the challenge: /authorize with its max_age. The session is too
    // old for it, so clef asks for the password again (OIDC Core §3.1.2.1), and the new
    // token carries the new auth_time.
    let start = rp.start_with(&["account"], &[("max_age", "300")]);
    let login = b.follow(b.get(&start.url).await).await;
    assert!(login.body.contains("autocomplete=\"current-password\""), "asked to log in again");
    // TOTP is on now, so the new login asks for the authenticator code after the password.
    let code = totp.generate(h.clock.now() as u64).to_string();
    let (fresh, _) = token_in_with(&b, &rp, EMAIL, &["account"], &[("max_age", "300")], Some(&code)).await;
    assert_eq!(two_factor_of(h, &fresh).await["totp"], "on");
    let (_, _, st) = get(h, "/account/api/status", Some(&fresh)).await;
    // The clock runs on with the wall clock: a loaded host may cross a second after the login.
    let auth_time = st["auth_time"].as_i64().unwrap();
    assert!(
        (h.clock.now() - 5..=h.clock.now()).contains(&auth_time),
        "fresh auth_time {auth_time}"
    );

    let (status, _, body) = post(h, "/account/api/backup-codes", Some(&fresh), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let codes: Vec<&str> = body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 8);
    assert!(codes.iter().all(|c| !first_codes.iter().any(|f| f == c)), "all new");
    assert!(h.mail.to(EMAIL).iter().any(|m| m.subject == "New backup codes for your account"));

    let (status, _, body) = post(h, "/account/api/totp/disable", Some(&fresh), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totp"], "off");
    assert_eq!(
        two_factor_of(h, &fresh).await,
        json!({ "totp": "off", "backup_codes_left": 0, "locked_until": null })
    );
    assert!(h.mail.to(EMAIL).iter().any(|m| m.subject == "Two-factor login is off"));
    let kinds: Vec<_> = h
        .state
        .db
        .events_recent(&user_id, 20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for k in [EventKind::TotpEnabled, EventKind::BackupCodesRegenerated, EventKind::TotpDisabled] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    // Nothing on: nothing to turn off, no backup codes without TOTP.
    let (status, _, body) = post(h, "/account/api/totp/disable", Some(&fresh), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = post(h, "/account/api/backup-codes", Some(&fresh), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "invalid_request");
}

/// The user's sessions, by handle; one ended; another user's handle refused exactly as an
/// unknown one; a stale login gets the step-up challenge.
async fn sessions_list_and_end(h: &TestServer) {
    let ana = h.user("ana@example.test", PW).await;
    h.user("bob@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    // Each token() logs in from a new browser: two sessions for Ana, one for Bob.
    token(h, &rp, "ana@example.test", &["email"]).await;
    // Apart in time, so the session to end below is surely the first one: ending the session
    // the API token was issued in would revoke that token (back-channel logout's rule).
    h.clock.advance(5);
    let (at, _) = token(h, &rp, "ana@example.test", &["account"]).await;
    let (bob, _) = token(h, &rp, "bob@example.test", &["account"]).await;

    let (status, _, body) = get(h, "/account/api/sessions", Some(&at)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    for s in list {
        assert!(s["handle"].as_str().unwrap().len() > 20, "{s}");
        assert_eq!(s["ip"], "127.0.0.1");
        assert!(s["last_seen"].as_i64().unwrap() >= s["created"].as_i64().unwrap());
        assert!(s["device"].is_object(), "{s}");
        assert!(s.get("current").is_none(), "a token has no browser session");
    }
    let (_, _, bobs) = get(h, "/account/api/sessions", Some(&bob)).await;
    let bob_handle = bobs["sessions"][0]["handle"].as_str().unwrap().to_owned();

    let end = |handle: String| format!("/account/api/sessions/{handle}/end");
    let (s1, _, other) = post(h, &end(bob_handle.clone()), Some(&at), None).await;
    let (s2, _, unknown) = post(h, &end("bm90LWEtaGFuZGxl".into()), Some(&at), None).await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(other, unknown, "indistinguishable");
    assert_eq!(other["error"], "invalid_request");
    let (_, _, bobs_after) = get(h, "/account/api/sessions", Some(&bob)).await;
    assert_eq!(bobs_after["sessions"].as_array().unwrap().len(), 1, "Bob's session lives");

    let first = list.iter().min_by_key(|s| s["created"].as_i64().unwrap()).unwrap();
    let target = first["handle"].as_str().unwrap().to_owned();
    let (status, _, body) = post(h, &end(target.clone()), Some(&at), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, after) = get(h, "/account/api/sessions", Some(&at)).await;
    let left = after["sessions"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0]["handle"], target.as_str());
    let events = h.state.db.events_recent(&ana, 10).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventKind::SessionEnded));
    let (status, _, _) = post(h, &end(target), Some(&at), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already ended");

    h.clock.advance(301);
    let (status, challenge, body) = post(h, &end(left[0]["handle"].as_str().unwrap().to_owned()), Some(&at), None).await;
    assert_step_up(status, &challenge, &body);
    let (_, _, still) = get(h, "/account/api/sessions", Some(&at)).await;
    assert_eq!(still["sessions"].as_array().unwrap().len(), 1, "nothing ended");
}

/// Every route refuses a token without the `account` scope (403, naming the scope) and a
/// request with no token (401).
async fn every_route_needs_the_account_scope(h: &TestServer) {
    h.user("sc@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (at, _) = token(h, &rp, "sc@example.test", &["email"]).await;
    let routes = [
        (Method::GET, "/account/api/status"),
        (Method::POST, "/account/api/totp/start"),
        (Method::POST, "/account/api/totp/confirm"),
        (Method::POST, "/account/api/totp/disable"),
        (Method::POST, "/account/api/backup-codes"),
        (Method::GET, "/account/api/sessions"),
        (Method::POST, "/account/api/sessions/x/end"),
    ];
    for (method, path) in routes {
        for token in [Some(at.as_str()), None] {
            let mut req = reqwest::Client::new().request(method.clone(), h.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if method == Method::POST {
                req = req.json(&json!({ "code": "123456" }));
            }
            let r = req.send().await.unwrap();
            let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
            if token.is_some() {
                assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
                assert!(challenge.contains("error=\"insufficient_scope\""), "{path} {challenge}");
                assert!(challenge.contains("scope=\"account\""), "{path} {challenge}");
            } else {
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
                assert_eq!(challenge, "Bearer realm=\"clef\"", "{path}");
            }
        }
    }
    assert_eq!(two_factor_of_db(h, "sc@example.test").await, None, "nothing started");
    // A wrong method is an error in the same shape.
    let (status, _, body) = get(h, "/account/api/totp/start", Some(&at)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "invalid_request");
    // A path under the API that does not exist answers JSON, as the API's other errors do.
    let resp = reqwest::Client::new().get(h.url("/account/api/nope")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

async fn two_factor_of_db(h: &TestServer, email: &str) -> Option<bool> {
    let user = h.state.db.user_by_email(email).await.unwrap().unwrap();
    h.state.db.totp_get(&user.user_id).await.unwrap().map(|c| c.enabled)
}

/// A browser app on a registered origin: the preflight for a JSON POST with a bearer token,
/// then the POST itself, readable from that origin; another origin gets no CORS headers.
async fn cors_preflight_and_post(h: &TestServer) {
    h.user("co@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    // The client's redirect URI is http://127.0.0.1/fp/cb, so its origin is registered.
    const ORIGIN: &str = "http://127.0.0.1";
    let (at, _) = token(h, &rp, "co@example.test", &["account"]).await;
    let http = reqwest::Client::new();
    let pre = http
        .request(Method::OPTIONS, h.url("/account/api/totp/start"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    let hd = pre.headers();
    assert_eq!(hd[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    assert_eq!(hd[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
    assert_eq!(hd[header::ACCESS_CONTROL_ALLOW_HEADERS], "Authorization, Content-Type");
    assert!(hd.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());

    let r = http
        .post(h.url("/account/api/totp/start"))
        .header(header::ORIGIN, ORIGIN)
        .bearer_auth(&at)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    assert_eq!(r.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS], "WWW-Authenticate");
    assert!(r.json::<Value>().await.unwrap()["otpauth_uri"].is_string());

    let stranger = http
        .get(h.url("/account/api/sessions"))
        .header(header::ORIGIN, "https://evil.example")
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert!(stranger.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

e2e!(
    status_for_the_tokens_own_user,
    challenges_say_what_is_missing,
    third_party_apps_do_not_get_the_scope,
    revoked_tokens_are_refused,
    status_with_and_without_totp,
    enrol_through_the_api,
    disable_and_regenerate_need_a_recent_login,
    sessions_list_and_end,
    every_route_needs_the_account_scope,
    cors_preflight_and_post,
);
