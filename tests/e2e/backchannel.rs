//! OpenID Connect Back-Channel Logout 1.0 end to end: a loopback listener plays the relying
//! party's back-channel endpoint, and every logout token it gets is checked against the JWKS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clef::admin::ClientSpec;
use clef::secret::b64url_decode;
use openidconnect::JsonWebKey;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use crate::e2e;
use crate::support::rp::{Rp, refresh_token};
use crate::support::{Browser, TestServer};

const PW: &str = "correct horse battery";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What the listener was sent.
struct Received {
    content_type: String,
    logout_token: String,
}

#[derive(Clone)]
struct Behaviour {
    /// Answer 503 to this many requests first.
    fail_next: Arc<AtomicUsize>,
    /// Never answer in time (bounded: 30 s), as a stuck relying party.
    hang: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    /// Answer 307 to this URL instead (an RP trying to bounce the OP elsewhere).
    redirect: Arc<std::sync::Mutex<Option<String>>>,
    tx: mpsc::UnboundedSender<Received>,
}

/// A relying party's back-channel logout endpoint on 127.0.0.1:0.
struct Listener {
    url: String,
    b: Behaviour,
    rx: Mutex<mpsc::UnboundedReceiver<Received>>,
}

async fn endpoint(State(b): State<Behaviour>, headers: HeaderMap, body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    b.hits.fetch_add(1, Ordering::SeqCst);
    let redirect = b.redirect.lock().unwrap().clone();
    if let Some(to) = redirect {
        return (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response();
    }
    answer(b, headers, body).await.into_response()
}

async fn answer(b: Behaviour, headers: HeaderMap, body: String) -> StatusCode {
    if b.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return StatusCode::OK;
    }
    if b.fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let _ = b.tx.send(Received {
        content_type,
        logout_token: token,
    });
    StatusCode::OK
}

impl Listener {
    async fn start() -> Listener {
        let (tx, rx) = mpsc::unbounded_channel();
        let b = Behaviour {
            fail_next: Arc::default(),
            hang: Arc::default(),
            hits: Arc::default(),
            redirect: Arc::default(),
            tx,
        };
        let router = axum::Router::new()
            .route("/bcl", axum::routing::post(endpoint))
            .with_state(b.clone());
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/bcl", socket.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(socket, router).await;
        });
        Listener {
            url,
            b,
            rx: Mutex::new(rx),
        }
    }

    /// The next logout token, within 20 s.
    async fn next(&self) -> Received {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a logout token within 20 s")
            .unwrap()
    }

    fn hits(&self) -> usize {
        self.b.hits.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the listener was called `n` times.
    async fn wait_hits(&self, n: usize) {
        for _ in 0..400 {
            if self.hits() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the listener was called {} times, not {n}", self.hits());
    }
}

/// A first-party client whose back-channel logout URI is `uri`.
async fn client(h: &TestServer, name: &str, uri: Option<&str>, session_required: bool) -> Rp {
    let created = h
        .client(ClientSpec {
            name: name.into(),
            redirect_uris: vec![format!("http://127.0.0.1/{name}/cb")],
            post_logout_redirect_uris: vec![format!("http://127.0.0.1/{name}/bye")],
            skip_consent: true,
            backchannel_logout_uri: uri.map(str::to_owned),
            backchannel_logout_session_required: session_required,
            ..ClientSpec::default()
        })
        .await;
    Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{name}/cb")).await
}

/// A login through `rp` in `b`: the tokens, and the verified ID token's raw claims.
struct LoggedIn {
    id_token: String,
    claims: Value,
    refresh: Option<String>,
}

fn payload(jwt: &str) -> Value {
    serde_json::from_slice(&b64url_decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn log_in_via(b: &Browser, rp: &Rp, email: &str) -> LoggedIn {
    let start = rp.start(&["email"]);
    let back = b.authorize(&start.url, email, PW).await;
    logged_in(rp, &back.location_param("code").expect("a code"), start).await
}

async fn logged_in(rp: &Rp, code: &str, start: crate::support::rp::Started) -> LoggedIn {
    let tokens = rp.exchange(code, start.verifier).await;
    // The library checks signature, iss, aud, nonce and at_hash; `sid` is read raw.
    rp.id_claims(&tokens, &start.nonce);
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string();
    LoggedIn {
        claims: payload(&id_token),
        id_token,
        refresh: refresh_token(&tokens),
    }
}

/// Checks a logout token as §2.6 tells an RP to: signature by a key of the JWKS, `typ`,
/// iss, aud, iat/exp, jti, events, no nonce. Returns its claims.
async fn verified(h: &TestServer, got: &Received, client_id: &str) -> Value {
    assert_eq!(got.content_type, "application/x-www-form-urlencoded", "§2.5");
    let token = &got.logout_token;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["typ"], "logout+jwt", "§2.4: explicit typing");
    let jwks: CoreJsonWebKeySet = reqwest::get(h.url("/jwks")).await.unwrap().json().await.unwrap();
    let kid = header["kid"].as_str().unwrap();
    let key = jwks
        .keys()
        .iter()
        .find(|k| k.key_id().map(|i| i.as_str()) == Some(kid))
        .expect("the token's key is published");
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header["alg"].clone()).unwrap();
    key.verify_signature(
        &alg,
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &b64url_decode(parts[2]).unwrap(),
    )
    .expect("signature verifies against the JWKS");
    let c = payload(token);
    let now = h.clock.now();
    assert_eq!(c["iss"], h.issuer);
    assert_eq!(c["aud"], client_id);
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(iat <= now + 1 && exp > now && exp - iat <= 300, "short-lived: {c}");
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16), "{c}");
    assert_eq!(c["events"], json!({ EVENT: {} }));
    assert!(c.get("nonce").is_none(), "§2.4: a logout token carries no nonce");
    assert!(c["sub"].is_string() || c["sid"].is_string(), "§2.4: sub or sid");
    c
}

