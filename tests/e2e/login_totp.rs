//! The login with TOTP (issue 8, section 2): the step after any first factor, `amr` with
//! `otp` and `mfa`, backup codes once, replays refused, four tries a minute, the five-wrong
//! lock ending the attempt, and the enrolment offered after a login by emailed code.

use clef::store::EventKind;
use reqwest::StatusCode;

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::{Browser, Page, html_unescape};
use crate::support::rp::access_token;

const PW: &str = "correct horse battery";
const NEW_PW: &str = "a brand new passphrase";
const WRONG: &str = "That code is not right";
const LOCKED: &str = "paused for 15 minutes";

/// The text of the element with this id.
fn by_id(page: &Page, id: &str) -> String {
    let at = page
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let start = at + page.body[at..].find('>').unwrap() + 1;
    let end = start + page.body[start..].find('<').unwrap();
    html_unescape(&page.body[start..end])
}

/// TOTP turned on through the account pages, as a user does it: the otpauth URI is read from
/// the enrolment page and the first code computed with totp-rs. Returns the authenticator
/// and the backup codes shown once.
async fn enrol_through_the_pages(h: &TestServer, email: &str) -> (totp_rs::Totp, Vec<String>) {
    let b = h.browser();
    let login = b.get("/login").await;
    let signed = b.submit(&login, &[("email", email), ("password", PW)]).await;
    assert!(signed.status.is_redirection(), "{}", signed.body);
    let status = b.get("/account/two-factor").await;
    assert!(status.body.contains("data-state=\"off\""), "{}", status.body);
    let page = b.submit(&status, &[]).await;
    let totp = totp_rs::Totp::from_url(by_id(&page, "otpauth-uri")).unwrap();
    let code = totp.generate(h.clock.now() as u64).to_string();
    let done = b.submit(&page, &[("code", &code)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let at = done.body.find("id=\"backup-codes\"").expect("the codes, once");
    let list = &done.body[at..at + done.body[at..].find("</ul>").unwrap()];
    let codes: Vec<String> = list
        .split("<code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 8);
    // The enrolment code's step is spent: the logins below use the next one.
    h.clock.advance(30);
    (totp, codes)
}

fn code_now(h: &TestServer, t: &totp_rs::Totp) -> String {
    t.generate(h.clock.now() as u64).to_string()
}

/// The authorization request of `url`, logged in with the password: the page that follows.
async fn password_step(b: &Browser, url: &str, email: &str) -> Page {
    let login = b.follow(b.get(url).await).await;
    b.submit(&login, &[("email", email), ("password", PW)]).await
}

/// "Email me a code" from the login page of `url`, then the code from the mail.
async fn code_step(h: &TestServer, b: &Browser, url: &str, email: &str) -> Page {
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

fn assert_totp_step(page: &Page) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"login-totp\""), "the TOTP step: {}", page.body);
    assert!(page.body.contains("autocomplete=\"one-time-code\" inputmode=\"numeric\""));
    assert!(page.body.contains("id=\"login-backup-code\""), "the backup-code way out");
}

/// A backup code posted on the TOTP step's attempt.
async fn post_backup(b: &Browser, step: &Page, code: &str) -> Page {
    let (csrf, attempt) = (step.input("csrf").unwrap(), step.input("attempt").unwrap());
    b.post("/login/backup-code", &[("csrf", &csrf), ("attempt", &attempt), ("code", code)])
        .await
}

/// The claims part of a JWT, unverified: the test only reads what the server put in.
fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// Enrolment on the pages; the next login asks for TOTP after the password; a right code gets
/// the client its code, with `amr` ["pwd","otp","mfa"] and the 2fa `acr` in the ID token and
/// the access token. A replayed step is refused; a backup code works once, not twice.
async fn enrolled_user_logs_in_with_totp(h: &TestServer) {
    let sub = h.user("ana@example.test", PW).await;
    let (totp, backup) = enrol_through_the_pages(h, "ana@example.test").await;
    let rp = h.first_party().await;

    let b = h.browser();
    let start = rp.start(&[]);
    let step = password_step(&b, &start.url, "ana@example.test").await;
    assert_totp_step(&step);
    assert!(b.cookie(&h.issuer, "clef_session").is_none(), "no session on one factor");
    let code = code_now(h, &totp);
    let back = b.follow(b.submit(&step, &[("code", &code)]).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:2fa");
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);
    let at = access_token(&tokens);
    if at.matches('.').count() == 2 {
        // RFC 9068 access token: the same amr, from the same place.
        let c = jwt_claims(&at);
        assert_eq!(c["amr"], serde_json::json!(["pwd", "otp", "mfa"]), "{c}");
        assert_eq!(c["acr"], "urn:clef:acr:2fa", "{c}");
    }

    // The step just used is refused at the next login (replay), on the same step of time.
    let c = h.browser();
    let step = password_step(&c, &rp.start(&[]).url, "ana@example.test").await;
    assert_totp_step(&step);
    let replay = c.submit(&step, &[("code", &code)]).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert!(replay.body.contains(WRONG), "{}", replay.body);
    assert!(c.cookie(&h.issuer, "clef_session").is_none());

    // A backup code instead: it works once...
    post_backup(&c, &replay, &backup[0]).await.assert_redirect_to("/authorize/resume");
    assert!(c.cookie(&h.issuer, "clef_session").is_some());
    // ...and not twice.
    let d = h.browser();
    let step = password_step(&d, &rp.start(&[]).url, "ana@example.test").await;
    let again = post_backup(&d, &step, &backup[0]).await;
    assert!(again.body.contains(WRONG), "{}", again.body);
    assert!(d.cookie(&h.issuer, "clef_session").is_none());
    let used = h.state.db.events_recent(&sub, 20).await.unwrap();
    assert_eq!(used.iter().filter(|e| e.kind == EventKind::BackupCodeUsed).count(), 1);
}

/// Four wrong codes in the first minute, one more after it: the fifth locks the second
/// factor, the attempt ends, the page says so, and the owner is mailed. The lock holds for a
/// new attempt with the right code, for 15 minutes.
async fn five_wrong_codes_lock_and_end_the_attempt(h: &TestServer) {
    h.user("lock@example.test", PW).await;
    let (totp, _) = enrol_through_the_pages(h, "lock@example.test").await;
    let rp = h.first_party().await;
    let b = h.browser();
    let step = password_step(&b, &rp.start(&[]).url, "lock@example.test").await;
    assert_totp_step(&step);
    let mails_before = h.mail.to("lock@example.test").len();
    for _ in 0..4 {
        let wrong = b.submit(&step, &[("code", "000000")]).await;
        assert!(wrong.body.contains(WRONG), "{}", wrong.body);
    }
    h.clock.advance(61);
    let fifth = b.submit(&step, &[("code", "000000")]).await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS, "{}", fifth.body);
    assert!(fifth.body.contains(LOCKED), "the page says the lock: {}", fifth.body);
    assert!(!fifth.body.contains("id=\"login-totp\""), "no code form on an ended attempt");
    // The attempt is over: even the right code on it finds nothing.
    let after = b.submit(&step, &[("code", &code_now(h, &totp))]).await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST, "{}", after.body);
    assert!(b.cookie(&h.issuer, "clef_session").is_none());
    let mails = h.mail.to("lock@example.test");
    assert_eq!(mails.len(), mails_before + 1, "one lock mail");
    assert_eq!(mails.last().unwrap().subject, "Two-factor login paused on your account");

    // A new attempt meets the lock, right code or not, until it runs out.
    let c = h.browser();
    let step = password_step(&c, &rp.start(&[]).url, "lock@example.test").await;
    assert_totp_step(&step);
    let refused = c.submit(&step, &[("code", &code_now(h, &totp))]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
    assert!(refused.body.contains(LOCKED));
    assert!(c.cookie(&h.issuer, "clef_session").is_none());
    h.clock.advance(15 * 60);
    let d = h.browser();
    let step = password_step(&d, &rp.start(&[]).url, "lock@example.test").await;
    d.submit(&step, &[("code", &code_now(h, &totp))])
        .await
        .assert_redirect_to("/authorize/resume");
}

