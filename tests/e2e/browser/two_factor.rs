//! TOTP enrolment in a real Chromium: the secret read off the page, the code computed here,
//! the backup codes shown once with their download link.

use super::harness::Browsers;
use super::{Fixture, PW, form};
use crate::browser_tests;

const STATUS: &str = "/account/two-factor";
const ENABLE: &str = "form[action$=\"/account/two-factor/enable\"]";
const CONFIRM: &str = "form[action$=\"/account/two-factor/confirm\"]";

async fn enrol_totp_through_the_pages(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("ana@example.test", PW).await;
    let s = b.open("main").await;
    s.goto(&f.h.url("/login"), "login").await;
    assert!(s.has(form::LOGIN).await);
    s.log_in("ana@example.test", PW, "signed-in").await;
    s.goto(&f.h.url(STATUS), "two-factor-off").await;
    assert_eq!(s.attr("#two-factor-state", "data-state").await.as_deref(), Some("off"));
    s.submit(ENABLE, &[], "enrol").await;
    assert!(s.has(".qr svg").await, "the QR code is drawn inline");
    assert!(s.has("input[autocomplete=\"one-time-code\"][inputmode=\"numeric\"]").await);
    // What a person types into the app: the grouped base32 key on the page.
    let typed = s.find("#totp-secret").await.text().await.unwrap();
    let secret = totp_rs::Secret::try_from_base32(typed.replace(' ', "")).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    let code = totp.generate(f.h.clock.now() as u64).to_string();
    s.submit(CONFIRM, &[("code", &code)], "backup-codes").await;
    let codes = s.text_of("#backup-codes").await.unwrap();
    assert_eq!(
        codes.lines().filter(|l| l.trim().len() == 11).count(),
        8,
        "eight backup codes, shown once: {codes}"
    );
    let href = s.attr("#backup-codes-download", "href").await.unwrap();
    assert!(href.starts_with("data:text/plain;charset=utf-8,"), "{href}");
    assert_eq!(
        s.attr("#backup-codes-download", "download").await.as_deref(),
        Some("backup-codes.txt")
    );
    s.goto(&f.h.url(STATUS), "two-factor-on").await;
    assert_eq!(s.attr("#two-factor-state", "data-state").await.as_deref(), Some("on"));
    assert_eq!(s.attr("#backup-codes-left", "data-count").await.as_deref(), Some("8"));
    f.finish().await;
}

browser_tests!(enrol_totp_through_the_pages);
