//! One decision behind every code, and grants that are atomic and race-free (issues 6 and 7).

use clef::admin::ClientSpec;
use clef::keys::Alg;

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::{Browser, Page};
use crate::support::rp::{Rp, access_token, refresh_token};

const PW: &str = "correct horse battery";

async fn rp_with(h: &TestServer, name: &str, require_2fa: bool, skip_consent: bool) -> Rp {
    let created = h
        .client(ClientSpec {
            name: name.into(),
            redirect_uris: vec![format!("http://127.0.0.1/{name}/cb")],
            post_logout_redirect_uris: vec![format!("http://127.0.0.1/{name}/bye")],
            require_2fa,
            skip_consent,
            ..ClientSpec::default()
        })
        .await;
    Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{name}/cb")).await
}

/// Logs in at /login with the password alone, outside any authorization request.
async fn sign_in(b: &Browser, email: &str) {
    let login = b.get("/login").await;
    let done = b.submit(&login, &[("email", email), ("password", PW)]).await;
    done.assert_redirect_to("/account");
}

/// Starts an authorization request that the server sends to the login page; returns its id.
async fn pending_login(b: &Browser, url: &str) -> String {
    let page = b.get(url).await;
    let loc = page.assert_redirect_to("/login?req=").to_owned();
    loc.trim_start_matches("/login?req=").to_owned()
}

/// Goes straight to the consent page and answers it, skipping the login the request needs.
async fn consent_directly(b: &Browser, req: &str) -> (Page, Page) {
    let got = b.get(&format!("/consent?req={req}")).await;
    // The CSRF token of this browser, from any form page.
    let login = b.get(&format!("/login?req={req}")).await;
    let csrf = login.input("csrf").unwrap();
    let posted = b
        .post("/consent", &[("csrf", csrf.as_str()), ("req", req), ("decision", "allow")])
        .await;
    (got, posted)
}

fn assert_sent_to_login(p: &Page, req: &str) {
    p.assert_redirect_to(&format!("/login?req={req}"));
}

/// Issue 7: a password-only session cannot take a code for a client that demands two factors
/// by answering the consent page itself.
async fn consent_cannot_skip_a_demanded_second_factor(h: &TestServer) {
    h.user("c2fa@example.test", PW).await;
    let rp = rp_with(h, "c2fa", true, false).await;
    let b = h.browser();
    sign_in(&b, "c2fa@example.test").await;
    let req = pending_login(&b, &rp.start(&["email"]).url).await;
    let (got, posted) = consent_directly(&b, &req).await;
    assert_sent_to_login(&got, &req);
    assert_sent_to_login(&posted, &req);
    // The request still waits for its login.
    let login = b.get(&format!("/login?req={req}")).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.input("req").as_deref(), Some(req.as_str()));
}

/// Issue 7: prompt=login cannot be bypassed through the consent page.
async fn consent_cannot_skip_prompt_login(h: &TestServer) {
    h.user("cpl@example.test", PW).await;
    let rp = rp_with(h, "cpl", false, false).await;
    let b = h.browser();
    sign_in(&b, "cpl@example.test").await;
    let req = pending_login(&b, &rp.start_with(&[], &[("prompt", "login")]).url).await;
    let (got, posted) = consent_directly(&b, &req).await;
    assert_sent_to_login(&got, &req);
    assert_sent_to_login(&posted, &req);
}

/// Issue 7: a session older than max_age cannot get a code through the consent page, and
/// logging in for the request then gets one with the new auth_time.
async fn consent_cannot_skip_max_age(h: &TestServer) {
    h.user("cma@example.test", PW).await;
    let rp = rp_with(h, "cma", false, false).await;
    let b = h.browser();
    sign_in(&b, "cma@example.test").await;
    h.clock.advance(3);
    let start = rp.start_with(&[], &[("max_age", "1")]);
    let req = pending_login(&b, &start.url).await;
    let (got, posted) = consent_directly(&b, &req).await;
    assert_sent_to_login(&got, &req);
    assert_sent_to_login(&posted, &req);

    let login = b.get(&format!("/login?req={req}")).await;
    let consent = b
        .follow(b.submit(&login, &[("email", "cma@example.test"), ("password", PW)]).await)
        .await;
    let back = b.submit(&consent, &[("decision", "allow")]).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let auth_time = rp.id_claims(&tokens, &start.nonce).auth_time().unwrap().timestamp();
    assert_eq!(auth_time, h.clock.now(), "the new login's time, not the old session's");
}