/// Wrong codes sent in parallel: the minute's limit lets four through, and the lock counts at
/// most five in all (the fifth locks; none after it is ever compared as "wrong").
async fn parallel_wrong_codes_never_count_more_than_five(h: &TestServer) {
    let sub = h.user("para@example.test", PW).await;
    enrol_through_the_pages(h, "para@example.test").await;
    let rp = h.first_party().await;
    let b = h.browser();
    let step = password_step(&b, &rp.start(&[]).url, "para@example.test").await;
    assert_totp_step(&step);
    let wrong_code = || b.submit(&step, &[("code", "000000")]);
    let mut wrong_total = 0;
    let mut locked = false;
    // Bursts of eight, a minute apart, until the lock: the per-account and per-(account, IP)
    // counts each let at most four a minute through, and the lock counts at most five.
    for round in 0..4 {
        let (p1, p2, p3, p4, p5, p6, p7, p8) = tokio::join!(
            wrong_code(),
            wrong_code(),
            wrong_code(),
            wrong_code(),
            wrong_code(),
            wrong_code(),
            wrong_code(),
            wrong_code()
        );
        let burst = [p1, p2, p3, p4, p5, p6, p7, p8];
        let wrong = burst.iter().filter(|p| p.body.contains(WRONG)).count();
        let locks = burst.iter().filter(|p| p.body.contains(LOCKED)).count();
        for p in &burst {
            let limited = p.body.contains("Too many codes were tried");
            // Once the lock ended the attempt, a late post finds no attempt at all.
            let over = p.status == StatusCode::BAD_REQUEST && p.body.contains("already finished");
            assert!(
                p.body.contains(WRONG) || p.body.contains(LOCKED) || over || limited,
                "round {round}: {} {}",
                p.status,
                p.body
            );
            assert!(!limited || (p.status == StatusCode::TOO_MANY_REQUESTS && p.headers.contains_key("retry-after")));
        }
        assert!(
            wrong + locks <= 4,
            "round {round}: {wrong} wrong, {locks} locked: more than four through"
        );
        wrong_total += wrong;
        if burst.iter().any(|p| p.body.contains(LOCKED)) {
            locked = true;
            break;
        }
        h.clock.advance(61);
    }
    assert!(locked, "the fifth try locks");
    assert_eq!(wrong_total, 4, "four wrong, then the lock: never a sixth counted");
    assert!(b.cookie(&h.issuer, "clef_session").is_none());
    let locks = h.state.db.events_recent(&sub, 50).await.unwrap();
    assert_eq!(locks.iter().filter(|e| e.kind == EventKind::SecondFactorLocked).count(), 1);
    let lock_mails = h.mail.to("para@example.test");
    assert_eq!(
        lock_mails
            .iter()
            .filter(|m| m.subject == "Two-factor login paused on your account")
            .count(),
        1
    );
}

