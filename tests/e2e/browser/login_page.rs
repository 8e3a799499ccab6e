//! The login page asks for the address once, names the application, then offers the methods.

use clef::admin::UserSpec;

use super::harness::{Browsers, Session};
use super::{Fixture, PW, form};
use crate::browser_tests;

/// One address field on the whole page, and the application's name.
async fn one_address_field(s: &Session) {
    assert!(s.has("form#login input[type=\"email\"]").await, "an address field");
    assert!(
        !s.has("input[type=\"email\"] ~ input[type=\"email\"]").await,
        "only one in the form"
    );
    assert!(!s.has("form:not(#login) input[type=\"email\"]").await, "and none in another form");
    assert!(s.has("form#login button#login-password").await && s.has(form::CODE_BUTTON).await);
    let name = s.text_of("main p.muted strong").await.unwrap_or_default();
    assert_eq!(name, "Browser app", "the page names the application");
}

/// The address once, then the password.
async fn address_once_then_password(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub = f.h.user("once@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    one_address_field(&s).await;
    s.fill_and_submit(
        form::LOGIN,
        &[("email", "once@example.test"), ("password", PW)],
        "button#login-password",
        "after-password",
    )
    .await;
    let code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&code, start).await, sub);
    f.finish().await;
}

/// The same address field, then "email me a code": no second address to type.
async fn address_once_then_emailed_code(b: Browsers) {
    let f = Fixture::new(true).await;
    let sub =
        f.h.user_with(UserSpec {
            email: "once-otp@example.test".into(),
            ..UserSpec::default()
        })
        .await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    one_address_field(&s).await;
    s.fill_and_submit(form::LOGIN, &[("email", "once-otp@example.test")], form::CODE_BUTTON, "code")
        .await;
    assert!(s.has("form#login-code input[autocomplete=\"one-time-code\"]").await);
    assert!(
        !s.has("input[name=\"purpose\"]").await,
        "the attempt, not the form, says what the code is for"
    );
    let code = f.h.mail.last_to("once-otp@example.test").six_digit_code();
    s.submit(form::CODE_VERIFY, &[("code", &code)], "after-code").await;
    let auth_code = f.code_at_client(&s, &start).await;
    assert_eq!(f.exchange(&auth_code, start).await, sub);
    f.finish().await;
}

browser_tests!(address_once_then_password, address_once_then_emailed_code);
