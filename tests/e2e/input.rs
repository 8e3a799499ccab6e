//! Hostile input: control characters, over-long fields, enumeration by time, account
//! pre-hijacking, log injection, error_description charset, form_post CSP, and the CLI password.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use clef::admin::UserSpec;

use crate::e2e;
use crate::support::browser::{Browser, Page};
use crate::support::{Backend, TestServer};

const PW: &str = "correct horse battery";
const CHALLENGE: &str = "HNOgb1653uKOQeDgfNs3J8qaffv2c2-vRiDbfHNICRs";

/// Rows of a table, read over a connection of our own.
async fn count(h: &TestServer, table: &str) -> i64 {
    use sqlx::Connection;
    let sql = format!("select count(*) from {table}");
    let url = &h.state.config.database_url;
    match h.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }
}

/// Every table an unauthenticated request could write to.
async fn written_rows(h: &TestServer) -> Vec<i64> {
    let mut v = vec![];
    for t in ["users", "auth_requests", "otp_codes", "rate_limits", "login_sessions", "consents"] {
        v.push(count(h, t).await);
    }
    v
}

fn authorize_url(client_id: &str, redirect: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = [
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st4te"),
        ("nonce", "n0nce"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        pairs.push(((*k).to_owned(), (*v).to_owned()));
    }
    format!(
        "/authorize?{}",
        form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
    )
}

/// A page's CSRF token, from the login page.
async fn csrf(b: &Browser) -> String {
    b.get("/login").await.input("csrf").unwrap()
}

async fn post_json(h: &TestServer, path: &str, form: &[(&str, &str)], basic: Option<&str>) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new().post(h.url(path)).form(form);
    if let Some(id) = basic {
        let enc = form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{enc}:secret"));
        r = r.header("authorization", format!("Basic {v}"));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// NUL gave 500 on PostgreSQL for 21 endpoint/field pairs; every control character is now
/// refused at the edge in the endpoint's own error shape, and nothing is written.
async fn control_characters_get_the_protocol_error_never_500(h: &TestServer) {
    let rp = h.confidential("rp").await;
    let redirect = "http://127.0.0.1/rp/cb";
    let b = h.browser();
    let token = csrf(&b).await;
    let before = written_rows(h).await;
    for bad in ["a\0b", "a\r\nb", "a\u{1b}[31mb", "a\u{7f}b", "a\u{85}b"] {
        // Back-channel endpoints: OAuth error JSON.
        for path in ["/token", "/revoke", "/introspect"] {
            let (status, body) = post_json(
                h,
                path,
                &[("client_id", bad), ("grant_type", "authorization_code"), ("token", "t")],
                None,
            )
            .await;
            assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{path} {bad:?}");
            let (status, body) = post_json(h, path, &[("grant_type", "authorization_code"), ("token", "t")], Some(bad)).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("invalid_client")),
                "{path} Basic {bad:?}"
            );
        }
        let (status, body) = post_json(
            h,
            "/token",
            &[
                ("client_id", &rp.client_id),
                ("client_secret", "x"),
                ("code", bad),
                ("grant_type", "authorization_code"),
            ],
            None,
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "code {bad:?}");
        // Front-channel endpoints before a client is trusted: the HTML bad-request page.
        let q = |k: &str| form_urlencoded::Serializer::new(String::new()).append_pair(k, bad).finish();
        for url in [
            format!("/authorize?{}", q("client_id")),
            authorize_url(&rp.client_id, redirect, &[("state", bad)]),
            authorize_url(&rp.client_id, redirect, &[("login_hint", bad)]),
            format!("/logout?{}", q("client_id")),
            format!("/login?{}", q("req")),
            format!("/signup?{}", q("req")),
            format!("/consent?{}", q("req")),
            format!("/password/forgot?{}", q("req")),
            format!("/login/link?{}", q("token")),
            format!("/authorize/resume?{}", q("req")),
        ] {
            let page = b.get(&url).await;
            assert_eq!(page.status, 400, "{url}: {}", page.body);
            assert!(page.location.is_none() && page.body.contains("The request is malformed."), "{url}");
        }
        let page = b.post("/authorize", &[("client_id", bad)]).await;
        assert_eq!(page.status, 400, "POST /authorize");
        let page = b.post("/logout", &[("client_id", bad)]).await;
        assert_eq!(page.status, 400, "POST /logout");
        // Every form field that reaches the database.
        for (path, field) in [
            ("/login", "email"),
            ("/login", "req"),
            ("/login", "password"),
            ("/signup", "email"),
            ("/signup", "name"),
            ("/signup", "req"),
            ("/login/code", "email"),
            ("/login/code", "req"),
            ("/login/code/verify", "email"),
            ("/login/code/verify", "code"),
            ("/password/forgot", "email"),
            ("/password/reset", "email"),
            ("/consent", "req"),
        ] {
            let mut form = vec![("csrf", token.as_str()), ("email", "ana@example.test"), ("password", PW)];
            form.retain(|(k, _)| *k != field);
            form.push((field, bad));
            let page = b.post(path, &form).await;
            assert_eq!(page.status, 400, "{path} {field} {bad:?}: {}", page.body);
            assert!(page.body.contains("The request is malformed."), "{path} {field}");
        }
    }
    assert_eq!(written_rows(h).await, before, "nothing written for a refused request");
}