/// The fifth try in a minute answers 429 with Retry-After, before any check: also from a new
/// attempt in another browser (the count is per account) and for a right code.
async fn four_tries_a_minute_then_429(h: &TestServer) {
    h.user("rate@example.test", PW).await;
    let (totp, backup) = enrol_through_the_pages(h, "rate@example.test").await;
    let rp = h.first_party().await;
    let b = h.browser();
    let step = password_step(&b, &rp.start(&[]).url, "rate@example.test").await;
    for _ in 0..3 {
        assert!(b.submit(&step, &[("code", "000000")]).await.body.contains(WRONG));
    }
    assert!(
        post_backup(&b, &step, "zzzzz-zzzzz").await.body.contains(WRONG),
        "backup codes share the count"
    );
    let fifth = b.submit(&step, &[("code", &code_now(h, &totp))]).await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS, "{}", fifth.body);
    let retry: i64 = fifth.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(fifth.body.contains("Too many codes were tried"), "{}", fifth.body);

    let c = h.browser();
    let other = password_step(&c, &rp.start(&[]).url, "rate@example.test").await;
    let refused = post_backup(&c, &other, &backup[0]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "per account, not per attempt");
    assert!(c.cookie(&h.issuer, "clef_session").is_none());

    h.clock.advance(61);
    b.submit(&step, &[("code", &code_now(h, &totp))])
        .await
        .assert_redirect_to("/authorize/resume");
}

/// A `--require-2fa` client and a TOTP user: TOTP is the second factor, no code is mailed,
/// and no enrolment is offered to a user who has it.
async fn require_2fa_client_asks_totp_not_the_mail(h: &TestServer) {
    h.user("strict@example.test", PW).await;
    let (totp, _) = enrol_through_the_pages(h, "strict@example.test").await;
    let rp = h.strict_client().await;
    let mails = h.mail.to("strict@example.test").len();
    let b = h.browser();
    let start = rp.start(&[]);
    let step = password_step(&b, &start.url, "strict@example.test").await;
    assert_totp_step(&step);
    assert!(!step.body.contains("id=\"login-code\""), "not the emailed code");
    let done = b.submit(&step, &[("code", &code_now(h, &totp))]).await;
    done.assert_redirect_to("/authorize/resume");
    let back = b.follow(done).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:2fa");
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);
    assert_eq!(h.mail.to("strict@example.test").len(), mails, "no code was mailed");
}

