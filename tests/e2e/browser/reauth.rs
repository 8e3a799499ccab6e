//! Re-authentication in a real Chromium: an old session's password change is sent to confirm
//! it's you, the password is typed on that page, the browser lands back on the account page,
//! and the change, submitted again, goes through.

use super::harness::Browsers;
use super::{Fixture, PW, text};
use crate::browser_tests;

const NEW_PW: &str = "staple orbit lantern";
const PASSWORD_FORM: &str = "form[action$=\"/account/password\"]";
const REAUTH_PASSWORD: &str = "form[action$=\"/account/reauth/password\"]";

async fn old_session_confirms_then_changes_the_password(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("step@example.test", PW).await;
    let s = b.open("main").await;
    s.goto(&f.h.url("/login"), "login").await;
    s.log_in("step@example.test", PW, "account").await;
    assert!(s.url().await.starts_with(&f.h.url("/account")), "{}", s.url().await);
    // Past CLEF_REAUTH_AFTER (300 s): the session is too old for a sensitive change.
    f.h.clock.advance(301);
    let change = [("current_password", PW), ("new_password", NEW_PW)];
    s.fill_and_submit(PASSWORD_FORM, &change, "button[type=submit]", "sent-to-reauth")
        .await;
    assert!(s.url().await.ends_with("/account/reauth?then=password"), "{}", s.url().await);
    assert_eq!(
        s.text_of("#reauth-reason").await.as_deref(),
        Some(text("en", "reauth.reason.password").as_str())
    );
    assert!(!s.has("form[action$=\"/account/reauth/totp\"]").await, "no TOTP for this user");

    s.fill_and_submit(REAUTH_PASSWORD, &[("password", "not it")], "button[type=submit]", "reauth-wrong")
        .await;
    assert_eq!(s.alert().await, text("en", "reauth.wrong_password"));
    s.fill_and_submit(REAUTH_PASSWORD, &[("password", PW)], "button[type=submit]", "back-on-account")
        .await;
    assert_eq!(s.url().await, f.h.url("/account"), "back on the action's page, no new login");

    // The same change, submitted afresh from the page's own form, now goes through.
    s.fill_and_submit(PASSWORD_FORM, &change, "button[type=submit]", "password-changed")
        .await;
    assert!(s.url().await.ends_with("/account?done=password"), "{}", s.url().await);
    let events = s.find("ul.events").await.text().await.unwrap();
    assert!(events.contains(&text("en", "event.reauthenticated")), "{events}");
    f.finish().await;
}

browser_tests!(old_session_confirms_then_changes_the_password);
