//! The token and userinfo endpoints' refusals: exact RFC 6749 §5.2 / RFC 6750 §3.1 errors.

use crate::e2e;
use crate::support::TestServer;
use crate::support::rp::Rp;

const PW: &str = "correct horse battery";

/// A logged-in relying party holding a fresh code.
async fn code_for(h: &TestServer, rp_name: &str, email: &str) -> (Rp, String, String) {
    if h.state.db.user_by_email(email).await.unwrap().is_none() {
        h.user(email, PW).await;
    }
    let created = h.confidential(rp_name).await;
    let rp = Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{rp_name}/cb")).await;
    let start = rp.start(&["email"]);
    let back = h.browser().authorize(&start.url, email, PW).await;
    let code = back.location_param("code").unwrap();
    (rp, code, start.verifier.secret().clone())
}

fn form<'a>(rp: &'a Rp, code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", rp.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ]
}

fn basic(rp: &Rp) -> Option<(&str, &str)> {
    Some((rp.client_id.as_str(), rp.client_secret.as_deref().unwrap()))
}

fn assert_error(got: &(u16, reqwest::header::HeaderMap, serde_json::Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{:?}", got.2);
    assert_eq!(got.2["error"], code, "{:?}", got.2);
    assert!(got.2["error_description"].is_string());
    assert_eq!(got.1["cache-control"], "no-store");
}

async fn wrong_client_secret_is_invalid_client(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "sec", "sec@example.test").await;
    let got = rp
        .token_raw(&h.issuer, &form(&rp, &code, &verifier), Some((&rp.client_id, "wrong")))
        .await;
    assert_error(&got, 401, "invalid_client");
    assert!(got.1["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let mut f = form(&rp, &code, &verifier);
    f.extend([("client_id", rp.client_id.as_str()), ("client_secret", "wrong")]);
    assert_error(&rp.token_raw(&h.issuer, &f, None).await, 401, "invalid_client");
    // No credentials at all for a confidential client.
    let mut f = form(&rp, &code, &verifier);
    f.push(("client_id", rp.client_id.as_str()));
    assert_error(&rp.token_raw(&h.issuer, &f, None).await, 401, "invalid_client");
}

async fn client_secret_post_works(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "post", "post@example.test").await;
    let mut f = form(&rp, &code, &verifier);
    let secret = rp.client_secret.clone().unwrap();
    f.extend([("client_id", rp.client_id.as_str()), ("client_secret", secret.as_str())]);
    let got = rp.token_raw(&h.issuer, &f, None).await;
    assert_eq!(got.0, 200, "{:?}", got.2);
    assert_eq!(got.1["cache-control"], "no-store");
    assert_eq!(got.2["token_type"], "Bearer");
    assert_eq!(got.2["scope"], "openid email");
    assert!(got.2["expires_in"].as_i64().unwrap() > 0);
}

async fn wrong_pkce_verifier_is_invalid_grant(h: &TestServer) {
    let (rp, code, _) = code_for(h, "pkce", "pkce@example.test").await;
    let wrong = "x".repeat(50);
    let got = rp.token_raw(&h.issuer, &form(&rp, &code, &wrong), basic(&rp)).await;
    assert_error(&got, 400, "invalid_grant");
    assert_eq!(got.2["error_description"], "code_verifier does not match code_challenge");
}

async fn code_reuse_is_refused_and_revokes_its_tokens(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "reuse", "reuse@example.test").await;
    let first = rp.token_raw(&h.issuer, &form(&rp, &code, &verifier), basic(&rp)).await;
    assert_eq!(first.0, 200);
    let at = first.2["access_token"].as_str().unwrap().to_owned();
    let rt = first.2["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(rp.http.get(h.url("/userinfo")).bearer_auth(&at).send().await.unwrap().status(), 200);

    let second = rp.token_raw(&h.issuer, &form(&rp, &code, &verifier), basic(&rp)).await;
    assert_error(&second, 400, "invalid_grant");
    assert_eq!(rp.http.get(h.url("/userinfo")).bearer_auth(&at).send().await.unwrap().status(), 401);
    assert!(rp.refresh(&rt).await.unwrap_err().contains("invalid_grant"));
}

async fn concurrent_redemptions_one_wins(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "race", "race@example.test").await;
    let f = form(&rp, &code, &verifier);
    let (a, b) = tokio::join!(rp.token_raw(&h.issuer, &f, basic(&rp)), rp.token_raw(&h.issuer, &f, basic(&rp)));
    let wins = [a.0, b.0].iter().filter(|s| **s == 200).count();
    assert_eq!(wins, 1, "{:?} / {:?}", a.2, b.2);
    let loser = if a.0 == 200 { &b } else { &a };
    assert_error(loser, 400, "invalid_grant");
}

