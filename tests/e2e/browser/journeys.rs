//! The sign-in journeys, from the client's authorization request back to the client.

use clef::admin::UserSpec;

use super::harness::Browsers;
use super::{Fixture, PW, form, text};
use crate::browser_tests;

/// Password login → consent → the client's redirect URI → code exchange by the client.
async fn password_login_consent_and_code_exchange(b: Browsers) {
    let f = Fixture::new(false).await;
    let sub = f.h.user("ana@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start(&["email"]);
    s.goto(&start.url, "login").await;
    assert!(s.url().await.starts_with(&f.h.url("/login")));
    s.log_in("ana@example.test", PW, "consent").await;
    s.allow("after-consent").await;
    let code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&code, start).await, sub);
    f.finish().await;
}

/// A wrong password keeps the browser on the login page with an alert and no session; the
/// right one then goes through.
async fn wrong_password_then_right_one(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub = f.h.user("ana@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    s.log_in("ana@example.test", "not the password", "wrong-password").await;
    assert!(s.url().await.starts_with(&f.h.issuer), "still on clef");
    assert!(s.has(form::LOGIN).await, "the login form again");
    assert!(!s.alert().await.is_empty());
    assert!(f.app.hits().is_empty(), "nothing reached the client");
    s.log_in("ana@example.test", PW, "right-password").await;
    let code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&code, start).await, sub);
    f.finish().await;
}

/// Passwordless: the emailed six-digit code typed into the code page.
async fn email_code_login(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub =
        f.h.user_with(UserSpec {
            email: "otp@example.test".into(),
            ..UserSpec::default()
        })
        .await;
    let s = b.open("main").await;
    let start = f.rp.start(&["email"]);
    s.goto(&start.url, "login").await;
    s.fill_and_submit(form::LOGIN, &[("email", "otp@example.test")], form::CODE_BUTTON, "code")
        .await;
    assert!(s.has("input[autocomplete=\"one-time-code\"]").await);
    let code = f.h.mail.last_to("otp@example.test").six_digit_code();
    s.submit(form::CODE_VERIFY, &[("code", &code)], "after-code").await;
    let auth_code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&auth_code, start).await, sub);
    f.finish().await;
}

/// The magic link in the code mail: another browser profile is refused, the asking browser
/// gets through, and only once.
async fn magic_link_same_browser_only(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub =
        f.h.user_with(UserSpec {
            email: "link@example.test".into(),
            ..UserSpec::default()
        })
        .await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    s.fill_and_submit(form::LOGIN, &[("email", "link@example.test")], form::CODE_BUTTON, "code")
        .await;
    let link = f.h.mail.last_to("link@example.test").link("/login/link");

    let other = b.open("other").await;
    other.goto(&link, "link-refused").await;
    assert!(other.url().await.starts_with(&f.h.issuer), "the other browser stays on clef");
    assert!(!other.alert().await.is_empty());
    assert!(f.app.hits().is_empty(), "nothing reached the client");

    s.goto(&link, "link").await;
    let code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&code, start).await, sub);

    s.goto(&link, "link-again").await;
    assert!(!s.alert().await.is_empty(), "the link works once");
    assert_eq!(f.app.hits().len(), 1);
    f.finish().await;
}

/// Sign-up from the login page → verification code → consent → client; the welcome mail
/// follows the verification.
async fn signup_verification_and_welcome(b: Browsers) {
    let f = Fixture::new(false).await;
    let s = b.open("main").await;
    let start = f.rp.start(&["email"]);
    s.goto(&start.url, "login").await;
    s.mark_document().await;
    s.find("a[href*=\"/signup\"]").await.click().await.unwrap();
    s.wait_new_document().await;
    s.shot("signup").await;
    s.submit(
        form::SIGNUP,
        &[("email", "new@example.test"), ("name", "Newcomer"), ("password", "a fine password")],
        "verify",
    )
    .await;
    assert!(s.has("form#login-code").await);
    let mail = f.h.mail.last_to("new@example.test");
    assert_eq!(mail.subject, text("en", "mail.verify_email.subject"));
    s.submit(form::CODE_VERIFY, &[("code", &mail.six_digit_code())], "account-ready")
        .await;
    s.confirm("done.signup", "consent").await;
    assert_eq!(f.h.mail.last_to("new@example.test").subject, text("en", "mail.welcome.subject"));
    s.allow("after-consent").await;
    let code = f.code_at_client(&s, &start).await;
    let tokens = f.rp.exchange(&code, start.verifier).await;
    let claims = f.rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("new@example.test"));
    assert_eq!(claims.email_verified(), Some(true));
    f.finish().await;
}