/// Unauthenticated requests cannot store rows of a size they choose.
async fn oversized_fields_are_refused_before_writing(h: &TestServer) {
    let rp = h.confidential("rp").await;
    let redirect = "http://127.0.0.1/rp/cb";
    let b = h.browser();
    let long = |n: usize| "a".repeat(n);
    // Over the cap: an error to the client, and no pending request stored.
    let state = long(1025);
    let page = b.get(&authorize_url(&rp.client_id, redirect, &[("state", &state)])).await;
    page.assert_redirect_to(redirect);
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_request"));
    assert_eq!(page.location_param("error_description").as_deref(), Some("state is too long"));
    assert_eq!(page.location_param("state"), None, "an over-long state is not echoed");
    for (name, n) in [
        ("nonce", 513),
        ("login_hint", 255),
        ("ui_locales", 65),
        ("acr_values", 257),
        ("display", 2049),
    ] {
        let v = long(n);
        let page = b.get(&authorize_url(&rp.client_id, redirect, &[(name, &v)])).await;
        page.assert_redirect_to(redirect);
        assert_eq!(page.location_param("error").as_deref(), Some("invalid_request"), "{name}");
        assert_eq!(page.location_param("state").as_deref(), Some("st4te"), "{name}");
    }
    assert_eq!(count(h, "auth_requests").await, 0);
    // At the cap: accepted and stored.
    let state = long(1024);
    let page = b
        .get(&authorize_url(
            &rp.client_id,
            redirect,
            &[("state", &state), ("login_hint", &long(254))],
        ))
        .await;
    assert!(page.location.as_deref().unwrap().starts_with("/login?req="), "{:?}", page.location);
    assert_eq!(count(h, "auth_requests").await, 1);

    let token = csrf(&b).await;
    let before = written_rows(h).await;
    let huge_email = format!("{}@example.test", long(2900));
    // Password login: the usual failure, no argon2 work, no limit row.
    for (email, password) in [(huge_email.as_str(), PW), ("ana@example.test", &*long(1025))] {
        let page = b
            .post("/login", &[("csrf", &token), ("email", email), ("password", password)])
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("The email or password is incorrect."));
    }
    let page = b
        .post("/signup", &[("csrf", &token), ("email", &format!("{}@example.test", long(250)))])
        .await;
    assert!(page.body.contains("Enter a valid email address."), "{}", page.body);
    let page = b
        .post("/signup", &[("csrf", &token), ("email", "new@example.test"), ("name", &long(257))])
        .await;
    assert!(page.body.contains("This name is too long."), "{}", page.body);
    let page = b
        .post(
            "/signup",
            &[("csrf", &token), ("email", "new@example.test"), ("password", &long(1025))],
        )
        .await;
    assert!(page.body.contains("This password is too long."), "{}", page.body);
    for path in ["/login/code", "/password/forgot", "/login/code/verify", "/password/reset"] {
        let page = b.post(path, &[("csrf", &token), ("email", &huge_email), ("code", "123456")]).await;
        assert_eq!(page.status, 400, "{path}");
        let page = b
            .post(path, &[("csrf", &token), ("email", "ana@example.test"), ("req", &long(65))])
            .await;
        assert_eq!(page.status, 400, "{path} req");
    }
    assert_eq!(written_rows(h).await, before, "nothing written for a refused form");
}