/// Neither the passwordless code nor a password reset is a way around TOTP.
async fn emailed_code_and_reset_still_ask_totp(h: &TestServer) {
    h.user("around@example.test", PW).await;
    let (totp, _) = enrol_through_the_pages(h, "around@example.test").await;
    let rp = h.first_party().await;

    let b = h.browser();
    let start = rp.start(&[]);
    let step = code_step(h, &b, &start.url, "around@example.test").await;
    assert_totp_step(&step);
    assert!(b.cookie(&h.issuer, "clef_session").is_none());
    let back = b.follow(b.submit(&step, &[("code", &code_now(h, &totp))]).await).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let amr: Vec<String> = rp
        .id_claims(&tokens, &start.nonce)
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    // The mailbox and the device: two kinds, both `otp`.
    assert_eq!(amr, ["otp", "mfa"]);

    h.clock.advance(30);
    let c = h.browser();
    let login = c.follow(c.get(&rp.start(&[]).url).await).await;
    let forgot = c.get(&format!("/password/forgot?req={}", login.input("req").unwrap())).await;
    let sent = c.submit(&forgot, &[("email", "around@example.test")]).await;
    let code = h.mail.last_to("around@example.test").six_digit_code();
    let step = c.submit(&sent, &[("code", &code), ("password", NEW_PW)]).await;
    assert_totp_step(&step);
    assert!(c.cookie(&h.issuer, "clef_session").is_none(), "a reset does not skip TOTP");
    let done = c.submit(&step, &[("code", &code_now(h, &totp))]).await;
    assert!(done.body.contains("Password changed"), "{}", done.body);
}

/// A two-factor login by password and emailed code, without TOTP: the offer, after the
/// session exists. "Not now" goes on to the client with a code; "Set it up now" opens the
/// enrolment page.
async fn offer_after_a_mailed_second_factor(h: &TestServer) {
    h.user("offer@example.test", PW).await;
    let rp = h.strict_client().await;
    let b = h.browser();
    let start = rp.start(&[]);
    let step = password_step(&b, &start.url, "offer@example.test").await;
    assert!(step.body.contains("id=\"login-code\""), "{}", step.body);
    let code = h.mail.last_to("offer@example.test").six_digit_code();
    let offer = b.submit(&step, &[("code", &code)]).await;
    assert_eq!(offer.status, StatusCode::OK, "{}", offer.body);
    assert!(
        offer.body.contains("Protect your account with an authenticator app"),
        "{}",
        offer.body
    );
    assert!(b.cookie(&h.issuer, "clef_session").is_some(), "the login is done");
    assert!(!offer.body.contains("<script"), "no JavaScript");
    let links = offer.button_links();
    assert_eq!(links[0], "/account/two-factor");
    assert!(links[1].starts_with("/authorize/resume?req="), "{links:?}");
    let setup = b.get(&links[0]).await;
    assert!(setup.body.contains("data-state=\"off\""), "{}", setup.body);

    // "Not now": exactly where the login would have gone without the offer.
    let back = b.follow(b.get(&links[1]).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:2fa");

    // In French too.
    let fr = h.browser();
    let start = rp.start_with(&[], &[("ui_locales", "fr")]);
    let step = password_step(&fr, &start.url, "offer@example.test").await;
    let code = h.mail.last_to("offer@example.test").six_digit_code();
    let offer = fr.submit(&step, &[("code", &code)]).await;
    assert!(
        offer.body.contains("Protégez votre compte avec une application d’authentification"),
        "{}",
        offer.body
    );
}

/// No offer after a one-factor login, nor to a user who has TOTP: straight back to the client.
async fn no_offer_for_one_factor_or_a_totp_user(h: &TestServer) {
    h.user("one@example.test", PW).await;
    let rp = h.first_party().await;
    let b = h.browser();
    let page = password_step(&b, &rp.start(&[]).url, "one@example.test").await;
    page.assert_redirect_to("/authorize/resume");

    // The passwordless code alone is one factor too.
    let c = h.browser();
    code_step(h, &c, &rp.start(&[]).url, "one@example.test")
        .await
        .assert_redirect_to("/authorize/resume");

    h.user("has@example.test", PW).await;
    let (totp, _) = enrol_through_the_pages(h, "has@example.test").await;
    let strict = h.strict_client().await;
    let d = h.browser();
    let step = code_step(h, &d, &strict.start(&[]).url, "has@example.test").await;
    assert_totp_step(&step);
    d.submit(&step, &[("code", &code_now(h, &totp))])
        .await
        .assert_redirect_to("/authorize/resume");
}

e2e!(
    enrolled_user_logs_in_with_totp,
    five_wrong_codes_lock_and_end_the_attempt,
    parallel_wrong_codes_never_count_more_than_five,
    four_tries_a_minute_then_429,
    require_2fa_client_asks_totp_not_the_mail,
    emailed_code_and_reset_still_ask_totp,
    offer_after_a_mailed_second_factor,
    no_offer_for_one_factor_or_a_totp_user,
);
