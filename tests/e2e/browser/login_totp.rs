//! The login with TOTP in a real Chromium: password then the authenticator code (computed
//! here with totp-rs), the "use a backup code instead" path, and the enrolment offer's
//! "Not now" after a login by password and emailed code.

use clef::admin::ClientSpec;

use super::harness::{Browsers, Session};
use super::{Fixture, PW, form};
use crate::browser_tests;

const TOTP_FORM: &str = "form#login-totp";
const BACKUP_FORM: &str = "form#login-backup-code";

/// TOTP on for `user_id`, as the account page leaves it (a secret and eight backup codes);
/// returns the authenticator, built from the secret with totp-rs, and the codes.
async fn with_totp(f: &Fixture, user_id: &str) -> (totp_rs::Totp, Vec<String>) {
    use clef::auth::{backup_codes, totp};
    let h = &f.h;
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
    assert!(tx.totp_activate(user_id, &sealed, now / 30 - 10, now).await.unwrap());
    tx.backup_codes_replace(user_id, &hashes, now).await.unwrap();
    tx.commit().await.unwrap();
    let authenticator = totp_rs::Builder::new().with_secret(totp_rs::Secret::from(secret)).build().unwrap();
    (authenticator, codes)
}

/// From the client's authorization URL: the address and password, then the TOTP step.
async fn to_the_totp_step(s: &Session, url: &str, email: &str) {
    s.goto(url, "login").await;
    s.log_in(email, PW, "totp-step").await;
    assert!(s.has(TOTP_FORM).await, "the TOTP step on {}", s.url().await);
    assert!(
        s.has("form#login-totp input[autocomplete=\"one-time-code\"][inputmode=\"numeric\"]")
            .await
    );
}

async fn password_then_totp_code(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub = f.h.user("totp@example.test", PW).await;
    let (totp, _) = with_totp(&f, &sub).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    to_the_totp_step(&s, &start.url, "totp@example.test").await;
    let code = totp.generate(f.h.clock.now() as u64).to_string();
    s.submit(TOTP_FORM, &[("code", &code)], "after-totp").await;
    let auth_code = f.code_at_client(&s, &start).await;
    let tokens = f.rp.exchange(&auth_code, start.verifier).await;
    let claims = f.rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.subject().as_str(), sub);
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);
    f.finish().await;
}

async fn use_a_backup_code_instead(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub = f.h.user("lost@example.test", PW).await;
    let (_, codes) = with_totp(&f, &sub).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    to_the_totp_step(&s, &start.url, "lost@example.test").await;
    // The link a person with a lost phone follows, to the backup-code form on the same page.
    s.find("a[href=\"#backup_code\"]").await.click().await.unwrap();
    assert!(s.has(BACKUP_FORM).await);
    s.submit(BACKUP_FORM, &[("code", &codes[3])], "after-backup-code").await;
    let auth_code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&auth_code, start).await, sub);
    assert_eq!(f.h.state.db.backup_codes_count(&sub).await.unwrap(), 7, "spent");
    f.finish().await;
}

/// Password and emailed code at a `--require-2fa` client, no TOTP: the offer, then "Not now"
/// goes on to the client.
async fn offer_then_not_now(b: Browsers) {
    let f = Fixture::with(ClientSpec {
        skip_consent: true,
        require_2fa: true,
        ..ClientSpec::default()
    })
    .await;
    let sub = f.h.user("offer@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    s.log_in("offer@example.test", PW, "code-step").await;
    let code = f.h.mail.last_to("offer@example.test").six_digit_code();
    s.submit(form::CODE_VERIFY, &[("code", &code)], "offer").await;
    assert_eq!(
        s.text_of("h1").await.as_deref(),
        Some(super::text("en", "offer_totp.title").as_str())
    );
    assert!(s.has("a#offer-totp-setup[href$=\"/account/two-factor\"]").await);
    s.mark_document().await;
    s.find("a#offer-totp-later").await.click().await.unwrap();
    s.wait_new_document().await;
    let auth_code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&auth_code, start).await, sub);
    f.finish().await;
}

browser_tests!(password_then_totp_code, use_a_backup_code_instead, offer_then_not_now);