/// An SMTP server that accepts and then says nothing for `stall`.
async fn stalling_smtp(stall: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(stall).await;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"421 too late\r\n").await;
            });
        }
    });
    format!("smtp://{addr}")
}

fn normalized(p: &Page, emails: &[&str]) -> String {
    let mut body = p.body.clone();
    for e in emails {
        body = body.replace(e, "E");
    }
    body.lines().filter(|l| !l.contains("name=\"csrf\"")).collect::<Vec<_>>().join("\n")
}

/// /password/forgot and /login/code (sign-up closed) answer known and unknown addresses with
/// the same page, without waiting for the mail server: a 3 s stall before the greeting, and
/// each answer well under 1.5 s.
async fn answers_do_not_wait_for_the_mail_server(h: &TestServer) {
    let smtp = stalling_smtp(Duration::from_secs(3)).await;
    let hs = TestServer::start_with(h.backend, |raw| {
        raw.smtp_url = Some(smtp);
        raw.signup = Some("closed".into());
        // Four sends from one address in a minute: above the default limit of three.
        raw.code_send_limit = Some(10);
    })
    .await;
    hs.user("known@example.test", PW).await;
    let b = hs.browser();
    let token = csrf(&b).await;
    for path in ["/password/forgot", "/login/code"] {
        let mut pages = vec![];
        for email in ["known@example.test", "nobody@example.test"] {
            let t0 = Instant::now();
            let page = b.post(path, &[("csrf", &token), ("email", email)]).await;
            let took = t0.elapsed();
            assert!(
                took < Duration::from_millis(1500),
                "{path} {email} waited {took:?} for the mail server"
            );
            assert_eq!(page.status, 200, "{}", page.body);
            assert!(!page.body.contains("We could not send the email"), "a failed send is never shown");
            pages.push(page);
        }
        assert_eq!(
            normalized(&pages[0], &["known@example.test", "nobody@example.test"]),
            normalized(&pages[1], &["known@example.test", "nobody@example.test"]),
            "{path}: known and unknown addresses get the same page"
        );
    }
    // The lockout mail, too, goes only to a known address: the failure that locks does not wait.
    for email in ["known@example.test", "nobody@example.test"] {
        for _ in 0..6 {
            let t0 = Instant::now();
            let page = b
                .post("/login", &[("csrf", &token), ("email", email), ("password", "wrong password")])
                .await;
            let took = t0.elapsed();
            assert!(
                took < Duration::from_millis(1500),
                "/login {email} waited {took:?} for the mail server"
            );
            assert_ne!(page.status, 500);
        }
    }
    hs.finish().await;
}

fn session(b: &Browser, h: &TestServer) -> Option<String> {
    b.cookie(&h.issuer, "clef_session")
}

async fn password_login(b: &Browser, email: &str, password: &str) -> Page {
    let login = b.get("/login").await;
    b.submit(&login, &[("email", email), ("password", password)]).await
}

async fn signup(b: &Browser, email: &str, password: &str) -> Page {
    let form = b.get("/signup").await;
    let page = b.submit(&form, &[("email", email), ("password", password)]).await;
    assert!(page.body.contains("id=\"login-code\""), "{}", page.body);
    page
}

fn code_in(h: &TestServer, email: &str, subject: &str) -> String {
    h.mail
        .to(email)
        .into_iter()
        .rev()
        .find(|m| m.subject == subject)
        .unwrap_or_else(|| panic!("no {subject:?} mail to {email}"))
        .six_digit_code()
}

