//! Email codes: passwordless login, the magic link, the second step, limits and lockout.

use clef::admin::{ClientSpec, UserSpec};
use clef::auth::email_otp;
use clef::store::OtpCheck;

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::{Browser, Page};
use crate::support::rp::Rp;

const PW: &str = "correct horse battery";

/// Opens the login page for an authorization request and asks for a code.
async fn ask_code(b: &Browser, start_url: &str, email: &str) -> (Page, Page) {
    let login = b.follow(b.get(start_url).await).await;
    let form = [
        ("csrf", login.input("csrf").unwrap()),
        ("req", login.input("req").unwrap()),
        ("email", email.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = b.post("/login/code", &form).await;
    (login, page)
}

async fn passwordless_login_by_emailed_code(h: &TestServer) {
    let sub = h
        .user_with(UserSpec {
            email: "otp@example.test".into(),
            ..UserSpec::default()
        })
        .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let start = rp.start(&["email"]);
    let (_, page) = ask_code(&b, &start.url, "otp@example.test").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("autocomplete=\"one-time-code\"") && page.body.contains("inputmode=\"numeric\""));
    assert!(page.body.contains("If an account exists for this address"));
    let mail = h.mail.last_to("otp@example.test");
    assert_eq!(mail.subject, "Your login code");
    assert!(!mail.html.is_empty());
    let code = mail.six_digit_code();

    let back = b.follow(b.submit(&page, &[("code", &code)]).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(claims.auth_method_refs().unwrap()[0].as_str(), "otp");
    assert_eq!(claims.email_verified(), Some(true), "a login code proves the mailbox");

    // Single use: the same code again is refused.
    let again = b.submit(&page, &[("code", &code)]).await;
    assert!(again.body.contains("This code has expired, was already used"), "{}", again.body);
}

async fn magic_link_works_once_and_only_in_the_asking_browser(h: &TestServer) {
    h.user_with(UserSpec {
        email: "link@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let start = rp.start(&[]);
    ask_code(&b, &start.url, "link@example.test").await;
    let link = h.mail.last_to("link@example.test").link("/login/link");
    assert!(link.starts_with(&h.issuer));

    let other = h.browser();
    assert_eq!(other.get(&link).await.status, 400, "another browser cannot use the link");
    let back = b.follow(b.get(&link).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    assert!(back.location_param("code").is_some());
    assert_eq!(b.get(&link).await.status, 400, "the link works once");
}

async fn wrong_and_expired_codes(h: &TestServer) {
    h.user_with(UserSpec {
        email: "w@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let (_, page) = ask_code(&b, &rp.start(&[]).url, "w@example.test").await;
    let code = h.mail.last_to("w@example.test").six_digit_code();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let p = b.submit(&page, &[("code", wrong)]).await;
    assert!(p.body.contains("This code is not right"), "{}", p.body);
    h.clock.advance(h.state.config.otp_ttl + 1);
    let p = b.submit(&page, &[("code", &code)]).await;
    assert!(p.body.contains("This code has expired"), "{}", p.body);
}

/// The 5th wrong try kills the code, even when the tries race each other.
async fn five_wrong_tries_kill_the_code_even_in_parallel(h: &TestServer) {
    let user = h
        .user_with(UserSpec {
            email: "race@example.test".into(),
            ..UserSpec::default()
        })
        .await;
    let now = h.clock.now();
    let ctx = email_otp::Context {
        user_id: Some(&user),
        browser_hash: "b",
        request_id: None,
    };
    let issued = email_otp::issue(&h.state.db, &h.state.hmac_key, "race@example.test", email_otp::LOGIN, ctx, 300, now)
        .await
        .unwrap();
    let wrong = if issued.code == "999999" { "888888" } else { "999999" };
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (db, key) = (h.state.db.clone(), h.state.hmac_key.clone());
        tries.spawn(async move {
            email_otp::check(&db, &key, "race@example.test", email_otp::LOGIN, wrong, now)
                .await
                .unwrap()
        });
    }
    let mut counted = 0;
    while let Some(r) = tries.join_next().await {
        if matches!(r.unwrap(), OtpCheck::Wrong { .. }) {
            counted += 1;
        }
    }
    assert_eq!(counted, 5, "exactly five tries were counted");
    let right = email_otp::check(
        &h.state.db,
        &h.state.hmac_key,
        "race@example.test",
        email_otp::LOGIN,
        &issued.code,
        now,
    )
    .await
    .unwrap();
    assert!(matches!(right, OtpCheck::Dead), "the right code no longer works");
}

async fn code_sends_are_limited(h: &TestServer) {
    h.user_with(UserSpec {
        email: "lim@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let url = rp.start(&[]).url;
    for _ in 0..3 {
        assert_eq!(ask_code(&b, &url, "lim@example.test").await.1.status, 200);
    }
    let (_, fourth) = ask_code(&b, &url, "lim@example.test").await;
    assert_eq!(fourth.status, 429);
    assert!(fourth.headers.contains_key("retry-after"));
    assert!(fourth.body.contains("Try again in"));
    assert_eq!(h.mail.to("lim@example.test").len(), 3);
    h.clock.advance(61);
    assert_eq!(ask_code(&b, &url, "lim@example.test").await.1.status, 200);
}

async fn code_checks_are_limited(h: &TestServer) {
    h.user_with(UserSpec {
        email: "chk@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let (_, page) = ask_code(&b, &rp.start(&[]).url, "chk@example.test").await;
    let code = h.mail.last_to("chk@example.test").six_digit_code();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        assert_eq!(b.submit(&page, &[("code", wrong)]).await.status, 200);
    }
    assert_eq!(
        b.submit(&page, &[("code", &code)]).await.status,
        429,
        "the 5th check in a minute waits"
    );
}

async fn unknown_email_looks_the_same(h: &TestServer) {
    h.user_with(UserSpec {
        email: "known@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let url = rp.start(&[]).url;
    let (_, known) = ask_code(&h.browser(), &url, "known@example.test").await;
    let (_, unknown) = ask_code(&h.browser(), &url, "nobody@example.test").await;
    assert_eq!(known.status, unknown.status);
    let norm = |p: &Page| {
        p.body
            .replace("known@example.test", "E")
            .replace("nobody@example.test", "E")
            .lines()
            .filter(|l| !l.contains("name=\"csrf\"") && !l.contains("req"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(norm(&known), norm(&unknown));
    // Sign-up is open: the unknown address is offered an account, and gets no code.
    let offer = h.mail.last_to("nobody@example.test");
    assert_eq!(offer.subject, "Create your account");
    assert!(
        offer
            .text
            .lines()
            .all(|l| !(l.trim().len() == 6 && l.trim().bytes().all(|c| c.is_ascii_digit())))
    );
}

async fn sixth_wrong_password_locks_even_in_parallel(h: &TestServer) {
    h.user("lock@example.test", PW).await;
    let rp = h.first_party().await;
    let b = h.browser();
    let login = b.follow(b.get(&rp.start(&[]).url).await).await;
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..6 {
        let form: Vec<(String, String)> = vec![
            ("csrf".into(), login.input("csrf").unwrap()),
            ("req".into(), login.input("req").unwrap()),
            ("email".into(), "lock@example.test".into()),
            ("password".into(), format!("wrong password {i}")),
        ];
        let http = reqwest::Client::builder().build().unwrap();
        let url = h.url("/login");
        let cookie = format!("clef_csrf={}", csrf_cookie(&b, h).await);
        tries.spawn(async move {
            http.post(url)
                .header("cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tries.join_next().await {
        statuses.push(s.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429],
        "five tries are judged, the sixth is refused unhashed"
    );
    // Locked now, even with the right password; and the owner was told, once.
    let page = b.submit(&login, &[("email", "lock@example.test"), ("password", PW)]).await;
    assert_eq!(page.status, 429);
    assert!(page.body.contains("Password login for this account is paused"));
    let told: Vec<_> = h
        .mail
        .to("lock@example.test")
        .into_iter()
        .filter(|m| m.subject.contains("paused"))
        .collect();
    assert_eq!(told.len(), 1);
    // The lock lifts after the lockout window.
    h.clock.advance(h.state.config.limits.lockout + 1);
    let page = b
        .follow(b.submit(&login, &[("email", "lock@example.test"), ("password", PW)]).await)
        .await;
    assert!(page.location_param("code").is_some(), "{} {:?}", page.status, page.location);
}

/// The CSRF cookie the browser holds, for requests sent outside it.
async fn csrf_cookie(b: &Browser, h: &TestServer) -> String {
    b.cookie(&h.issuer, "clef_csrf").unwrap()
}

async fn two_factors_when_the_client_asks(h: &TestServer) {
    h.user("two@example.test", PW).await;
    let rp = h.first_party().await;
    let b = h.browser();
    let start = rp.start_with(&[], &[("acr_values", "urn:clef:acr:2fa")]);
    let login = b.follow(b.get(&start.url).await).await;
    let step = b.submit(&login, &[("email", "two@example.test"), ("password", PW)]).await;
    assert_eq!(step.status, 200);
    assert!(
        step.body.contains("id=\"login-code\"") && step.body.contains("we also need a code"),
        "{}",
        step.body
    );
    let code = h.mail.last_to("two@example.test").six_digit_code();
    // Two factors by password and mail: the TOTP offer, then "Not now" goes on.
    let offer = b.submit(&step, &[("code", &code)]).await;
    assert!(offer.body.contains("id=\"offer-totp-later\""), "{}", offer.body);
    let back = b.follow(b.get(&offer.button_links()[1]).await).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:2fa");
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);
}

async fn mail_speaks_french_when_asked(h: &TestServer) {
    h.user_with(UserSpec {
        email: "fr@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let (_, page) = ask_code(&b, &rp.start_with(&[], &[("ui_locales", "fr")]).url, "fr@example.test").await;
    assert!(page.body.contains("Consultez vos e-mails"));
    let mail = h.mail.last_to("fr@example.test");
    assert_eq!(mail.subject, "Votre code de connexion");
    assert!(mail.text.contains("Voici votre code"));
}

async fn outbox_mode_writes_readable_eml(h: &TestServer) {
    let outbox = h.dir().join("outbox");
    let o = outbox.clone();
    let hs = TestServer::start_with(h.backend, move |raw| {
        raw.smtp_url = None;
        raw.outbox_dir = Some(o.display().to_string());
    })
    .await;
    hs.user_with(UserSpec {
        email: "box@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = hs.first_party().await;
    let (_, page) = ask_code(&hs.browser(), &rp.start(&[]).url, "box@example.test").await;
    assert_eq!(page.status, 200);
    // The code mail is written after the answer.
    hs.state.mailer.settled().await;
    let files: Vec<_> = std::fs::read_dir(&outbox).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].extension().is_some_and(|e| e == "eml"));
    let raw = std::fs::read(&files[0]).unwrap();
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("Your login code"));
    assert!(
        m.body_text(0)
            .unwrap()
            .lines()
            .any(|l| l.trim().len() == 6 && l.trim().bytes().all(|b| b.is_ascii_digit()))
    );
    assert_eq!(hs.mail.count(), 0);
    hs.finish().await;
}

async fn cleanup_removes_expired_codes(h: &TestServer) {
    h.user_with(UserSpec {
        email: "old@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    ask_code(&h.browser(), &rp.start(&[]).url, "old@example.test").await;
    h.clock.advance(86_401 * 2);
    let n = h.state.db.cleanup(h.clock.now()).await.unwrap();
    assert!(n >= 2, "the code and its counters go: {n}");
}

/// Reset: old password out, new one in, every old session and refresh token revoked.
async fn password_reset_revokes_everything_else(h: &TestServer) {
    h.user("reset@example.test", PW).await;
    let rp = h.first_party().await;
    let other = h.browser();
    let s1 = rp.start(&["email"]);
    let back = other.authorize(&s1.url, "reset@example.test", PW).await;
    let old = rp.exchange(&back.location_param("code").unwrap(), s1.verifier).await;
    let old_refresh = crate::support::rp::refresh_token(&old).unwrap();

    let b = h.browser();
    let login = b.follow(b.get(&rp.start(&[]).url).await).await;
    assert!(login.body.contains("Forgot your password?"));
    let forgot = b.get(&format!("/password/forgot?req={}", login.input("req").unwrap())).await;
    let page = b.submit(&forgot, &[("email", "reset@example.test")]).await;
    assert!(page.body.contains("autocomplete=\"new-password\"") && page.body.contains("autocomplete=\"one-time-code\""));
    let code = h.mail.last_to("reset@example.test").six_digit_code();
    let weak = b.submit(&page, &[("code", &code), ("password", "12345678")]).await;
    assert!(weak.body.contains("too easy to guess"));
    let done = b.submit(&page, &[("code", &code), ("password", "a brand new passphrase")]).await;
    assert!(done.body.contains("Password changed"), "a visible confirmation: {}", done.body);
    b.press_continue(&done).await.assert_redirect_to(&rp.redirect_uri);
    assert_eq!(h.mail.last_to("reset@example.test").subject, "Your password was changed");

    // The old refresh token and the other browser's session are gone.
    assert!(rp.refresh(&old_refresh).await.unwrap_err().contains("invalid_grant"));
    let none = other.get(&rp.start_with(&[], &[("prompt", "none")]).url).await;
    assert_eq!(none.location_param("error").as_deref(), Some("login_required"));
    // Old password refused, new one accepted.
    let fresh = h.browser();
    let login = fresh.follow(fresh.get(&rp.start(&[]).url).await).await;
    let refused = fresh.submit(&login, &[("email", "reset@example.test"), ("password", PW)]).await;
    assert!(refused.body.contains("The email or password is incorrect."));
    let ok = fresh
        .follow(
            fresh
                .submit(&login, &[("email", "reset@example.test"), ("password", "a brand new passphrase")])
                .await,
        )
        .await;
    assert!(ok.location_param("code").is_some());
}

/// A client that demands two factors gets them, even without `acr_values`, and a code alone
/// does not get through.
async fn clients_can_demand_two_factors(h: &TestServer) {
    h.user("strict@example.test", PW).await;
    let created = h
        .client(ClientSpec {
            name: "strict".into(),
            redirect_uris: vec!["http://127.0.0.1/strict/cb".into()],
            skip_consent: true,
            require_2fa: true,
            ..ClientSpec::default()
        })
        .await;
    let rp = Rp::discover(&h.issuer, &created, "http://127.0.0.1/strict/cb").await;

    let b = h.browser();
    let (_, page) = ask_code(&b, &rp.start(&[]).url, "strict@example.test").await;
    let code = h.mail.last_to("strict@example.test").six_digit_code();
    let after = b.follow(b.submit(&page, &[("code", &code)]).await).await;
    assert!(after.body.contains("current-password"), "one factor leads back to the login page");

    let start = rp.start(&[]);
    let login = b.follow(b.get(&start.url).await).await;
    let step = b.submit(&login, &[("email", "strict@example.test"), ("password", PW)]).await;
    assert!(
        step.body.contains("id=\"login-code\"") && step.body.contains("we also need a code"),
        "{}",
        step.body
    );
    let code = h.mail.last_to("strict@example.test").six_digit_code();
    let offer = b.submit(&step, &[("code", &code)]).await;
    assert!(offer.body.contains("id=\"offer-totp-later\""), "{}", offer.body);
    let back = b.follow(b.get(&offer.button_links()[1]).await).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    assert_eq!(
        rp.id_claims(&tokens, &start.nonce).auth_context_ref().unwrap().as_str(),
        "urn:clef:acr:2fa"
    );
}

/// A mail server that cannot be reached does not hang the page, and the page does not say so:
/// it would say that the address has an account (the send is logged and retried instead).
async fn unreachable_mail_server_is_not_told(h: &TestServer) {
    let hs = TestServer::start_with(h.backend, |raw| raw.smtp_url = Some("smtp://127.0.0.1:1".into())).await;
    hs.user_with(UserSpec {
        email: "down@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = hs.first_party().await;
    let (_, page) = ask_code(&hs.browser(), &rp.start(&[]).url, "down@example.test").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("We could not send the email right now"), "{}", page.body);
    assert!(page.body.contains("If an account exists for this address"), "{}", page.body);
    hs.finish().await;
}

e2e!(
    clients_can_demand_two_factors,
    unreachable_mail_server_is_not_told,
    password_reset_revokes_everything_else,
    passwordless_login_by_emailed_code,
    magic_link_works_once_and_only_in_the_asking_browser,
    wrong_and_expired_codes,
    five_wrong_tries_kill_the_code_even_in_parallel,
    code_sends_are_limited,
    code_checks_are_limited,
    unknown_email_looks_the_same,
    sixth_wrong_password_locks_even_in_parallel,
    two_factors_when_the_client_asks,
    mail_speaks_french_when_asked,
    outbox_mode_writes_readable_eml,
    cleanup_removes_expired_codes,
);
