//! "Continue with Google" in a real Chromium (issue 9): the button on the login page, then
//! the whole round trip: the upstream clef's own login page, back on the callback, consent,
//! and the client's redirect URI with a code. The upstream runs on 127.0.0.1, the clef under
//! test on `localhost`, so each keeps its own cookies.

use clef::admin::{ClientSpec, CreatedClient, UserSpec};

use super::PW;
use super::client_app::ClientApp;
use super::harness::Browsers;
use crate::browser_tests;
use crate::support::rp::Rp;
use crate::support::{Backend, TestServer};

const BUTTON: &str = "form#login-upstream-google button";

async fn continue_with_google(b: Browsers) {
    let up = TestServer::start(Backend::Sqlite).await;
    up.user_with(UserSpec {
        email: "chromium@gmail.example".into(),
        password: Some(PW.into()),
        name: Some("Chromium User".into()),
        verified: true,
        ..UserSpec::default()
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let registered = up
        .client(ClientSpec {
            name: "clef under test".into(),
            redirect_uris: vec![format!("{issuer}/login/callback/google")],
            skip_consent: true,
            ..ClientSpec::default()
        })
        .await;
    let up_issuer = up.issuer.clone();
    let down = TestServer::start_on(Backend::Sqlite, listener, issuer, |raw| {
        raw.google_client_id = Some(registered.client_id.clone());
        raw.google_client_secret = registered.client_secret.clone();
        raw.google_issuer = Some(up_issuer);
    })
    .await;
    let app = ClientApp::start().await;
    let created: CreatedClient = down
        .client(ClientSpec {
            name: "Browser app".into(),
            redirect_uris: vec![app.url("/cb")],
            ..ClientSpec::default()
        })
        .await;
    let rp = Rp::discover(&down.issuer, &created, &app.url("/cb")).await;

    let s = b.open("main").await;
    let start = rp.start(&["openid", "email"]);
    s.goto(&start.url, "login").await;
    // Visible, above the password form, saying "Google", with the "G" logo.
    let button = s.find(BUTTON).await;
    assert!(button.is_displayed().await.unwrap());
    assert!(button.text().await.unwrap().contains("Google"));
    assert!(s.has(&format!("{BUTTON} svg")).await, "the Google logo");
    let top = |css: &'static str| {
        let s = &s;
        async move {
            let e = s.find(css).await;
            e.rectangle().await.unwrap().1
        }
    };
    assert!(
        top(BUTTON).await < top("form#login input[name=\"password\"]").await,
        "above the password form"
    );

    s.mark_document().await;
    button.click().await.unwrap();
    s.wait_new_document().await;
    s.shot("upstream-login").await;
    assert!(s.url().await.starts_with(&up.issuer), "at the upstream: {}", s.url().await);
    s.log_in("chromium@gmail.example", PW, "back-for-consent").await;
    assert!(s.url().await.starts_with(&down.issuer), "back at clef: {}", s.url().await);
    s.allow("after-consent").await;

    let cb = app.url("/cb");
    s.wait_until(|u| u.starts_with(&cb)).await;
    s.wait_loaded().await;
    let hit = app.only_hit("/cb");
    assert_eq!(hit.param("state"), Some(start.state.as_str()));
    let code = hit.param("code").expect("a code at the client").to_owned();
    let tokens = rp.exchange(&code, start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert!(amr.contains(&"fed"), "{amr:?}");
    let user = down.state.db.user_by_email("chromium@gmail.example").await.unwrap().unwrap();
    assert_eq!(claims.subject().as_str(), user.user_id);
    down.finish().await;
    up.finish().await;
}

browser_tests!(continue_with_google);
