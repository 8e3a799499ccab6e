//! The login chain as one model: every path ends through the same next-step policy, and a
//! login attempt is bound to its browser, single-finish and short-lived.

use clef::admin::UserSpec;
use clef::store::EventKind;

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::{Browser, Page};

const PW: &str = "correct horse battery";
const NEW_PW: &str = "a brand new passphrase";

/// "Email me a code" from the login page of `url`, then the code from the mail.
async fn code_login(h: &TestServer, b: &Browser, url: &str, email: &str) -> Page {
    let login = b.follow(b.get(url).await).await;
    assert!(login.body.contains("Strict app"), "the page names the application: {}", login.body);
    let form = [
        ("csrf", login.input("csrf").unwrap()),
        ("req", login.input("req").unwrap()),
        ("email", email.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = b.post("/login/code", &form).await;
    let code = h.mail.last_to(email).six_digit_code();
    b.submit(&page, &[("code", &code)]).await
}

/// The password asked after the emailed code, at a two-factor client.
async fn at_password_step(h: &TestServer, b: &Browser, url: &str, email: &str) -> Page {
    let step = code_login(h, b, url, email).await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(step.body.contains("id=\"login-password\""), "{}", step.body);
    assert!(step.body.contains("we also need your password"), "{}", step.body);
    assert!(b.cookie(&h.issuer, "clef_session").is_none(), "no session on one factor");
    step
}

/// Today's endless loop back to /login, said instead: a passwordless account at a client that
/// demands two factors is told what to do, and the way out (choosing a password) is linked.
async fn passwordless_user_at_a_2fa_client_is_told_what_to_do(h: &TestServer) {
    h.user_with(UserSpec {
        email: "nopw@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.strict_client().await;
    let b = h.browser();
    let start = rp.start(&[]);
    let page = code_login(h, &b, &start.url, "nopw@example.test").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("requires two-step sign-in"), "{}", page.body);
    assert!(!page.body.contains("current-password"), "not the login page again");
    assert!(page.body.contains("href=\"&#x2f;password&#x2f;forgot?req="), "{}", page.body);
    assert!(b.cookie(&h.issuer, "clef_session").is_none());
}

/// A reset is a first factor like any other: at a `--require-2fa` client the password is still
/// asked after it, and the tokens say two factors.
async fn reset_at_a_2fa_client_asks_for_the_second_factor(h: &TestServer) {
    let sub = h.user("reset2fa@example.test", PW).await;
    let rp = h.strict_client().await;
    let b = h.browser();
    let start = rp.start(&[]);
    let login = b.follow(b.get(&start.url).await).await;
    let forgot = b.get(&format!("/password/forgot?req={}", login.input("req").unwrap())).await;
    let sent = b.submit(&forgot, &[("email", "reset2fa@example.test")]).await;
    let code = h.mail.last_to("reset2fa@example.test").six_digit_code();
    let step = b.submit(&sent, &[("code", &code), ("password", NEW_PW)]).await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(
        step.body.contains("id=\"login-password\""),
        "the second factor, not a session: {}",
        step.body
    );
    assert!(b.cookie(&h.issuer, "clef_session").is_none());
    // Both factors in: the reset is confirmed, then the request goes on.
    let done = b.submit(&step, &[("password", NEW_PW)]).await;
    assert!(done.body.contains("Password changed"), "{}", done.body);
    let back = b.follow(b.get(&done.button_links()[0]).await).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:2fa");
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert_eq!(amr, ["otp", "pwd", "mfa"]);
    // The session's start is on the account's record, with where it came from.
    let events = h.state.db.events_recent(&sub, 10).await.unwrap();
    let login = events.iter().find(|e| e.kind == EventKind::Login).expect("a login event");
    assert_eq!(login.ip.as_deref(), Some("127.0.0.1"));
    assert!(login.detail.as_deref().is_some_and(|d| d.contains("pwd")));
}

/// Two posts finishing one attempt at once: one gets the session, the other the "over" page.
async fn two_racing_submits_on_one_attempt_one_wins(h: &TestServer) {
    h.user("race2@example.test", PW).await;
    let rp = h.strict_client().await;
    let b = h.browser();
    let step = at_password_step(h, &b, &rp.start(&[]).url, "race2@example.test").await;
    let (one, two) = tokio::join!(b.submit(&step, &[("password", PW)]), b.submit(&step, &[("password", PW)]));
    // The winner gets the session and the TOTP offer (mailbox and password, no TOTP).
    let won: Vec<&Page> = [&one, &two].into_iter().filter(|p| p.status == 200).collect();
    assert_eq!(won.len(), 1, "{} / {}", one.status, two.status);
    assert!(won[0].body.contains("id=\"offer-totp-later\""), "{}", won[0].body);
    assert!(won[0].button_links()[1].starts_with("/authorize/resume"));
    let lost = if one.status == 200 { &two } else { &one };
    assert_eq!(lost.status, 400, "{}", lost.body);
    assert!(lost.body.contains("already finished"), "{}", lost.body);
}

/// An attempt id copied into another browser finds nothing there; the first browser goes on.
async fn an_attempt_from_another_browser_is_refused(h: &TestServer) {
    h.user("bound@example.test", PW).await;
    let rp = h.strict_client().await;
    let a = h.browser();
    let step = at_password_step(h, &a, &rp.start(&[]).url, "bound@example.test").await;
    let other = h.browser();
    let theirs = other.get("/login").await;
    let attempt = step.input("attempt").unwrap();
    let csrf = theirs.input("csrf").unwrap();
    let page = other
        .post("/login/password", &[("csrf", &csrf), ("attempt", &attempt), ("password", PW)])
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("has expired or was already finished"), "{}", page.body);
    assert!(other.cookie(&h.issuer, "clef_session").is_none());
    let back = a.submit(&step, &[("password", PW)]).await;
    assert!(back.body.contains("id=\"offer-totp-later\""), "{}", back.body);
    assert!(a.cookie(&h.issuer, "clef_session").is_some());
}

/// An attempt lives as long as its authorization request may wait, and no longer.
async fn an_expired_attempt_is_refused(h: &TestServer) {
    h.user("late@example.test", PW).await;
    let rp = h.strict_client().await;
    let b = h.browser();
    let step = at_password_step(h, &b, &rp.start(&[]).url, "late@example.test").await;
    h.clock.advance(clef::auth::engine::ATTEMPT_TTL + 1);
    let page = b.submit(&step, &[("password", PW)]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("has expired or was already finished"), "{}", page.body);
    assert!(b.cookie(&h.issuer, "clef_session").is_none());
}

/// The magic link ends a factor like the typed code: at a two-factor client the password is
/// then asked, on a page whose attempt id is new (the link knew only the old one's hash).
async fn magic_link_at_a_2fa_client_asks_for_the_password(h: &TestServer) {
    h.user("linked@example.test", PW).await;
    let rp = h.strict_client().await;
    let b = h.browser();
    let start = rp.start(&[]);
    let login = b.follow(b.get(&start.url).await).await;
    let form = [
        ("csrf", login.input("csrf").unwrap()),
        ("req", login.input("req").unwrap()),
        ("email", "linked@example.test".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let code_page = b.post("/login/code", &form).await;
    let link = h.mail.last_to("linked@example.test").link("/login/link");
    let step = b.get(&link).await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(step.body.contains("id=\"login-password\""), "{}", step.body);
    assert_ne!(step.input("attempt"), code_page.input("attempt"));
    // The mailbox and the password: the TOTP offer, then "Not now" goes on.
    let offer = b.submit(&step, &[("password", PW)]).await;
    assert!(offer.body.contains("id=\"offer-totp-later\""), "{}", offer.body);
    let back = b.follow(b.get(&offer.button_links()[1]).await).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let amr: Vec<String> = rp
        .id_claims(&tokens, &start.nonce)
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    assert_eq!(amr, ["otp", "pwd", "mfa"]);
}

/// TOTP on, as the account page would leave it: a secret and eight backup codes.
async fn with_totp(h: &TestServer, user_id: &str) -> (Vec<u8>, Vec<String>) {
    use clef::auth::{backup_codes, totp};
    let secret = totp::new_secret();
    let sealed = totp::seal(&h.state.hmac_key, user_id, &secret).unwrap();
    let now = h.clock.now();
    h.state.db.totp_begin(user_id, &sealed, now).await.unwrap();
    let codes = backup_codes::generate();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| backup_codes::hash_for_storage(&h.state.hmac_key, user_id, c))
        .collect();
    let mut tx = h.state.db.begin().await.unwrap();
    // An enrolment code from a while ago was the last step accepted.
    assert!(tx.totp_activate(user_id, &sealed, now / 30 - 10, now).await.unwrap());
    tx.backup_codes_replace(user_id, &hashes, now).await.unwrap();
    tx.commit().await.unwrap();
    (secret, codes)
}

/// A user with TOTP on is asked for it after the password and after an emailed code alike;
/// the TOTP step and a backup code each work once.
async fn totp_follows_any_first_factor(h: &TestServer) {
    let sub = h.user("totp@example.test", PW).await;
    let (secret, backup) = with_totp(h, &sub).await;
    let rp = h.first_party().await;

    let b = h.browser();
    let start = rp.start(&[]);
    let login = b.follow(b.get(&start.url).await).await;
    let step = b.submit(&login, &[("email", "totp@example.test"), ("password", PW)]).await;
    assert!(step.body.contains("id=\"login-totp\""), "{}", step.body);
    assert!(step.body.contains("inputmode=\"numeric\"") && step.body.contains("id=\"login-backup-code\""));
    assert!(b.cookie(&h.issuer, "clef_session").is_none());
    let code = clef::auth::totp::code_at(&secret, h.clock.now()).unwrap();
    let back = b.follow(b.submit(&step, &[("code", &code)]).await).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:2fa");
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);

    // An emailed code is no way around it; the step already used is refused, a backup code works.
    let c = h.browser();
    let step = code_login_fp(h, &c, &rp.start(&[]).url, "totp@example.test").await;
    assert!(step.body.contains("id=\"login-totp\""), "{}", step.body);
    let replay = c.submit(&step, &[("code", &code)]).await;
    assert!(replay.body.contains("That code is not right"), "{}", replay.body);
    let (csrf, attempt) = (step.input("csrf").unwrap(), step.input("attempt").unwrap());
    let used = c
        .post(
            "/login/backup-code",
            &[("csrf", &csrf), ("attempt", &attempt), ("code", &backup[0])],
        )
        .await;
    used.assert_redirect_to("/authorize/resume");

    // The same backup code does not work twice.
    let d = h.browser();
    let login = d.follow(d.get(&rp.start(&[]).url).await).await;
    let step = d.submit(&login, &[("email", "totp@example.test"), ("password", PW)]).await;
    let again = d
        .post(
            "/login/backup-code",
            &[
                ("csrf", &step.input("csrf").unwrap()),
                ("attempt", &step.input("attempt").unwrap()),
                ("code", &backup[0]),
            ],
        )
        .await;
    assert!(again.body.contains("That code is not right"), "{}", again.body);
    assert!(d.cookie(&h.issuer, "clef_session").is_none());
}

/// As `code_login`, for a client that does not check the page's application name.
async fn code_login_fp(h: &TestServer, b: &Browser, url: &str, email: &str) -> Page {
    let login = b.follow(b.get(url).await).await;
    let form = [
        ("csrf", login.input("csrf").unwrap()),
        ("req", login.input("req").unwrap()),
        ("email", email.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = b.post("/login/code", &form).await;
    let code = h.mail.last_to(email).six_digit_code();
    b.submit(&page, &[("code", &code)]).await
}

e2e!(
    totp_follows_any_first_factor,
    passwordless_user_at_a_2fa_client_is_told_what_to_do,
    magic_link_at_a_2fa_client_asks_for_the_password,
    reset_at_a_2fa_client_asks_for_the_second_factor,
    two_racing_submits_on_one_attempt_one_wins,
    an_attempt_from_another_browser_is_refused,
    an_expired_attempt_is_refused,
);
