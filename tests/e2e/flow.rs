//! The authorization code flow end to end, as a relying party sees it.

use clef::admin::{ClientSpec, UserSpec};
use openidconnect::{AuthenticationContextClass, OAuth2TokenResponse};

use crate::e2e;
use crate::support::TestServer;
use crate::support::rp::{Rp, access_token, refresh_token};

const PW: &str = "correct horse battery";

async fn rp_for(h: &TestServer, name: &str) -> Rp {
    let created = h.confidential(name).await;
    Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{name}/cb")).await
}

async fn confidential_client_full_flow(h: &TestServer) {
    let sub = h
        .user_with(UserSpec {
            email: "ana@example.test".into(),
            password: Some(PW.into()),
            name: Some("Ana".into()),
            roles: vec!["CLIENT".into(), "DRIVER".into()],
            verified: true,
            phone: Some("+33612345678".into()),
            address: Some("1 rue de la Paix, 75002 Paris".into()),
        })
        .await;
    let rp = rp_for(h, "app").await;
    let b = h.browser();
    let start = rp.start(&["email", "profile", "roles", "phone", "address"]);
    let back = b.authorize(&start.url, "ana@example.test", PW).await;
    back.assert_redirect_to(&rp.redirect_uri);
    assert_eq!(back.location_param("state").as_deref(), Some(start.state.as_str()));
    assert_eq!(back.location_param("iss").as_deref(), Some(h.issuer.as_str()), "RFC 9207 iss");
    let code = back.location_param("code").unwrap();

    let tokens = rp.exchange(&code, start.verifier).await;
    assert_eq!(*tokens.token_type(), openidconnect::core::CoreTokenType::Bearer);
    assert!(refresh_token(&tokens).is_some());
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ana@example.test"));
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(
        claims.auth_context_ref(),
        Some(&AuthenticationContextClass::new("urn:clef:acr:1fa".into()))
    );
    assert_eq!(claims.auth_method_refs().unwrap()[0].as_str(), "pwd");
    assert!(claims.auth_time().is_some());

    let info = rp.userinfo(&access_token(&tokens)).await;
    assert_eq!(info.subject().as_str(), sub);
    assert_eq!(info.email().map(|e| e.as_str()), Some("ana@example.test"));
    assert_eq!(info.name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Ana"));

    // The roles claim is ours, so read it raw.
    let raw: serde_json::Value = rp
        .http
        .get(h.url("/userinfo"))
        .bearer_auth(access_token(&tokens))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["roles"], serde_json::json!(["CLIENT", "DRIVER"]));
    assert_eq!(raw["phone_number"], "+33612345678");
    assert_eq!(raw["phone_number_verified"], false);
    assert_eq!(raw["address"]["formatted"], "1 rue de la Paix, 75002 Paris");

    // The access token is an RFC 9068 JWT.
    let header = jsonwebtoken_header(&access_token(&tokens));
    assert_eq!(header["typ"], "at+jwt");
}

fn jsonwebtoken_header(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&clef::secret::b64url_decode(part).unwrap()).unwrap()
}

fn jwt_claims(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&clef::secret::b64url_decode(part).unwrap()).unwrap()
}