/// The attack: a squatter signs up with the victim's address and a password; the victim later
/// logs in with an emailed code. Each step of the squatter fails, and the victim keeps the `sub`.
async fn pre_hijacked_password_never_signs_in(h: &TestServer) {
    const V: &str = "victim@example.test";
    let squatter = h.browser();
    signup(&squatter, V, PW).await;
    let sub = h.state.db.user_by_email(V).await.unwrap().unwrap().user_id;
    // The right password on the unverified account signs nobody in: a "check your mail" step.
    let held = password_login(&squatter, V, PW).await;
    assert_eq!(held.status, 200);
    assert!(held.location.is_none() && session(&squatter, h).is_none());
    assert!(held.body.contains("id=\"login-code\""), "{}", held.body);
    assert!(held.body.contains("Confirm your email address first"), "{}", held.body);
    // A guessed code in the squatter's browser is just a wrong code.
    let wrong = squatter.submit(&held, &[("code", "000000")]).await;
    assert!(wrong.location.is_none() && session(&squatter, h).is_none());

    // The owner logs in with "email me a code", in their own browser.
    let victim = h.browser();
    let login = victim.get("/login").await;
    let form = [("csrf", login.input("csrf").unwrap()), ("email", V.to_owned())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = victim.post("/login/code", &form).await;
    let done = victim.submit(&page, &[("code", &code_in(h, V, "Your login code"))]).await;
    assert_eq!(continues_to(&done).as_deref(), Some("/account"), "{}", done.body);
    let user = h.state.db.user_by_email(V).await.unwrap().unwrap();
    assert_eq!(user.user_id, sub);
    assert!(user.email_verified);
    assert!(user.password_hash.is_none(), "the squatter's password is gone");
    // The squatter's password no longer works, and the page looks like any failure.
    let after = password_login(&h.browser(), V, PW).await;
    assert!(after.body.contains("The email or password is incorrect."), "{}", after.body);
    // Nor does the held verification code of the squatter, had they somehow learned it.
    assert!(session(&squatter, h).is_none());
}

/// The owner verifies with the squatter's own verification code, but in another browser
/// (after signing up again with the address): the password chosen elsewhere is removed.
async fn verification_in_another_browser_removes_the_pending_password(h: &TestServer) {
    const V: &str = "owner@example.test";
    signup(&h.browser(), V, PW).await;
    let owner = h.browser();
    let again = signup(&owner, V, "another fine password").await;
    let done = owner
        .submit(&again, &[("code", &code_in(h, V, "Confirm your email address"))])
        .await;
    assert_eq!(continues_to(&done).as_deref(), Some("/account"), "{}", done.body);
    let user = h.state.db.user_by_email(V).await.unwrap().unwrap();
    assert!(user.email_verified && user.password_hash.is_none() && !user.password_pending);
    assert!(
        password_login(&h.browser(), V, PW)
            .await
            .body
            .contains("The email or password is incorrect.")
    );
}

/// Sign-up → verify → password login keeps working, and so does a verification of a held
/// password login; an operator's account is trusted as the operator says.
async fn legitimate_signup_then_password_login(h: &TestServer) {
    let b = h.browser();
    let page = signup(&b, "new@example.test", PW).await;
    let done = b
        .submit(&page, &[("code", &code_in(h, "new@example.test", "Confirm your email address"))])
        .await;
    assert_eq!(continues_to(&done).as_deref(), Some("/account"));
    let ok = password_login(&h.browser(), "new@example.test", PW).await;
    assert_eq!(ok.location.as_deref(), Some("/account"), "{}", ok.body);

    // Signed up, never verified; later, from another browser, the password login is held
    // until the code sent to the address is typed there.
    signup(&h.browser(), "later@example.test", PW).await;
    let c = h.browser();
    let held = password_login(&c, "later@example.test", PW).await;
    assert!(held.body.contains("id=\"login-code\""), "{}", held.body);
    let done = c
        .submit(&held, &[("code", &code_in(h, "later@example.test", "Confirm your email address"))])
        .await;
    assert_eq!(continues_to(&done).as_deref(), Some("/account"), "{}", done.body);
    let ok = password_login(&h.browser(), "later@example.test", PW).await;
    assert_eq!(
        ok.location.as_deref(),
        Some("/account"),
        "the password survived its own verification"
    );

    // `clef users create` without --verified: the operator's password works at once.
    h.user_with(UserSpec {
        email: "op@example.test".into(),
        password: Some(PW.into()),
        ..UserSpec::default()
    })
    .await;
    let ok = password_login(&h.browser(), "op@example.test", PW).await;
    assert_eq!(ok.location.as_deref(), Some("/account"));
}

/// A wrong password on a pending account looks like a wrong password anywhere, or an unknown address.
async fn pending_account_failure_looks_like_any_other(h: &TestServer) {
    signup(&h.browser(), "pending@example.test", PW).await;
    let b = h.browser();
    let pending = password_login(&b, "pending@example.test", "wrong password here").await;
    let unknown = password_login(&b, "nobody@example.test", "wrong password here").await;
    assert_eq!(pending.status, unknown.status);
    let emails = ["pending@example.test", "nobody@example.test"];
    assert_eq!(normalized(&pending, &emails), normalized(&unknown, &emails));
}

/// `clef serve`'s log: request values are escaped, so none can forge a line or send escapes.
async fn logs_carry_no_raw_control_bytes(h: &TestServer) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clef"))
        .arg("serve")
        .current_dir(h.dir())
        .env("CLEF_DATABASE_URL", &h.state.config.database_url)
        .env("CLEF_KEYS_DIR", &h.state.config.keys_dir)
        .env("CLEF_LISTEN", "127.0.0.1:0")
        .env("CLEF_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        loop {
            let mut line = vec![];
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut log: Vec<u8> = vec![];
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("clef serve started");
        let text = String::from_utf8_lossy(&line).into_owned();
        log.extend_from_slice(&line);
        if let Some(rest) = text.split("listen=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let http = reqwest::Client::new();
    let forged = "evil\r\n2026-01-01T00:00:00.000000Z  INFO clef: forged line\u{1b}[2J";
    let sneaky = "evil\"\u{2028}2026-01-01T00:00:00Z INFO forged";
    for id in [forged, sneaky] {
        let r = http
            .post(format!("http://{addr}/token"))
            .form(&[("client_id", id), ("client_secret", "x"), ("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{}:x", id.replace('\r', "%0D").replace('\n', "%0A")));
        let r = http
            .post(format!("http://{addr}/token"))
            .header("authorization", format!("Basic {v}"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
    }
    // Stop the server we started, then read what it wrote.
    child.kill().unwrap();
    let _ = child.wait();
    reader.join().unwrap();
    while let Ok(line) = rx.try_recv() {
        log.extend_from_slice(&line);
    }
    let text = String::from_utf8_lossy(&log);
    assert!(
        !log.contains(&b'\r') && !log.contains(&0x1b),
        "raw control bytes in the log:\n{text}"
    );
    assert!(!text.contains('\u{2028}'), "a raw line separator in the log:\n{text}");
    assert!(text.lines().all(|l| !l.starts_with("2026-01-01")), "a forged line:\n{text}");
    assert!(
        text.contains("client authentication failed"),
        "the unknown client was logged:\n{text}"
    );
}

fn description_ok(d: &str) -> bool {
    d.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// RFC 6749 §5.2: error_description keeps to printable ASCII without `"` and `\`.
async fn error_descriptions_keep_to_the_rfc_charset(h: &TestServer) {
    let rp = h.confidential("rp").await;
    let redirect = "http://127.0.0.1/rp/cb";
    let b = h.browser();
    for extra in [
        &[("prompt", "\"§\\é")][..],
        &[("scope", "openid §")][..],
        &[("response_mode", "\"§")][..],
        &[("max_age", "§")][..],
        &[("x\"§", "1"), ("x\"§", "2")][..],
    ] {
        let mut url = authorize_url(&rp.client_id, redirect, extra);
        if extra.len() == 2 {
            url.push_str("&x%22%C2%A7=2");
        }
        let page = b.get(&url).await;
        let d = page
            .location_param("error_description")
            .unwrap_or_else(|| panic!("{extra:?}: {:?}", page.location));
        assert!(description_ok(&d), "{extra:?}: {d:?}");
    }
    for form in [
        &[("grant_type", "\"§\\é")][..],
        &[("grant_type", "authorization_code"), ("code", "\"§")][..],
        &[("grant_type", "refresh_token"), ("refresh_token", "é\"")][..],
    ] {
        let mut f = vec![
            ("client_id", rp.client_id.as_str()),
            ("client_secret", rp.client_secret.as_deref().unwrap()),
        ];
        f.extend_from_slice(form);
        let (status, body) = post_json(h, "/token", &f, None).await;
        assert_eq!(status, 400, "{body}");
        let d = body["error_description"].as_str().unwrap();
        assert!(description_ok(d), "{form:?}: {d:?}");
    }
}

/// The form_post page may post only to the client's redirect origin (CSP `form-action`).
async fn form_post_page_posts_only_to_the_client(h: &TestServer) {
    let rp = h.confidential("rp").await;
    let page = h
        .browser()
        .get(&authorize_url(
            &rp.client_id,
            "http://127.0.0.1/rp/cb",
            &[("response_mode", "form_post"), ("response_type", "token")],
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action http://127.0.0.1;"), "{csp}");
    assert!(page.body.contains("unsupported_response_type"));
}

fn clef_cli(h: &TestServer, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clef"))
        .args(args)
        .current_dir(h.dir())
        .env("CLEF_DATABASE_URL", &h.state.config.database_url)
        .env("CLEF_KEYS_DIR", &h.state.config.keys_dir)
        .env("CLEF_LOG", "warn")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        // A command that refuses its arguments exits without reading: the pipe is closed then,
        // and its exit status, not the write, is what the test checks.
        if let Err(e) = child.stdin.take().unwrap().write_all(input.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `users create --password-stdin` reads one line; `--password` warns about the process list.
async fn users_create_reads_the_password_from_stdin(h: &TestServer) {
    let (ok, _, err) = clef_cli(
        h,
        &["users", "create", "--email", "stdin@example.test", "--password-stdin"],
        Some("a long password\nnot the password\n"),
    );
    assert!(ok, "{err}");
    let user = h.state.db.user_by_email("stdin@example.test").await.unwrap().unwrap();
    let hash = user.password_hash.unwrap();
    assert!(h.state.hasher.verify("a long password", Some(&hash)).await.unwrap());
    let (ok, _, _) = clef_cli(h, &["users", "create", "--email", "x@example.test", "--password-stdin"], Some("\n"));
    assert!(!ok, "an empty line is no password");
    let (ok, _, _) = clef_cli(
        h,
        &[
            "users",
            "create",
            "--email",
            "y@example.test",
            "--password",
            "long enough",
            "--password-stdin",
        ],
        Some("long enough\n"),
    );
    assert!(!ok, "one source of password only");
    let (_, help, _) = clef_cli(h, &["users", "create", "--help"], None);
    assert!(help.contains("process list") && help.contains("--password-stdin"), "{help}");
}

e2e!(
    control_characters_get_the_protocol_error_never_500,
    oversized_fields_are_refused_before_writing,
    answers_do_not_wait_for_the_mail_server,
    pre_hijacked_password_never_signs_in,
    verification_in_another_browser_removes_the_pending_password,
    legitimate_signup_then_password_login,
    pending_account_failure_looks_like_any_other,
    logs_carry_no_raw_control_bytes,
    error_descriptions_keep_to_the_rfc_charset,
    form_post_page_posts_only_to_the_client,
    users_create_reads_the_password_from_stdin,
);

/// Where a finished verification leads: the redirect, or the confirmation page's Continue link.
fn continues_to(p: &crate::support::browser::Page) -> Option<String> {
    p.location.clone().or_else(|| p.button_links().into_iter().next())
}
