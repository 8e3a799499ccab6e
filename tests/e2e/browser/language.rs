//! French pages: by `ui_locales` on the authorization request, and by the browser's own
//! language (Chromium `--lang`/`--accept-lang` and the `intl.accept_languages` pref).

use super::harness::{Browsers, Profile};
use super::{Fixture, PW};
use crate::browser_tests;

/// `ui_locales=fr` wins in an English browser, through login and consent.
async fn french_by_ui_locales(b: Browsers) {
    let f = Fixture::new(false).await;
    f.h.user("fr@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start_with(&[], &[("ui_locales", "fr")]);
    s.goto(&start.url, "login-fr").await;
    assert_eq!(s.lang().await, "fr");
    assert!(s.find("main").await.text().await.unwrap().contains("connecter"));
    s.log_in("fr@example.test", PW, "consent-fr").await;
    assert_eq!(s.lang().await, "fr", "the consent page keeps the request's language");
    s.allow("after-consent").await;
    f.code_at_client(&s, &start).await;

    // The same browser without ui_locales gets English.
    s.goto(&f.h.url("/login"), "login-en").await;
    assert_eq!(s.lang().await, "en");
    f.finish().await;
}

/// A French browser gets French pages without asking, error pages included.
async fn french_by_browser_language(b: Browsers) {
    let f = Fixture::new(true).await;
    let s = b.open_with("main", Profile { lang: Some("fr") }).await;
    s.goto(&f.h.url("/login"), "login-fr").await;
    assert_eq!(s.lang().await, "fr");
    assert!(s.find("main").await.text().await.unwrap().contains("connecter"));
    s.goto(&f.h.url("/signup"), "signup-fr").await;
    assert_eq!(s.lang().await, "fr");
    s.goto(&f.h.url("/nope"), "not-found-fr").await;
    assert_eq!(s.lang().await, "fr");
    let start = f.rp.start(&[]);
    s.goto(&start.url, "authorize-fr").await;
    assert_eq!(s.lang().await, "fr");
    f.finish().await;
}

browser_tests!(french_by_ui_locales, french_by_browser_language);