async fn expired_code_is_invalid_grant(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "exp", "exp@example.test").await;
    h.clock.advance(61);
    let got = rp.token_raw(&h.issuer, &form(&rp, &code, &verifier), basic(&rp)).await;
    assert_error(&got, 400, "invalid_grant");
    assert_eq!(got.2["error_description"], "code expired");
}

async fn code_from_another_client_is_invalid_grant(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "mine", "mine@example.test").await;
    let other = h.confidential("other").await;
    let other_rp = Rp::discover(&h.issuer, &other, "http://127.0.0.1/other/cb").await;
    let got = rp.token_raw(&h.issuer, &form(&rp, &code, &verifier), basic(&other_rp)).await;
    assert_error(&got, 400, "invalid_grant");
    assert_eq!(got.2["error_description"], "code was issued to another client");
}

async fn redirect_uri_must_match_at_the_token_endpoint(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "ruri", "ruri@example.test").await;
    let mut f = form(&rp, &code, &verifier);
    f[2] = ("redirect_uri", "http://127.0.0.1/ruri/other");
    assert_error(&rp.token_raw(&h.issuer, &f, basic(&rp)).await, 400, "invalid_grant");
}

async fn malformed_token_requests(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "mal", "mal@example.test").await;
    let got = rp.token_raw(&h.issuer, &[("code", code.as_str())], basic(&rp)).await;
    assert_error(&got, 400, "invalid_request");
    let got = rp
        .token_raw(&h.issuer, &[("grant_type", "password"), ("username", "x")], basic(&rp))
        .await;
    assert_error(&got, 400, "unsupported_grant_type");
    let mut f = form(&rp, &code, &verifier);
    f.push(("code", "again"));
    assert_error(&rp.token_raw(&h.issuer, &f, basic(&rp)).await, 400, "invalid_request");

    // An oversized body is refused before it is read, in the protocol's own shape.
    let big = "a".repeat(100 * 1024);
    let resp = rp
        .http
        .post(h.url("/token"))
        .basic_auth(&rp.client_id, rp.client_secret.as_deref())
        .form(&[("grant_type", "authorization_code"), ("code", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.headers()["connection"],
        "close",
        "the unread body makes the connection unusable"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");

    // Not a form at all.
    let resp = rp
        .http
        .post(h.url("/token"))
        .basic_auth(&rp.client_id, rp.client_secret.as_deref())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

async fn userinfo_refuses_bad_tokens(h: &TestServer) {
    let (rp, code, verifier) = code_for(h, "ui", "ui@example.test").await;
    let tokens = rp.token_raw(&h.issuer, &form(&rp, &code, &verifier), basic(&rp)).await.2;
    let at = tokens["access_token"].as_str().unwrap();
    let idt = tokens["id_token"].as_str().unwrap();

    let none = rp.http.get(h.url("/userinfo")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    for bad in ["garbage", idt, &format!("{at}x")] {
        let resp = rp.http.get(h.url("/userinfo")).bearer_auth(bad).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }
    // POST with the token in the body (RFC 6750 §2.2).
    let ok = rp.http.post(h.url("/userinfo")).form(&[("access_token", at)]).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    h.clock.advance(901);
    let expired = rp.http.get(h.url("/userinfo")).bearer_auth(at).send().await.unwrap();
    assert_eq!(expired.status(), 401);
    assert!(expired.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
}

e2e!(
    wrong_client_secret_is_invalid_client,
    client_secret_post_works,
    wrong_pkce_verifier_is_invalid_grant,
    code_reuse_is_refused_and_revokes_its_tokens,
    concurrent_redemptions_one_wins,
    expired_code_is_invalid_grant,
    code_from_another_client_is_invalid_grant,
    redirect_uri_must_match_at_the_token_endpoint,
    malformed_token_requests,
    userinfo_refuses_bad_tokens,
);
