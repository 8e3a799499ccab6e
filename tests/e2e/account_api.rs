//! The account API (issue 8 §5): bearer tokens with the `account` scope, for the token's own
//! user, with RFC 6750 challenges an app can act on.

use clef::admin::ClientSpec;
use reqwest::{StatusCode, header};

use crate::e2e;
use crate::support::TestServer;
use crate::support::rp::Rp;

const PW: &str = "correct horse battery";

async fn rp(h: &TestServer, name: &str, first_party: bool) -> Rp {
    let created = h
        .client(ClientSpec {
            name: name.into(),
            redirect_uris: vec![format!("http://127.0.0.1/{name}/cb")],
            skip_consent: first_party,
            ..ClientSpec::default()
        })
        .await;
    Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{name}/cb")).await
}

/// Logs `email` in through the pages and returns the access token and its granted scope.
pub async fn token(h: &TestServer, rp: &Rp, email: &str, scopes: &[&str]) -> (String, String) {
    let start = rp.start(scopes);
    let back = h.browser().authorize(&start.url, email, PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let at = openidconnect::OAuth2TokenResponse::access_token(&tokens).secret().clone();
    let scope = openidconnect::OAuth2TokenResponse::scopes(&tokens)
        .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    (at, scope)
}

/// GET on an account API path; returns the status, the challenge and the JSON body.
pub async fn get(h: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, String, serde_json::Value) {
    let mut req = reqwest::Client::new().get(h.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(resp.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, challenge, body)
}

async fn status_for_the_tokens_own_user(h: &TestServer) {
    let sub = h.user("api@example.test", PW).await;
    h.user("other@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (at, scope) = token(h, &rp, "api@example.test", &["account"]).await;
    assert!(scope.split(' ').any(|s| s == "account"), "{scope}");
    let (status, _, body) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sub"], sub.as_str());
    assert_eq!(body["email"], "api@example.test");
    assert!(body["auth_time"].as_i64().unwrap() > 0);
}

/// RFC 6750 §3.1: no token, a bad one and one without the scope each get their own answer.
async fn challenges_say_what_is_missing(h: &TestServer) {
    h.user("ch@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (none, challenge, _) = get(h, "/account/api/status", None).await;
    assert_eq!(none, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge, "Bearer realm=\"clef\"");

    let (bad, challenge, body) = get(h, "/account/api/status", Some("a.b.c")).await;
    assert_eq!(bad, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["error"], "invalid_token");

    let (at, _) = token(h, &rp, "ch@example.test", &["email"]).await;
    let (status, challenge, body) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"account\""), "{challenge}");
    assert_eq!(body["error"], "insufficient_scope");
}

/// A third-party app cannot obtain the scope, even with the user's consent: it is dropped
/// from the grant (RFC 6749 §3.3) and the token is refused by the API.
async fn third_party_apps_do_not_get_the_scope(h: &TestServer) {
    h.user("tp@example.test", PW).await;
    let rp = rp(h, "tp", false).await;
    let (at, scope) = token(h, &rp, "tp@example.test", &["account", "email"]).await;
    assert!(!scope.split(' ').any(|s| s == "account"), "{scope}");
    assert!(scope.split(' ').any(|s| s == "email"), "{scope}");
    let (status, _, _) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A revoked token stops working at once.
async fn revoked_tokens_are_refused(h: &TestServer) {
    h.user("rv@example.test", PW).await;
    let rp = rp(h, "fp", true).await;
    let (at, _) = token(h, &rp, "rv@example.test", &["account"]).await;
    let resp = rp
        .http
        .post(h.url("/revoke"))
        .basic_auth(&rp.client_id, rp.client_secret.as_deref())
        .form(&[("token", at.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, challenge, _) = get(h, "/account/api/status", Some(&at)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

e2e!(
    status_for_the_tokens_own_user,
    challenges_say_what_is_missing,
    third_party_apps_do_not_get_the_scope,
    revoked_tokens_are_refused,
);
