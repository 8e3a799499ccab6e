//! Hosted pages: no enumeration, CSRF, cookies, headers and languages.

use crate::e2e;
use crate::support::TestServer;

const PW: &str = "correct horse battery";

async fn login_page(h: &TestServer, b: &crate::support::Browser) -> crate::support::browser::Page {
    let c = h.confidential("pg").await;
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", c.client_id.as_str()),
            ("redirect_uri", "http://127.0.0.1/pg/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", "HNOgb1653uKOQeDgfNs3J8qaffv2c2-vRiDbfHNICRs"),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    b.follow(b.get(&format!("/authorize?{q}")).await).await
}

/// A wrong password and an unknown email look exactly the same.
async fn login_failures_do_not_reveal_accounts(h: &TestServer) {
    h.user("known@example.test", PW).await;
    let b = h.browser();
    let page = login_page(h, &b).await;
    assert!(page.body.contains("autocomplete=\"username\""));
    assert!(page.body.contains("autocomplete=\"current-password\""));
    let wrong = b
        .submit(&page, &[("email", "known@example.test"), ("password", "wrong password")])
        .await;
    let unknown = b
        .submit(&page, &[("email", "nobody@example.test"), ("password", "wrong password")])
        .await;
    assert_eq!(wrong.status, unknown.status);
    let strip = |p: &crate::support::browser::Page| p.body.replace("known@example.test", "E").replace("nobody@example.test", "E");
    let (w, u) = (strip(&wrong), strip(&unknown));
    let without_csrf = |s: &str| s.lines().filter(|l| !l.contains("name=\"csrf\"")).collect::<Vec<_>>().join("\n");
    assert_eq!(without_csrf(&w), without_csrf(&u));
    assert!(wrong.body.contains("The email or password is incorrect."));
}

async fn forms_require_the_csrf_token(h: &TestServer) {
    h.user("csrf@example.test", PW).await;
    let b = h.browser();
    let page = login_page(h, &b).await;
    let req = page.input("req").unwrap();
    let forged = b
        .post(
            "/login",
            &[
                ("req", req.as_str()),
                ("email", "csrf@example.test"),
                ("password", PW),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    let missing = b
        .post("/login", &[("req", req.as_str()), ("email", "csrf@example.test"), ("password", PW)])
        .await;
    assert_eq!(missing.status, 403);
    // A fresh browser has no CSRF cookie, so a token lifted from another browser fails too.
    let other = h.browser();
    let token = page.input("csrf").unwrap();
    let cross = other
        .post(
            "/login",
            &[
                ("req", req.as_str()),
                ("email", "csrf@example.test"),
                ("password", PW),
                ("csrf", token.as_str()),
            ],
        )
        .await;
    assert_eq!(cross.status, 403);
}

async fn pages_speak_english_and_french(h: &TestServer) {
    let b = h.browser();
    let en = b.get_with("/login", &[("accept-language", "en-GB,en;q=0.9")]).await;
    assert!(en.body.contains("<html lang=\"en\">") && en.body.contains("Log in"));
    let fr = b.get_with("/login", &[("accept-language", "fr-FR,fr;q=0.9,en;q=0.5")]).await;
    assert!(
        fr.body.contains("<html lang=\"fr\">") && fr.body.contains("Se connecter"),
        "{}",
        fr.body
    );
    let c = h.confidential("loc").await;
    let url = format!(
        "/authorize?client_id={}&redirect_uri=http://127.0.0.1/loc/cb&response_type=code&scope=openid&ui_locales=fr-CA&code_challenge=HNOgb1653uKOQeDgfNs3J8qaffv2c2-vRiDbfHNICRs&code_challenge_method=S256",
        c.client_id
    );
    let page = b.follow(b.get_with(&url, &[("accept-language", "en")]).await).await;
    assert!(page.body.contains("Mot de passe"), "ui_locales wins over Accept-Language");
    let not_found = b.get_with("/nope", &[("accept-language", "fr")]).await;
    assert_eq!(not_found.status, 404);
    assert!(not_found.body.contains("Cette page n’existe pas."));
}

async fn cookies_and_security_headers(h: &TestServer) {
    let b = h.browser();
    let page = b.get("/login").await;
    for (name, want) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(page.headers[name], want, "{name}");
    }
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
}

async fn https_issuer_gets_host_prefixed_secure_cookies(h: &TestServer) {
    // Behind a TLS-terminating proxy: the public issuer is https, the listener plain http.
    let hs = TestServer::start_with(h.backend, |raw| raw.issuer = Some("https://login.example.test".into())).await;
    let page = hs.browser().get("/login").await;
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-clef_csrf=") && cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    hs.finish().await;
}

async fn signup_can_be_closed(h: &TestServer) {
    let hs = TestServer::start_with(h.backend, |raw| raw.signup = Some("closed".into())).await;
    let b = hs.browser();
    let page = b.get("/signup").await;
    assert_eq!(page.status, 403);
    assert!(!b.get("/login").await.body.contains("/signup"));
    hs.finish().await;
}

e2e!(
    login_failures_do_not_reveal_accounts,
    forms_require_the_csrf_token,
    pages_speak_english_and_french,
    cookies_and_security_headers,
    https_issuer_gets_host_prefixed_secure_cookies,
    signup_can_be_closed,
);
