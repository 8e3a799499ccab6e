//! The account security page in Chromium: the page itself, a password change, and French.

use super::harness::{Browsers, Profile};
use super::{Fixture, PW, form, text};
use crate::browser_tests;

const NEW_PW: &str = "staple orbit lantern";
const PASSWORD_FORM: &str = "form[action$=\"/account/password\"]";

/// Logs in at /login (no client), which lands on the account page.
async fn log_in_to_account(f: &Fixture, s: &super::harness::Session, email: &str, password: &str) {
    s.goto(&f.h.url("/login"), "login").await;
    s.log_in(email, password, "account").await;
    assert!(s.url().await.starts_with(&f.h.url("/account")), "{}", s.url().await);
}

/// The page lists this browser's session as Chrome on Linux with its address, then the
/// password is changed with the current one: a notice, the event, and the new password works.
async fn account_page_and_password_change(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("acct@example.test", PW).await;
    let s = b.open("main").await;
    log_in_to_account(&f, &s, "acct@example.test", PW).await;
    assert_eq!(s.lang().await, "en");
    assert_eq!(s.text_of("h1").await.as_deref(), Some(text("en", "account.title").as_str()));
    let this = s.find("ul.sessions li.current").await.text().await.unwrap();
    assert!(this.contains("Chrome on Linux"), "{this}");
    assert!(this.contains("127.0.0.1"), "{this}");
    assert!(this.contains(&text("en", "account.sessions.this_device")), "{this}");
    assert!(s.has("a[href$=\"/account/two-factor\"]").await);
    s.client
        .execute("document.querySelector('ul.sessions').scrollIntoView()", vec![])
        .await
        .unwrap();
    s.shot("sessions").await;

    // A wrong current password: an alert, nothing changed.
    s.fill_and_submit(
        PASSWORD_FORM,
        &[("current_password", "not the password"), ("new_password", NEW_PW)],
        "button[type=submit]",
        "wrong-current",
    )
    .await;
    assert_eq!(s.alert().await, text("en", "account.password_wrong"));

    s.fill_and_submit(
        PASSWORD_FORM,
        &[("current_password", PW), ("new_password", NEW_PW)],
        "button[type=submit]",
        "password-changed",
    )
    .await;
    assert!(s.url().await.ends_with("/account?done=password"), "{}", s.url().await);
    let notice = s.find("[role=\"status\"]").await.text().await.unwrap();
    assert_eq!(notice, text("en", "account.done.password"));
    let events = s.find("ul.events").await.text().await.unwrap();
    s.client
        .execute("document.querySelector('ul.events').scrollIntoView()", vec![])
        .await
        .unwrap();
    s.shot("events").await;
    assert!(events.contains(&text("en", "event.password_changed")), "{events}");
    assert_eq!(f.h.mail.last_to("acct@example.test").subject, "Your password was changed");

    s.submit(form::LOGOUT, &[], "logged-out").await;
    log_in_to_account(&f, &s, "acct@example.test", NEW_PW).await;
    assert!(s.has(PASSWORD_FORM).await, "signed in with the new password");
    f.finish().await;
}

/// A French browser gets the whole account page in French.
async fn account_page_in_french(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("fr@example.test", PW).await;
    let s = b.open_with("main", Profile { lang: Some("fr") }).await;
    log_in_to_account(&f, &s, "fr@example.test", PW).await;
    assert_eq!(s.lang().await, "fr");
    assert_eq!(s.text_of("h1").await.as_deref(), Some(text("fr", "account.title").as_str()));
    let main = s.find("main").await.text().await.unwrap();
    for key in [
        "account.password.title",
        "account.email.title",
        "account.two_factor.title",
        "account.sessions.title",
        "account.sessions.this_device",
        "account.events.title",
    ] {
        assert!(main.contains(&text("fr", key)), "{key} in {main}");
    }
    assert!(main.contains("Chrome sous Linux"), "{main}");
    f.finish().await;
}

browser_tests!(account_page_and_password_change, account_page_in_french);
