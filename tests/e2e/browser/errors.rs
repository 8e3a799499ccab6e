//! Each error page a browser can land on, and that none of them sends the browser to the
//! client.

use super::harness::Browsers;
use super::{Fixture, PW, text};
use crate::browser_tests;

const CHALLENGE: &str = "code_challenge=HNOgb1653uKOQeDgfNs3J8qaffv2c2-vRiDbfHNICRs&code_challenge_method=S256";

async fn unknown_client(b: Browsers) {
    let f = Fixture::new(true).await;
    let s = b.open("main").await;
    let cb = f.app.url("/cb");
    s.goto(
        &f.h.url(&format!(
            "/authorize?client_id=nobody&redirect_uri={cb}&response_type=code&scope=openid&state=s&{CHALLENGE}"
        )),
        "unknown-client",
    )
    .await;
    assert!(s.alert().await.contains(&text("en", "error.unknown_client")));
    assert!(f.app.hits().is_empty(), "an unknown client is never redirected to");
    f.finish().await;
}

async fn unregistered_redirect_uri(b: Browsers) {
    let f = Fixture::new(true).await;
    let s = b.open("main").await;
    let other = f.app.url("/elsewhere");
    s.goto(
        &f.h.url(&format!(
            "/authorize?client_id={}&redirect_uri={other}&response_type=code&scope=openid&state=s&{CHALLENGE}",
            f.created.client_id
        )),
        "bad-redirect-uri",
    )
    .await;
    assert!(s.alert().await.contains(&text("en", "error.redirect_uri_mismatch")));
    assert!(f.app.hits().is_empty(), "RFC 6749 §4.1.2.1: never redirect to an unregistered URI");
    f.finish().await;
}

/// A login page left open past the request's lifetime: the form posts, and the page says the
/// request expired (not that the form did).
async fn expired_request(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("late@example.test", PW).await;
    let s = b.open("main").await;
    s.goto(&f.rp.start(&[]).url, "login").await;
    f.h.clock.advance(31 * 60);
    s.log_in("late@example.test", PW, "expired").await;
    let alert = s.alert().await;
    assert!(alert.contains(&text("en", "error.request_expired")), "{alert}");
    assert!(f.app.hits().is_empty());
    f.finish().await;
}

/// The page opened at `localhost` while the issuer is `127.0.0.1`: the post is refused with
/// the wrong-address page naming the right address, not "this form has expired".
async fn wrong_address(b: Browsers) {
    let f = Fixture::new(true).await;
    f.h.user("addr@example.test", PW).await;
    let s = b.open("main").await;
    let port = f.h.issuer.rsplit(':').next().unwrap();
    let url = f.rp.start(&[]).url.replacen(&f.h.issuer, &format!("http://localhost:{port}"), 1);
    s.goto(&url, "login-at-localhost").await;
    assert!(s.url().await.starts_with("http://localhost:"));
    s.log_in("addr@example.test", PW, "wrong-address").await;
    let alert = s.alert().await;
    assert!(alert.contains(&text("en", "error.wrong_address")), "{alert}");
    assert!(!alert.contains(&text("en", "error.csrf")));
    let page = s.find("main").await.text().await.unwrap();
    assert!(page.contains(&f.h.url("/login")), "the page names the right address: {page}");
    assert!(f.app.hits().is_empty());
    f.finish().await;
}

browser_tests!(unknown_client, unregistered_redirect_uri, expired_request, wrong_address);
