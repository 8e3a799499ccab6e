//! The authorization endpoint's refusals, each asserting the exact error and where it goes.

use clef::admin::ClientSpec;

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::Page;

const PW: &str = "correct horse battery";
const CHALLENGE: &str = "HNOgb1653uKOQeDgfNs3J8qaffv2c2-vRiDbfHNICRs";

struct Setup {
    client_id: String,
    redirect: String,
}

async fn setup(h: &TestServer) -> Setup {
    let c = h.confidential("rp").await;
    Setup {
        client_id: c.client_id,
        redirect: "http://127.0.0.1/rp/cb".into(),
    }
}

fn url(s: &Setup, extra: &[(&str, &str)], without: &[&str]) -> String {
    let mut pairs: Vec<(String, String)> = [
        ("client_id", s.client_id.as_str()),
        ("redirect_uri", s.redirect.as_str()),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st4te"),
        ("nonce", "n0nce"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .filter(|(k, _)| !without.contains(k))
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        pairs.push(((*k).to_owned(), (*v).to_owned()));
    }
    let q = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    format!("/authorize?{q}")
}

fn assert_error_redirect(page: &Page, s: &Setup, h: &TestServer, code: &str) {
    page.assert_redirect_to(&s.redirect);
    assert_eq!(page.location_param("error").as_deref(), Some(code), "{:?}", page.location);
    assert!(page.location_param("error_description").is_some());
    assert_eq!(page.location_param("state").as_deref(), Some("st4te"));
    assert_eq!(page.location_param("iss").as_deref(), Some(h.issuer.as_str()));
}

fn assert_error_page(page: &Page) {
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location.is_none(), "must never redirect to an untrusted URI");
    assert!(page.body.contains("<h1>"), "an HTML page");
}

async fn untrusted_client_or_redirect_uri_shows_a_page(h: &TestServer) {
    let s = setup(h).await;
    let b = h.browser();
    for u in [
        url(&s, &[("redirect_uri", "https://evil.example/cb")], &[]),
        url(&s, &[("redirect_uri", "http://127.0.0.1/rp/cb/")], &[]),
        url(&s, &[], &["redirect_uri"]),
        url(&s, &[("client_id", "unknown")], &[]),
        url(&s, &[], &["client_id"]),
        format!("{}&client_id=again", url(&s, &[], &[])),
    ] {
        let page = b.get(&u).await;
        assert_error_page(&page);
    }
    let fr = b
        .get(&url(&s, &[("redirect_uri", "https://evil.example/cb"), ("ui_locales", "fr")], &[]))
        .await;
    assert!(fr.body.contains("n’est pas enregistrée"), "{}", fr.body);
}