/// A malformed answer to the consent page is refused and leaves the request answerable.
async fn malformed_consent_keeps_the_request(h: &TestServer) {
    h.user("cbad@example.test", PW).await;
    let rp = rp_with(h, "cbad", false, false).await;
    let b = h.browser();
    let login = b.follow(b.get(&rp.start(&[]).url).await).await;
    let consent = b
        .follow(b.submit(&login, &[("email", "cbad@example.test"), ("password", PW)]).await)
        .await;
    assert!(consent.body.contains("value=\"allow\""), "{}", consent.body);
    for bad in [&[("decision", "maybe")][..], &[][..]] {
        let refused = b.submit(&consent, bad).await;
        assert_eq!(refused.status, 400, "{bad:?}: {}", refused.body);
    }
    let back = b.submit(&consent, &[("decision", "allow")]).await;
    back.assert_redirect_to(&rp.redirect_uri);
    assert!(back.location_param("code").is_some());
    // Answered once: the same form cannot be answered again.
    let again = b.submit(&consent, &[("decision", "allow")]).await;
    assert_eq!(again.status, 400);
}

/// Issue 6: `acr_values` listing both levels is met by a password login, with no second step,
/// and by an existing one-factor session.
async fn acr_values_accept_any_listed_level(h: &TestServer) {
    h.user("acr@example.test", PW).await;
    let rp = rp_with(h, "acr", false, true).await;
    let b = h.browser();
    let both = [("acr_values", "urn:clef:acr:2fa urn:clef:acr:1fa")];
    let start = rp.start_with(&[], &both);
    let back = b.authorize(&start.url, "acr@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:1fa");

    let start = rp.start_with(&[], &both);
    let back = b.follow(b.get(&start.url).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    assert!(back.location_param("code").is_some(), "signed-in user is not stopped");
    assert_eq!(h.mail.count(), 0, "no code was mailed");

    // Asking for the second factor alone still asks for it.
    let start = rp.start_with(&[], &[("acr_values", "urn:clef:acr:2fa")]);
    let page = b.follow(b.get(&start.url).await).await;
    assert!(page.body.contains("current-password"), "{}", page.body);
}

/// An ID token for the client, and the same claims signed as an access token and a logout token.
fn hints(h: &TestServer, client_id: &str, sub: &str) -> [(String, bool); 3] {
    let now = h.clock.now();
    let claims = serde_json::json!({
        "iss": h.issuer, "sub": sub, "aud": client_id, "iat": now, "exp": now + 300,
    });
    let keys = h.state.keys.get();
    let sign = |typ: &str| keys.sign(Alg::RS256, typ, &claims).unwrap();
    [(sign("JWT"), true), (sign("at+jwt"), false), (sign("logout+jwt"), false)]
}

/// Issue 7 item 18: an `id_token_hint` must be an ID token, not another JWT we signed.
async fn id_token_hint_must_be_an_id_token(h: &TestServer) {
    let sub = h.user("hint@example.test", PW).await;
    let rp = rp_with(h, "hint", false, true).await;
    let b = h.browser();
    sign_in(&b, "hint@example.test").await;
    for (hint, ok) in hints(h, &rp.client_id, &sub) {
        let start = rp.start_with(&[], &[("id_token_hint", hint.as_str())]);
        let back = b.get(&start.url).await;
        back.assert_redirect_to(&rp.redirect_uri);
        match ok {
            true => assert!(back.location_param("code").is_some(), "{:?}", back.location),
            false => assert_eq!(back.location_param("error").as_deref(), Some("invalid_request")),
        }
    }
    for (hint, ok) in hints(h, &rp.client_id, &sub) {
        let url = format!("/logout?id_token_hint={hint}&post_logout_redirect_uri=http://127.0.0.1/hint/bye");
        let page = b.get(&url).await;
        assert_eq!(page.status == 400, !ok, "{ok}: {} {}", page.status, page.body);
    }
}

e2e!(
    consent_cannot_skip_a_demanded_second_factor,
    consent_cannot_skip_prompt_login,
    consent_cannot_skip_max_age,
    malformed_consent_keeps_the_request,
    acr_values_accept_any_listed_level,
    id_token_hint_must_be_an_id_token,
);