/// Waits (bounded) until the queue is empty: the listener sees a token a moment before the
/// server reads its answer and deletes the row.
async fn drained(h: &TestServer) {
    for _ in 0..400 {
        if h.state.db.backchannel_pending_count().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("notifications still queued");
}

/// Everything queued was sent or given up, and `quiet` was never called.
async fn settled(h: &TestServer, quiet: &Listener) {
    drained(h).await;
    assert_eq!(quiet.hits(), 0, "a client that did not take part is not told");
}

/// OIDC RP-Initiated Logout with the confirmation form.
async fn rp_logout(b: &Browser, rp: &Rp, name: &str, id_token: &str) {
    let bye = format!("http://127.0.0.1/{name}/bye");
    let confirm = b
        .get(&format!("/logout?id_token_hint={id_token}&post_logout_redirect_uri={bye}"))
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let form = [
        ("csrf", confirm.input("csrf").unwrap()),
        ("decision", "logout".into()),
        ("client_id", rp.client_id.clone()),
        ("post_logout_redirect_uri", bye.clone()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = b.post("/logout", &form).await;
    assert_eq!(out.location.as_deref(), Some(bye.as_str()));
}

async fn sid_in_id_tokens_is_stable(h: &TestServer) {
    let user = h.user("sid@example.test", PW).await;
    let rp = client(h, "sid", None, false).await;
    let b = h.browser();
    let first = log_in_via(&b, &rp, "sid@example.test").await;
    let sid = first.claims["sid"].as_str().expect("a sid claim").to_owned();
    assert!(sid.len() >= 22, "non-guessable: {sid}");
    assert_eq!(first.claims["sub"], user);
    // Not the session cookie, nor its hash.
    let cookie = b.cookie(&h.issuer, "clef_session").expect("the session cookie");
    assert_ne!(sid, cookie);
    assert_ne!(sid, clef::secret::sha256_b64(&cookie));

    // Refreshed ID tokens carry the same sid.
    let refreshed = rp.refresh(first.refresh.as_deref().unwrap()).await.unwrap();
    let again = payload(&openidconnect::TokenResponse::id_token(&refreshed).unwrap().to_string());
    assert_eq!(again["sid"], sid.as_str());

    // A second code in the same browser session: the same sid; a login elsewhere: another.
    let second = log_in_via(&b, &rp, "sid@example.test").await;
    assert_eq!(second.claims["sid"], sid.as_str());
    let other = log_in_via(&h.browser(), &rp, "sid@example.test").await;
    assert_ne!(other.claims["sid"], sid.as_str());
    // Logging in again as the same user (prompt=login) keeps the session's sid.
    let start = rp.start_with(&["email"], &[("prompt", "login")]);
    let back = b.authorize(&start.url, "sid@example.test", PW).await;
    let relogin = logged_in(&rp, &back.location_param("code").unwrap(), start).await;
    assert_eq!(relogin.claims["sid"], sid.as_str());

    let doc: Value = reqwest::get(h.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    assert_eq!(doc["frontchannel_logout_supported"], false);
}

async fn rp_initiated_logout_tells_the_clients_of_the_session(h: &TestServer) {
    let user = h.user("rpi@example.test", PW).await;
    let (la, lb) = (Listener::start().await, Listener::start().await);
    let a = client(h, "rpia", Some(&la.url), true).await;
    let other = client(h, "rpib", Some(&lb.url), true).await;
    let plain = client(h, "rpic", None, false).await;
    let b = h.browser();
    let seen = log_in_via(&b, &a, "rpi@example.test").await;
    let plain_seen = log_in_via(&b, &plain, "rpi@example.test").await;
    // `other` took part in another session of the same user: not this one.
    let elsewhere = log_in_via(&h.browser(), &other, "rpi@example.test").await;

    rp_logout(&b, &a, "rpia", &seen.id_token).await;
    let got = la.next().await;
    let c = verified(h, &got, &a.client_id).await;
    assert_eq!(c["sub"], user);
    assert_eq!(c["sid"], seen.claims["sid"], "session_required: the ID token's sid");
    settled(h, &lb).await;
    assert_eq!(la.hits(), 1, "sent once");
    // The session's refresh tokens went with it, for every client of the session (§2.7);
    // the other session's did not.
    assert!(a.refresh(&seen.refresh.unwrap()).await.unwrap_err().contains("invalid_grant"));
    assert!(
        plain
            .refresh(&plain_seen.refresh.unwrap())
            .await
            .unwrap_err()
            .contains("invalid_grant")
    );
    other.refresh(&elsewhere.refresh.unwrap()).await.unwrap();
    // A code issued in the session but not yet redeemed does not outlive it.
    let b2 = h.browser();
    let start = a.start(&["email"]);
    let back = b2.authorize(&start.url, "rpi@example.test", PW).await;
    let code = back.location_param("code").unwrap();
    let again = log_in_via(&b2, &a, "rpi@example.test").await;
    rp_logout(&b2, &a, "rpia", &again.id_token).await;
    la.next().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", a.redirect_uri.as_str()),
        ("code_verifier", start.verifier.secret().as_str()),
    ];
    let (status, _, body) = a
        .token_raw(&h.issuer, &form, Some((&a.client_id, a.client_secret.as_deref().unwrap())))
        .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")), "{body}");
}

/// The account page's "log out everywhere else" ends the other sessions: their clients hear.
async fn log_out_everywhere_else_tells_the_clients(h: &TestServer) {
    let user = h.user("every@example.test", PW).await;
    let (la, lb) = (Listener::start().await, Listener::start().await);
    let a = client(h, "evea", Some(&la.url), false).await;
    let _quiet = client(h, "eveb", Some(&lb.url), false).await;
    let phone = h.browser();
    let seen = log_in_via(&phone, &a, "every@example.test").await;

    let desk = h.browser();
    let page = desk.get("/login").await;
    let csrf = page.input("csrf").unwrap();
    let done = desk
        .post(
            "/login",
            &[("csrf", &csrf), ("req", ""), ("email", "every@example.test"), ("password", PW)],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/account"), "{}", done.body);
    let csrf = desk.get("/account").await.input("csrf").unwrap();
    let r = desk.post("/account/sessions/end-others", &[("csrf", &csrf)]).await;
    assert_eq!(r.location.as_deref(), Some("/account?done=others"), "{}", r.body);

    let c = verified(h, &la.next().await, &a.client_id).await;
    assert_eq!(c["sub"], user);
    assert!(c.get("sid").is_none(), "no sid unless the client requires it: {c}");
    settled(h, &lb).await;
    assert!(a.refresh(&seen.refresh.unwrap()).await.unwrap_err().contains("invalid_grant"));
}

async fn password_reset_tells_the_clients(h: &TestServer) {
    let user = h.user("reset@example.test", PW).await;
    let (la, lb) = (Listener::start().await, Listener::start().await);
    let a = client(h, "resa", Some(&la.url), true).await;
    let _quiet = client(h, "resb", Some(&lb.url), true).await;
    let seen = log_in_via(&h.browser(), &a, "reset@example.test").await;

    let b = h.browser();
    let login = b.follow(b.get(&a.start(&[]).url).await).await;
    let forgot = b.get(&format!("/password/forgot?req={}", login.input("req").unwrap())).await;
    let page = b.submit(&forgot, &[("email", "reset@example.test")]).await;
    let code = h.mail.last_to("reset@example.test").six_digit_code();
    let done = b.submit(&page, &[("code", &code), ("password", "a brand new passphrase")]).await;
    assert!(done.body.contains("Password changed"), "{}", done.body);

    let c = verified(h, &la.next().await, &a.client_id).await;
    assert_eq!((&c["sub"], &c["sid"]), (&json!(user), &seen.claims["sid"]));
    settled(h, &lb).await;
}

/// Logging in as someone else in the same browser ends the previous user's session, and its
/// clients hear; ending one session from the account page does too.
async fn another_login_and_one_session_end_tell_the_clients(h: &TestServer) {
    let ana = h.user("ana@example.test", PW).await;
    h.user("bob@example.test", PW).await;
    let (la, lb) = (Listener::start().await, Listener::start().await);
    let a = client(h, "swa", Some(&la.url), true).await;
    let _quiet = client(h, "swb", Some(&lb.url), true).await;
    let b = h.browser();
    let seen = log_in_via(&b, &a, "ana@example.test").await;
    let start = a.start_with(&["email"], &[("prompt", "login")]);
    let back = b.authorize(&start.url, "bob@example.test", PW).await;
    let bob = logged_in(&a, &back.location_param("code").unwrap(), start).await;
    assert_ne!(bob.claims["sid"], seen.claims["sid"], "a new user, a new session");
    let c = verified(h, &la.next().await, &a.client_id).await;
    assert_eq!((&c["sub"], &c["sid"]), (&json!(ana), &seen.claims["sid"]));

    // Bob ends his own session from the account page ("log out" on its entry).
    let page = b.get("/account").await;
    let csrf = page.input("csrf").unwrap();
    let handle = page
        .body
        .split("name=\"session\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a session handle")
        .to_owned();
    let r = b.post("/account/sessions/end", &[("csrf", &csrf), ("session", &handle)]).await;
    assert_eq!(r.location.as_deref(), Some("/account"), "{}", r.body);
    let c = verified(h, &la.next().await, &a.client_id).await;
    assert_eq!(c["sid"], bob.claims["sid"]);
    settled(h, &lb).await;
}

/// `clef sessions end --user EMAIL`, run as the operator would, while the server runs; and
/// the client flags of `clients create` / `clients update`.
async fn operator_ends_sessions_from_the_cli(h: &TestServer) {
    let user = h.user("op@example.test", PW).await;
    let (la, lb) = (Listener::start().await, Listener::start().await);
    let run = |args: Vec<String>| {
        let (db, keys) = (h.state.config.database_url.clone(), h.state.config.keys_dir.clone());
        let dir = h.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_clef"))
                .args(&args)
                .current_dir(dir)
                .env("CLEF_DATABASE_URL", db)
                .env("CLEF_KEYS_DIR", keys)
                .env("CLEF_LOG", "warn,sqlx::query=error")
                .output()
                .unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (out.status.success(), text(&out.stdout), text(&out.stderr))
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // A non-loopback http URI is refused, and so is session-required without a URI.
    for bad in [
        args(&[
            "clients",
            "create",
            "--name",
            "x",
            "--redirect-uri",
            "https://x.example/cb",
            "--backchannel-logout-uri",
            "http://x.example/bcl",
        ]),
        args(&[
            "clients",
            "create",
            "--name",
            "x",
            "--redirect-uri",
            "https://x.example/cb",
            "--backchannel-logout-session-required",
        ]),
    ] {
        let (ok, _, err) = run(bad).await.unwrap();
        assert!(!ok && err.contains("backchannel"), "{err}");
    }
    let (ok, out, err) = run(args(&[
        "clients",
        "create",
        "--name",
        "opa",
        "--redirect-uri",
        "http://127.0.0.1/opa/cb",
        "--skip-consent",
        "--backchannel-logout-uri",
        &la.url,
        "--json",
    ]))
    .await
    .unwrap();
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    let (ok, _, err) = run(args(&["clients", "update", &client_id, "--backchannel-logout-session-required"]))
        .await
        .unwrap();
    assert!(ok, "{err}");
    let c = h.state.db.client_get(&client_id).await.unwrap().unwrap();
    assert_eq!(c.backchannel_logout_uri.as_deref(), Some(la.url.as_str()));
    assert!(c.backchannel_logout_session_required);
    let _quiet = client(h, "opb", Some(&lb.url), false).await;

    let created = clef::admin::CreatedClient {
        client_id: client_id.clone(),
        client_secret: created["client_secret"].as_str().map(str::to_owned),
    };
    let a = Rp::discover(&h.issuer, &created, "http://127.0.0.1/opa/cb").await;
    let seen = log_in_via(&h.browser(), &a, "op@example.test").await;
    let (ok, out, err) = run(args(&["sessions", "end", "--user", "OP@example.test"])).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("ended 1 session(s) of op@example.test"), "{out}");

    let c = verified(h, &la.next().await, &client_id).await;
    assert_eq!((&c["sub"], &c["sid"]), (&json!(user), &seen.claims["sid"]));
    settled(h, &lb).await;
    let (ok, _, err) = run(args(&["sessions", "end", "--user", "nobody@example.test"])).await.unwrap();
    assert!(!ok && err.contains("no user"), "{err}");

    // Deleting the user ends its sessions first: the client hears of that one too.
    let again = log_in_via(&h.browser(), &a, "op@example.test").await;
    let (ok, _, err) = run(args(&["users", "delete", "op@example.test"])).await.unwrap();
    assert!(ok, "{err}");
    let c = verified(h, &la.next().await, &client_id).await;
    assert_eq!((&c["sub"], &c["sid"]), (&json!(user), &again.claims["sid"]));
    settled(h, &lb).await;
}

/// 503, 503, then 200: the third attempt delivers. The retries wait 10 s, then 60 s, on the
/// server's clock, which the test moves instead of sleeping.
async fn failed_deliveries_are_retried(h: &TestServer) {
    h.user("retry@example.test", PW).await;
    let la = Listener::start().await;
    la.b.fail_next.store(2, Ordering::SeqCst);
    let a = client(h, "retry", Some(&la.url), true).await;
    let b = h.browser();
    let seen = log_in_via(&b, &a, "retry@example.test").await;
    rp_logout(&b, &a, "retry", &seen.id_token).await;
    la.wait_hits(1).await;
    // Not due before its back-off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(la.hits(), 1, "the retry waits its back-off");
    h.clock.advance(11);
    la.wait_hits(2).await;
    h.clock.advance(61);
    let c = verified(h, &la.next().await, &a.client_id).await;
    assert_eq!(c["sid"], seen.claims["sid"]);
    assert_eq!(la.hits(), 3);
    drained(h).await;
}

/// Redirects are not followed (the URI registered is the only place a token goes), and a
/// redirect counts as a refusal: no retry.
async fn redirects_are_not_followed(h: &TestServer) {
    h.user("redir@example.test", PW).await;
    let (la, elsewhere) = (Listener::start().await, Listener::start().await);
    *la.b.redirect.lock().unwrap() = Some(elsewhere.url.clone());
    let a = client(h, "redir", Some(&la.url), false).await;
    let b = h.browser();
    let seen = log_in_via(&b, &a, "redir@example.test").await;
    rp_logout(&b, &a, "redir", &seen.id_token).await;
    la.wait_hits(1).await;
    drained(h).await;
    h.clock.advance(3600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!((la.hits(), elsewhere.hits()), (1, 0));
}

/// A relying party that never answers gets three tries, then clef gives up (and says so).
async fn delivery_gives_up_after_three_attempts(h: &TestServer) {
    h.user("never@example.test", PW).await;
    let la = Listener::start().await;
    la.b.fail_next.store(100, Ordering::SeqCst);
    let a = client(h, "never", Some(&la.url), false).await;
    let b = h.browser();
    let seen = log_in_via(&b, &a, "never@example.test").await;
    rp_logout(&b, &a, "never", &seen.id_token).await;
    la.wait_hits(1).await;
    h.clock.advance(11);
    la.wait_hits(2).await;
    h.clock.advance(61);
    la.wait_hits(3).await;
    drained(h).await;
    h.clock.advance(3600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(la.hits(), 3);
}

/// A notification in flight when the server stops is not lost: the stop does not wait for the
/// stuck relying party, and the next start sends it.
async fn pending_notification_survives_a_restart(h: &TestServer) {
    // The harness hands out `&TestServer`; a restart needs its own server on the same kind of
    // database, which this test starts and finishes itself.
    let mut own = TestServer::start(h.backend).await;
    let h = &mut own;
    let user = h.user("restart@example.test", PW).await;
    let la = Listener::start().await;
    la.b.hang.store(true, Ordering::SeqCst);
    let a = client(h, "restart", Some(&la.url), true).await;
    let b = h.browser();
    let seen = log_in_via(&b, &a, "restart@example.test").await;
    rp_logout(&b, &a, "restart", &seen.id_token).await;
    la.wait_hits(1).await;

    let stop = h.restart().await;
    assert!(stop < Duration::from_secs(10), "shutdown is not held by a stuck RP: {stop:?}");
    la.b.hang.store(false, Ordering::SeqCst);
    let c = verified(h, &la.next().await, &a.client_id).await;
    assert_eq!((&c["sub"], &c["sid"]), (&json!(user), &seen.claims["sid"]));
    assert_eq!(la.hits(), 2);
    own.finish().await;
}

e2e!(
    sid_in_id_tokens_is_stable,
    rp_initiated_logout_tells_the_clients_of_the_session,
    log_out_everywhere_else_tells_the_clients,
    password_reset_tells_the_clients,
    another_login_and_one_session_end_tell_the_clients,
    operator_ends_sessions_from_the_cli,
    failed_deliveries_are_retried,
    delivery_gives_up_after_three_attempts,
    redirects_are_not_followed,
    pending_notification_survives_a_restart,
);

/// Several instances claiming the queue at once never take the same row (PostgreSQL: `for
/// update skip locked`; SQLite: one writer at a time). Run on the store directly, with no
/// server whose own worker would take rows too.
async fn claims_are_exclusive(url: &str) {
    use clef::store::{Db, LoginSession, SessionMeta};
    let db = Db::connect(url).await.unwrap();
    db.migrate().await.unwrap();
    let now = 1_800_000_000;
    let hasher = clef::auth::password::Hasher::new(1);
    let spec = clef::admin::UserSpec {
        email: "q@example.test".into(),
        ..Default::default()
    };
    let user = clef::admin::create_user(&db, &hasher, &spec, now).await.unwrap();
    let mut clients = Vec::new();
    for i in 0..3 {
        let spec = ClientSpec {
            name: format!("q{i}"),
            redirect_uris: vec!["http://127.0.0.1/q/cb".into()],
            backchannel_logout_uri: Some("http://127.0.0.1:9/bcl".into()),
            ..ClientSpec::default()
        };
        clients.push(clef::admin::create_client(&db, &spec, now).await.unwrap().client_id);
    }
    for i in 0..10 {
        let s = LoginSession {
            session_hash: format!("h{i}"),
            user_id: user.clone(),
            auth_time: now,
            amr: vec![],
            acr: String::new(),
            expires_at: now + 3600,
            sid: Some(format!("sid{i}")),
        };
        db.session_create(&s, &SessionMeta::default(), now).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        for c in &clients {
            assert!(tx.session_join(&format!("sid{i}"), c, &user, now).await.unwrap());
        }
        tx.commit().await.unwrap();
        assert!(db.session_logout(&format!("h{i}"), now).await.unwrap());
    }
    assert_eq!(db.backchannel_pending_count().await.unwrap(), 30);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let other = Db::connect(url).await.unwrap();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..50 {
                let batch = other.backchannel_claim(now, now + 60, 4).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                got.extend(batch.into_iter().map(|p| p.notification_id));
            }
            other.close().await;
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (30, 30), "each row claimed exactly once");
    // Claimed rows stay out of reach until their lease lapses, then come back.
    assert!(db.backchannel_claim(now + 59, now + 120, 100).await.unwrap().is_empty());
    assert_eq!(db.backchannel_claim(now + 60, now + 120, 100).await.unwrap().len(), 30);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_exclusive_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    claims_are_exclusive(&format!("sqlite://{}", dir.path().join("q.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_exclusive_postgres() {
    let (name, url) = crate::support::create_pg_database().await;
    claims_are_exclusive(&url).await;
    crate::support::drop_pg_database(&name).await;
}