async fn protocol_errors_are_redirected_with_state_and_iss(h: &TestServer) {
    let s = setup(h).await;
    let b = h.browser();
    for (u, code) in [
        (url(&s, &[], &["response_type"]), "invalid_request"),
        (url(&s, &[("response_type", "token")], &[]), "unsupported_response_type"),
        (url(&s, &[("response_type", "code id_token")], &[]), "unsupported_response_type"),
        (url(&s, &[("scope", "email profile")], &[]), "invalid_scope"),
        (url(&s, &[("code_challenge_method", "plain")], &[]), "invalid_request"),
        (url(&s, &[("prompt", "none login")], &[]), "invalid_request"),
        (url(&s, &[("max_age", "soon")], &[]), "invalid_request"),
        // reqobj: request objects are supported, by value and by reference.
        (url(&s, &[("request", "not-a-jwt")], &[]), "invalid_request_object"),
        (url(&s, &[("request_uri", "https://rp.example/r.jwt")], &[]), "invalid_request_uri"),
        (url(&s, &[("response_mode", "fragment")], &[]), "invalid_request"),
        (url(&s, &[("id_token_hint", "not.a.jwt")], &[]), "invalid_request"),
        (
            url(&s, &[("id_token_hint", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")], &[]),
            "invalid_request",
        ),
    ] {
        let page = b.get(&u).await;
        assert_error_redirect(&page, &s, h, code);
    }
}

async fn repeated_parameters_are_rejected(h: &TestServer) {
    let s = setup(h).await;
    let page = h.browser().get(&format!("{}&scope=openid", url(&s, &[], &[]))).await;
    assert_error_redirect(&page, &s, h, "invalid_request");
    assert_eq!(
        page.location_param("error_description").as_deref(),
        Some("parameter scope is repeated")
    );
}

async fn unknown_parameters_are_ignored(h: &TestServer) {
    let s = setup(h).await;
    let page = h.browser().get(&url(&s, &[("favourite_colour", "blue")], &[])).await;
    page.assert_redirect_to("/login?req=");
}

async fn public_clients_must_use_pkce(h: &TestServer) {
    let c = h
        .client(ClientSpec {
            name: "spa".into(),
            redirect_uris: vec!["http://127.0.0.1/spa/cb".into()],
            public: true,
            ..ClientSpec::default()
        })
        .await;
    let s = Setup {
        client_id: c.client_id,
        redirect: "http://127.0.0.1/spa/cb".into(),
    };
    let page = h.browser().get(&url(&s, &[], &["code_challenge", "code_challenge_method"])).await;
    assert_error_redirect(&page, &s, h, "invalid_request");
}

async fn prompt_none_without_session_is_login_required(h: &TestServer) {
    let s = setup(h).await;
    let page = h.browser().get(&url(&s, &[("prompt", "none")], &[])).await;
    assert_error_redirect(&page, &s, h, "login_required");
}

async fn post_to_authorize_works_like_get(h: &TestServer) {
    let s = setup(h).await;
    let form = [
        ("client_id", s.client_id.as_str()),
        ("redirect_uri", s.redirect.as_str()),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st4te"),
        ("prompt", "none"),
    ];
    let page = h.browser().post("/authorize", &form).await;
    assert_error_redirect(&page, &s, h, "login_required");
}

async fn max_age_forces_a_new_login(h: &TestServer) {
    h.user("age@example.test", PW).await;
    let s = setup(h).await;
    let b = h.browser();
    let back = b.authorize(&url(&s, &[], &[]), "age@example.test", PW).await;
    back.assert_redirect_to(&s.redirect);

    // Within max_age: straight back with a code.
    let page = b.follow(b.get(&url(&s, &[("max_age", "600")], &[])).await).await;
    assert!(page.location_param("code").is_some(), "{:?}", page.location);

    h.clock.advance(601);
    let page = b.follow(b.get(&url(&s, &[("max_age", "600")], &[])).await).await;
    assert!(page.body.contains("current-password"), "an old login must log in again");
    // prompt=none with an old login cannot show a page.
    let none = b.get(&url(&s, &[("max_age", "600"), ("prompt", "none")], &[])).await;
    assert_error_redirect(&none, &s, h, "login_required");
    let back = b
        .follow(b.submit(&page, &[("email", "age@example.test"), ("password", PW)]).await)
        .await;
    assert!(back.location_param("code").is_some(), "{:?}", back.location);
}

async fn login_hint_prefills_the_email(h: &TestServer) {
    let s = setup(h).await;
    let b = h.browser();
    let page = b.follow(b.get(&url(&s, &[("login_hint", "hint@example.test")], &[])).await).await;
    assert_eq!(page.input("email").as_deref(), Some("hint@example.test"));
}

e2e!(
    untrusted_client_or_redirect_uri_shows_a_page,
    protocol_errors_are_redirected_with_state_and_iss,
    repeated_parameters_are_rejected,
    unknown_parameters_are_ignored,
    public_clients_must_use_pkce,
    prompt_none_without_session_is_login_required,
    post_to_authorize_works_like_get,
    max_age_forces_a_new_login,
    login_hint_prefills_the_email,
);
