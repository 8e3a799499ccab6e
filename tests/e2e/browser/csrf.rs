//! The forms' CSRF rules in the shapes browsers send, checked with a plain HTTP client: a
//! cross-site post is refused whatever else it carries, and a same-origin one goes through.
//! (In Chromium every form post of the journeys succeeds.)

use reqwest::StatusCode;

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::{Browser, Page};

const PW: &str = "correct horse battery";

async fn cross_site_form_posts_are_refused(h: &TestServer) {
    h.user("csrf@example.test", PW).await;
    let c = h.confidential("csrf").await;
    let authorize = format!(
        "/authorize?client_id={}&redirect_uri=http://127.0.0.1/csrf/cb&response_type=code&scope=openid&code_challenge=HNOgb1653uKOQeDgfNs3J8qaffv2c2-vRiDbfHNICRs&code_challenge_method=S256",
        c.client_id
    );
    // A real cookie and a real token, so only the request's shape can be the reason.
    let b = Browser::new(&h.issuer);
    let login: Page = b.follow(b.get(&authorize).await).await;
    let form = [
        ("csrf", login.input("csrf").unwrap()),
        ("req", login.input("req").unwrap()),
        ("email", "csrf@example.test".to_owned()),
        ("password", PW.to_owned()),
    ];
    let cookie = format!("clef_csrf={}", b.cookie(&h.issuer, "clef_csrf").expect("a CSRF cookie"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |headers: &[(&str, &str)]| {
        let mut r = http.post(h.url("/login")).header("cookie", cookie.as_str()).form(&form);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send()
    };
    for shape in [
        &[("origin", "null")][..],
        &[("origin", "http://evil.example")],
        &[("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
    ] {
        let resp = post(shape).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{shape:?}");
    }
    // Nothing was signed in by the refused posts.
    let none = b.get(&format!("{authorize}&prompt=none")).await;
    assert_eq!(none.location_param("error").as_deref(), Some("login_required"));
    // The shape Chromium sends from our own page goes through.
    let ok = post(&[("origin", h.issuer.as_str()), ("sec-fetch-site", "same-origin")])
        .await
        .unwrap();
    assert!(ok.status().is_redirection(), "{}", ok.status());
}

e2e!(cross_site_form_posts_are_refused);