/// Forgotten password from the login page → emailed code + new password → client; the old
/// password is refused afterwards in a fresh browser and the new one works.
async fn forgotten_password_reset(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub = f.h.user("reset@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    s.mark_document().await;
    s.find("a[href*=\"/password/forgot\"]").await.click().await.unwrap();
    s.wait_new_document().await;
    s.shot("forgot").await;
    s.submit(form::FORGOT, &[("email", "reset@example.test")], "reset").await;
    assert!(s.has("input[autocomplete=\"new-password\"]").await);
    let code = f.h.mail.last_to("reset@example.test").six_digit_code();
    s.submit(
        form::RESET,
        &[("code", &code), ("password", "a brand new passphrase")],
        "password-changed",
    )
    .await;
    s.confirm("done.reset", "after-reset").await;
    let auth_code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&auth_code, start).await, sub);

    let fresh = b.open("fresh").await;
    let again = f.rp.start(&[]);
    fresh.goto(&again.url, "login").await;
    fresh.log_in("reset@example.test", PW, "old-password").await;
    assert!(fresh.has(form::LOGIN).await, "the old password is refused");
    fresh.log_in("reset@example.test", "a brand new passphrase", "new-password").await;
    fresh.wait_until(|u| u.starts_with(&f.app.url("/cb"))).await;
    f.finish().await;
}

/// The account page: signed out, then signed in (shows the address, offers logout), then
/// logged out from there.
async fn account_page_and_logout_from_it(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("acct@example.test", PW).await;
    let s = b.open("main").await;
    s.goto(&f.h.url("/account"), "account-signed-out").await;
    assert!(!s.has(form::LOGOUT).await);
    assert!(s.has("a[href*=\"/login\"]").await);

    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    s.log_in("acct@example.test", PW, "after-login").await;
    f.code_at_client(&s, &start).await;

    s.goto(&f.h.url("/account"), "account").await;
    assert!(s.find("main").await.text().await.unwrap().contains("acct@example.test"));
    s.submit(form::LOGOUT, &[], "logged-out").await;
    s.goto(&f.h.url("/account"), "account-after-logout").await;
    assert!(!s.has(form::LOGOUT).await, "signed out");
    f.finish().await;
}

/// RP-initiated logout: the confirmation page, then the client's post-logout URI with its
/// state; the session is gone (prompt=none answers login_required).
async fn rp_initiated_logout_with_confirmation(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("lo@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    s.log_in("lo@example.test", PW, "after-login").await;
    let code = f.code_at_client(&s, &start).await;
    let tokens = f.rp.exchange(&code, start.verifier).await;
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string();

    let bye = f.app.url("/bye");
    s.goto(
        &f.h.url(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri={bye}&state=xyz"
        )),
        "logout-confirm",
    )
    .await;
    s.fill_and_submit(form::LOGOUT, &[], "button[value=\"logout\"]", "after-logout")
        .await;
    s.wait_until(|u| u.starts_with(&bye)).await;
    assert_eq!(f.app.only_hit("/bye").param("state"), Some("xyz"));

    let none = f.rp.start_with(&[], &[("prompt", "none")]);
    s.goto(&none.url, "prompt-none").await;
    s.wait_until(|u| u.contains("error=login_required")).await;
    f.finish().await;
}

/// `response_mode=form_post`: the auto-submitting page posts code and state to the client,
/// and the browser sends clef's origin with it, not `null`.
async fn form_post_sends_a_real_origin(b: Browsers) {
    let f = Fixture::new(false).await;
    let sub = f.h.user("fp@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start_with(&[], &[("response_mode", "form_post")]);
    s.goto(&start.url, "login").await;
    s.log_in("fp@example.test", PW, "consent").await;
    s.allow("form-post").await;
    let cb = f.app.url("/cb");
    s.wait_until(|u| u.starts_with(&cb)).await;
    s.wait_loaded().await;
    s.shot("client").await;
    let hit = f.app.only_hit("/cb");
    assert_eq!(hit.method, axum::http::Method::POST);
    assert_eq!(hit.param("state"), Some(start.state.as_str()));
    assert_eq!(hit.origin.as_deref(), Some(f.h.issuer.as_str()), "a real Origin, not null");
    let code = hit.param("code").expect("a code").to_owned();
    assert_eq!(f.exchange(&code, start).await, sub);
    f.finish().await;
}

browser_tests!(
    password_login_consent_and_code_exchange,
    wrong_password_then_right_one,
    email_code_login,
    magic_link_same_browser_only,
    signup_verification_and_welcome,
    forgotten_password_reset,
    account_page_and_logout_from_it,
    rp_initiated_logout_with_confirmation,
    form_post_sends_a_real_origin,
);