async fn public_client_with_pkce(h: &TestServer) {
    h.user("pub@example.test", PW).await;
    let created = h
        .client(ClientSpec {
            name: "spa".into(),
            redirect_uris: vec!["http://127.0.0.1/spa/cb".into()],
            public: true,
            ..ClientSpec::default()
        })
        .await;
    assert!(created.client_secret.is_none());
    let rp = Rp::discover(&h.issuer, &created, "http://127.0.0.1/spa/cb").await;
    let start = rp.start(&["email"]);
    let back = h.browser().authorize(&start.url, "pub@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.email_verified(), Some(false));
}

async fn es256_id_tokens_for_clients_that_ask(h: &TestServer) {
    h.user("es@example.test", PW).await;
    let created = h
        .client(ClientSpec {
            name: "es".into(),
            redirect_uris: vec!["http://127.0.0.1/es/cb".into()],
            id_token_alg: Some("ES256".into()),
            skip_consent: true,
            ..ClientSpec::default()
        })
        .await;
    let rp = Rp::discover(&h.issuer, &created, "http://127.0.0.1/es/cb").await;
    let start = rp.start(&[]);
    let back = h.browser().authorize(&start.url, "es@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string();
    assert_eq!(jsonwebtoken_header(&id_token)["alg"], "ES256");
    rp.id_claims(&tokens, &start.nonce);
}

/// A second client gets a code from the existing session, without a new login.
async fn single_sign_on_across_clients(h: &TestServer) {
    h.user("sso@example.test", PW).await;
    let b = h.browser();
    let one = rp_for(h, "one").await;
    let s1 = one.start(&[]);
    let back = b.authorize(&s1.url, "sso@example.test", PW).await;
    let t1 = one.exchange(&back.location_param("code").unwrap(), s1.verifier).await;
    let auth_time_1 = one.id_claims(&t1, &s1.nonce).auth_time();

    let two = rp_for(h, "two").await;
    let s2 = two.start(&[]);
    let consent = b.follow(b.get(&s2.url).await).await;
    assert!(
        consent.body.contains("value=\"allow\""),
        "a new client asks for consent, not a login"
    );
    assert!(!consent.body.contains("current-password"));
    let back = b.follow(b.submit(&consent, &[("decision", "allow")]).await).await;
    let t2 = two.exchange(&back.location_param("code").unwrap(), s2.verifier).await;
    assert_eq!(two.id_claims(&t2, &s2.nonce).auth_time(), auth_time_1);

    // Consent is remembered: the same client again goes straight back with a code.
    let s3 = two.start(&[]);
    let back = b.follow(b.get(&s3.url).await).await;
    back.assert_redirect_to(&two.redirect_uri);
    assert!(back.location_param("code").is_some());
}

async fn first_party_clients_skip_consent(h: &TestServer) {
    h.user("fp@example.test", PW).await;
    let created = h
        .client(ClientSpec {
            name: "fp".into(),
            redirect_uris: vec!["http://127.0.0.1/fp/cb".into()],
            skip_consent: true,
            ..ClientSpec::default()
        })
        .await;
    let rp = Rp::discover(&h.issuer, &created, "http://127.0.0.1/fp/cb").await;
    let b = h.browser();
    let start = rp.start(&["email"]);
    let login = b.follow(b.get(&start.url).await).await;
    let back = b
        .follow(b.submit(&login, &[("email", "fp@example.test"), ("password", PW)]).await)
        .await;
    back.assert_redirect_to(&rp.redirect_uri);
}

async fn consent_denied_is_access_denied(h: &TestServer) {
    h.user("deny@example.test", PW).await;
    let rp = rp_for(h, "deny").await;
    let b = h.browser();
    let start = rp.start(&["email"]);
    let login = b.follow(b.get(&start.url).await).await;
    let consent = b
        .follow(b.submit(&login, &[("email", "deny@example.test"), ("password", PW)]).await)
        .await;
    assert!(consent.body.contains("See your email address"), "scopes are shown in words");
    let back = b.submit(&consent, &[("decision", "deny")]).await;
    back.assert_redirect_to(&rp.redirect_uri);
    assert_eq!(back.location_param("error").as_deref(), Some("access_denied"));
    assert_eq!(back.location_param("state").as_deref(), Some(start.state.as_str()));
    assert_eq!(back.location_param("iss").as_deref(), Some(h.issuer.as_str()));
}

async fn refresh_tokens_rotate_and_reuse_revokes(h: &TestServer) {
    h.user("rt@example.test", PW).await;
    let rp = rp_for(h, "rt").await;
    let start = rp.start(&["email"]);
    let back = h.browser().authorize(&start.url, "rt@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let r1 = refresh_token(&tokens).unwrap();
    let next = rp.refresh(&r1).await.unwrap();
    let r2 = refresh_token(&next).unwrap();
    assert_ne!(r1, r2);
    let id2 = openidconnect::TokenResponse::id_token(&next).unwrap().to_string();
    assert_eq!(
        jwt_claims(&id2)["auth_time"],
        jwt_claims(&openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string())["auth_time"]
    );
    rp.userinfo(&access_token(&next)).await;

    // Replaying the rotated-away token after the refresh grace (CLEF_REFRESH_GRACE, 2 s) is
    // theft: the whole grant dies. Within the grace it would get r2 again (tests/e2e/grants.rs).
    h.clock.advance(3);
    let err = rp.refresh(&r1).await.unwrap_err();
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(rp.refresh(&r2).await.unwrap_err().contains("invalid_grant"));
    let status = rp
        .http
        .get(h.url("/userinfo"))
        .bearer_auth(access_token(&next))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}

async fn prompt_login_forces_a_new_login_and_moves_auth_time(h: &TestServer) {
    h.user("pl@example.test", PW).await;
    let rp = rp_for(h, "pl").await;
    let b = h.browser();
    let s1 = rp.start(&[]);
    let back = b.authorize(&s1.url, "pl@example.test", PW).await;
    let t1 = rp.exchange(&back.location_param("code").unwrap(), s1.verifier).await;
    let first = rp.id_claims(&t1, &s1.nonce).auth_time().unwrap();

    h.clock.advance(120);
    let s2 = rp.start_with(&[], &[("prompt", "login")]);
    let page = b.follow(b.get(&s2.url).await).await;
    assert!(page.body.contains("current-password"), "prompt=login shows the login form");
    let back = b
        .follow(b.submit(&page, &[("email", "pl@example.test"), ("password", PW)]).await)
        .await;
    let t2 = rp.exchange(&back.location_param("code").unwrap(), s2.verifier).await;
    let second = rp.id_claims(&t2, &s2.nonce).auth_time().unwrap();
    assert!((second - first).num_seconds() >= 120, "auth_time moved: {first} -> {second}");
}

async fn form_post_response_mode(h: &TestServer) {
    h.user("fpm@example.test", PW).await;
    let rp = rp_for(h, "fpm").await;
    let b = h.browser();
    let start = rp.start_with(&[], &[("response_mode", "form_post")]);
    let login = b.follow(b.get(&start.url).await).await;
    let consent = b
        .follow(b.submit(&login, &[("email", "fpm@example.test"), ("password", PW)]).await)
        .await;
    let page = b.submit(&consent, &[("decision", "allow")]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.form_action(), rp.redirect_uri);
    assert!(page.input("code").is_some());
    assert_eq!(page.input("state").as_deref(), Some(start.state.as_str()));
    assert_eq!(page.input("iss").as_deref(), Some(h.issuer.as_str()));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
}

async fn revocation_and_introspection(h: &TestServer) {
    h.user("ri@example.test", PW).await;
    let rp = rp_for(h, "ri").await;
    let start = rp.start(&["email"]);
    let back = h.browser().authorize(&start.url, "ri@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let at = access_token(&tokens);
    let (id, secret) = (rp.client_id.clone(), rp.client_secret.clone().unwrap());
    let introspect = |token: String| {
        let (http, url, id, secret) = (rp.http.clone(), h.url("/introspect"), id.clone(), secret.clone());
        async move {
            let v: serde_json::Value = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let live = introspect(at.clone()).await;
    assert_eq!(live["active"], true);
    assert_eq!(live["client_id"], rp.client_id);
    assert_eq!(live["scope"], "openid email");
    assert_eq!(introspect(refresh_token(&tokens).unwrap()).await["active"], true);

    let resp = rp
        .http
        .post(h.url("/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(introspect(at.clone()).await["active"], false);
    assert_eq!(rp.http.get(h.url("/userinfo")).bearer_auth(&at).send().await.unwrap().status(), 401);
    assert_eq!(introspect("garbage".into()).await, serde_json::json!({"active": false}));
}

async fn rp_initiated_logout(h: &TestServer) {
    h.user("lo@example.test", PW).await;
    let rp = rp_for(h, "lo").await;
    let b = h.browser();
    let start = rp.start(&[]);
    let back = b.authorize(&start.url, "lo@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string();

    let bye = "http://127.0.0.1/lo/bye";
    let confirm = b
        .get(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri={bye}&state=xyz"
        ))
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let mut form: Vec<(&str, String)> = vec![("csrf", confirm.input("csrf").unwrap()), ("decision", "logout".into())];
    for k in ["client_id", "post_logout_redirect_uri", "state"] {
        form.push((k, confirm.input(k).unwrap()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = b.post("/logout", &form).await;
    assert_eq!(out.location.as_deref(), Some("http://127.0.0.1/lo/bye?state=xyz"));

    // The session is gone: prompt=none now fails with login_required.
    let s = rp.start_with(&[], &[("prompt", "none")]);
    let page = b.get(&s.url).await;
    assert_eq!(page.location_param("error").as_deref(), Some("login_required"));

    // An unregistered post-logout URI is refused on a page.
    let bad = b
        .get(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri=https://evil.example/"
        ))
        .await;
    assert_eq!(bad.status, 400);
}

async fn signup_verifies_the_email_then_welcomes(h: &TestServer) {
    let rp = rp_for(h, "su").await;
    let b = h.browser();
    let start = rp.start(&["email"]);
    let login = b.follow(b.get(&start.url).await).await;
    let signup_link = crate::support::browser::html_unescape(login.body.split("href=\"").nth(2).unwrap().split('"').next().unwrap());
    assert!(signup_link.starts_with("/signup"), "{signup_link}");
    let form = b.get(&signup_link).await;
    assert!(form.body.contains("autocomplete=\"new-password\""));
    let weak = b.submit(&form, &[("email", "new@example.test"), ("password", "password1")]).await;
    assert!(weak.body.contains("too easy to guess"), "zxcvbn refuses common passwords");
    let sent = b
        .submit(
            &form,
            &[("email", "New@Example.test"), ("password", "a fine password"), ("name", "Newcomer")],
        )
        .await;
    assert_eq!(sent.status, 200);
    assert!(sent.body.contains("id=\"login-code\""), "{}", sent.body);
    let user = h.state.db.user_by_email("new@example.test").await.unwrap().unwrap();
    assert!(!user.email_verified, "unverified until the code comes back");
    let mail = h.mail.last_to("new@example.test");
    assert_eq!(mail.subject, "Confirm your email address");
    let done = b.submit(&sent, &[("code", &mail.six_digit_code())]).await;
    assert!(done.body.contains("Your account is ready"), "a visible confirmation: {}", done.body);
    let consent = b.press_continue(&done).await;
    assert_eq!(
        h.mail.last_to("new@example.test").subject,
        "Welcome",
        "a welcome mail after verification"
    );
    let back = b.follow(b.submit(&consent, &[("decision", "allow")]).await).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(
        claims.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        None,
        "name needs the profile scope"
    );
    assert_eq!(tokens.scopes().unwrap().len(), 2);
}

/// Signing up with a taken address says nothing on the page; the owner gets a mail.
async fn signup_with_a_taken_address_tells_only_the_owner(h: &TestServer) {
    h.user("taken@example.test", PW).await;
    let b = h.browser();
    let form = b.get("/signup").await;
    let taken = b
        .submit(&form, &[("email", "taken@example.test"), ("password", "another fine password")])
        .await;
    let b2 = h.browser();
    let form2 = b2.get("/signup").await;
    let fresh = b2
        .submit(&form2, &[("email", "fresh@example.test"), ("password", "another fine password")])
        .await;
    assert_eq!(taken.status, fresh.status);
    let norm = |p: &crate::support::browser::Page| {
        p.body
            .replace("taken@example.test", "E")
            .replace("fresh@example.test", "E")
            .lines()
            .filter(|l| !l.contains("name=\"csrf\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(norm(&taken), norm(&fresh));
    assert_eq!(h.mail.last_to("taken@example.test").subject, "You already have an account");
    let owner = h.state.db.user_by_email("taken@example.test").await.unwrap().unwrap();
    assert!(
        h.state.hasher.verify(PW, owner.password_hash.as_deref()).await.unwrap(),
        "the password is untouched"
    );
}

e2e!(
    confidential_client_full_flow,
    public_client_with_pkce,
    es256_id_tokens_for_clients_that_ask,
    single_sign_on_across_clients,
    first_party_clients_skip_consent,
    consent_denied_is_access_denied,
    refresh_tokens_rotate_and_reuse_revokes,
    prompt_login_forces_a_new_login_and_moves_auth_time,
    form_post_response_mode,
    revocation_and_introspection,
    rp_initiated_logout,
    signup_verifies_the_email_then_welcomes,
    signup_with_a_taken_address_tells_only_the_owner,
);
