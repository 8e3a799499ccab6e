//! reqobj: the `claims` request parameter (OIDC Core §5.5) and request objects by value
//! (RFC 9101, OIDC Core §6.1), as a relying party uses them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use clef::admin::{ClientSpec, UserSpec};
use clef::secret::{b64url, b64url_decode};
use openidconnect::{Nonce, PkceCodeChallenge, TokenResponse};
use serde_json::{Value, json};

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::Browser;
use crate::support::rp::{Rp, access_token, refresh_token};

const PW: &str = "correct horse battery";
const CB: &str = "http://127.0.0.1/ro/cb";
const CB2: &str = "http://127.0.0.1/ro/other";

fn payload(jwt: &str) -> Value {
    serde_json::from_slice(&b64url_decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn id_token_claims(tokens: &openidconnect::core::CoreTokenResponse) -> Value {
    payload(&tokens.id_token().unwrap().to_string())
}

async fn userinfo_raw(h: &TestServer, rp: &Rp, at: &str) -> Value {
    rp.http
        .get(h.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn ana(h: &TestServer) -> String {
    h.user_with(UserSpec {
        email: "ana@example.test".into(),
        password: Some(PW.into()),
        name: Some("Ana".into()),
        verified: true,
        ..UserSpec::default()
    })
    .await
}

/// OIDC Core §5.5: with only `openid` as scope, `email` asked at userinfo is there and not in
/// the ID token; `name` asked in the ID token is there and not at userinfo; a claim the user
/// has no value for (`phone_number`) and one clef does not know are left out. The request
/// survives the code, and a refresh (ID token and userinfo of the new access token).
async fn claims_parameter_places_each_claim(h: &TestServer) {
    let sub = ana(h).await;
    let rp = h.first_party().await;
    let claims = json!({
        "userinfo": {"email": {"essential": true}, "email_verified": null},
        "id_token": {"name": null, "phone_number": {"essential": true}, "shoe_size": null, "auth_time": {"essential": true}}
    });
    let start = rp.start_with(&[], &[("claims", &claims.to_string())]);
    let back = h.browser().authorize(&start.url, "ana@example.test", PW).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    rp.id_claims(&tokens, &start.nonce);
    let id = id_token_claims(&tokens);
    assert_eq!(id["sub"], sub.as_str());
    assert_eq!(id["name"], "Ana", "{id}");
    assert!(id["auth_time"].is_i64(), "{id}");
    for absent in ["email", "phone_number", "shoe_size"] {
        assert!(id.get(absent).is_none(), "{absent} in {id}");
    }
    let info = userinfo_raw(h, &rp, &access_token(&tokens)).await;
    assert_eq!(info["email"], "ana@example.test", "{info}");
    assert_eq!(info["email_verified"], true, "{info}");
    assert!(info.get("name").is_none(), "{info}");

    let next = rp.refresh(&refresh_token(&tokens).unwrap()).await.unwrap();
    let id = id_token_claims(&next);
    assert_eq!(id["name"], "Ana", "refreshed ID token: {id}");
    assert!(id.get("email").is_none(), "{id}");
    let info = userinfo_raw(h, &rp, &access_token(&next)).await;
    assert_eq!(info["email"], "ana@example.test", "{info}");

    // Without the parameter, only the scope's claims, as before.
    let start = rp.start(&[]);
    let back = h.browser().authorize(&start.url, "ana@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    assert!(id_token_claims(&tokens).get("name").is_none());
    assert!(userinfo_raw(h, &rp, &access_token(&tokens)).await.get("email").is_none());
}

/// Bad JSON, or a claim request that is not an object, is `invalid_request` on the redirect.
async fn bad_claims_are_invalid_request(h: &TestServer) {
    let rp = h.first_party().await;
    for bad in ["{not json", "[1]", r#"{"userinfo": []}"#, r#"{"id_token": {"name": 3}}"#] {
        let start = rp.start_with(&[], &[("claims", bad)]);
        let page = h.browser().get(&start.url).await;
        page.assert_redirect_to(&rp.redirect_uri);
        assert_eq!(page.location_param("error").as_deref(), Some("invalid_request"), "{bad}");
        assert_eq!(page.location_param("state").as_deref(), Some(start.state.as_str()));
    }
}

/// OIDC Core §5.5.1.1: `acr` essential with the two-factor value makes the login reach it: after
/// the emailed code, the password is asked too, and the ID token says 2fa. Voluntary, a
/// one-factor login does.
async fn essential_acr_forces_the_second_factor(h: &TestServer) {
    ana(h).await;
    let rp = h.first_party().await;
    let essential = json!({"id_token": {"acr": {"essential": true, "values": ["urn:clef:acr:2fa"]}}});
    let start = rp.start_with(&[], &[("claims", &essential.to_string())]);
    let b = h.browser();
    let login = b.follow(b.get(&start.url).await).await;
    let form = [
        ("csrf", login.input("csrf").unwrap()),
        ("req", login.input("req").unwrap()),
        ("email", "ana@example.test".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = b.post("/login/code", &form).await;
    let code = h.mail.last_to("ana@example.test").six_digit_code();
    let step = b.submit(&page, &[("code", &code)]).await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(step.body.contains("id=\"login-password\""), "the second factor: {}", step.body);
    assert!(b.cookie(&h.issuer, "clef_session").is_none(), "no session on one factor");
    // Two factors in: the authenticator-app offer comes first (issue 8), then the request.
    let offer = b.follow(b.submit(&step, &[("password", PW)]).await).await;
    let links = offer.button_links();
    assert!(links[1].starts_with("/authorize/resume?req="), "{links:?}");
    let back = b.follow(b.get(&links[1]).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    assert_eq!(id_token_claims(&tokens)["acr"], "urn:clef:acr:2fa");

    let voluntary = json!({"id_token": {"acr": {"values": ["urn:clef:acr:2fa", "urn:clef:acr:1fa"]}}});
    let start = rp.start_with(&[], &[("claims", &voluntary.to_string())]);
    let back = h.browser().authorize(&start.url, "ana@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    assert_eq!(id_token_claims(&tokens)["acr"], "urn:clef:acr:1fa");
}

/// A test's own P-256 key and its public JWK.
struct TestKey {
    pair: EcdsaKeyPair,
    jwk: Value,
}

fn es256_key(kid: &str) -> TestKey {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let p = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64url(&p[1..33]), "y": b64url(&p[33..])});
    TestKey { pair, jwk }
}

impl TestKey {
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.jwk["kid"], "typ": "oauth-authz-req+jwt"});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    }
}

fn unsigned(claims: &Value) -> String {
    format!("{}.{}.", b64url(br#"{"alg":"none"}"#), b64url(claims.to_string().as_bytes()))
}

/// A confidential first-party client with an inline JWK Set and two redirect URIs.
async fn ro_client(h: &TestServer, key: &TestKey) -> Rp {
    let created = h
        .client(ClientSpec {
            name: "ro".into(),
            redirect_uris: vec![CB.into(), CB2.into()],
            skip_consent: true,
            jwks: Some(json!({"keys": [key.jwk]})),
            ..ClientSpec::default()
        })
        .await;
    Rp::discover(&h.issuer, &created, CB).await
}

struct ObjectRequest {
    url: String,
    verifier: openidconnect::PkceCodeVerifier,
    nonce: String,
}

/// The query says CB2, state "query", scope openid; the object says CB, state "object",
/// scope openid email, and carries PKCE and nonce. `shape` adjusts the object's claims.
fn object_request(h: &TestServer, rp: &Rp, encode: impl Fn(&Value) -> String, shape: impl Fn(&mut Value)) -> ObjectRequest {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = clef::secret::random_token(12);
    let mut claims = json!({
        "iss": rp.client_id, "aud": h.issuer, "exp": h.clock.now() + 300,
        "client_id": rp.client_id, "response_type": "code", "redirect_uri": CB,
        "scope": "openid email", "state": "object", "nonce": nonce,
        "code_challenge": challenge.as_str(), "code_challenge_method": "S256",
    });
    shape(&mut claims);
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", &rp.client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", CB2)
        .append_pair("state", "query")
        .append_pair("request", &encode(&claims));
    ObjectRequest {
        url: h.url(&format!("/authorize?{}", q.finish())),
        verifier,
        nonce,
    }
}

async fn finish_flow(h: &TestServer, b: &Browser, rp: &Rp, r: ObjectRequest) -> Value {
    let back = b.authorize(&r.url, "ana@example.test", PW).await;
    back.assert_redirect_to(CB);
    assert_eq!(back.location_param("state").as_deref(), Some("object"), "the object's state wins");
    let tokens = rp.exchange(&back.location_param("code").unwrap(), r.verifier).await;
    rp.id_claims(&tokens, &Nonce::new(r.nonce));
    let _ = h;
    id_token_claims(&tokens)
}

/// RFC 9101 §5: a signed object (ES256, the client's registered key) is verified and its
/// parameters win over the query's: redirect_uri, state, scope (email in the ID token).
async fn signed_request_object_wins_over_the_query(h: &TestServer) {
    ana(h).await;
    let key = es256_key("k1");
    let rp = ro_client(h, &key).await;
    let r = object_request(h, &rp, |c| key.sign(c), |_| {});
    let id = finish_flow(h, &h.browser(), &rp, r).await;
    assert_eq!(id["email"], "ana@example.test", "the object's scope: {id}");

    // The claims parameter inside the object is a JSON object (OIDC Core §6.1).
    let r = object_request(
        h,
        &rp,
        |c| key.sign(c),
        |c| {
            c["scope"] = json!("openid");
            c["claims"] = json!({"id_token": {"name": null}});
        },
    );
    let id = finish_flow(h, &h.browser(), &rp, r).await;
    assert_eq!(id["name"], "Ana", "{id}");
    assert!(id.get("email").is_none(), "{id}");
}

/// A bad signature, another key, a wrong `iss` or `aud`, an expired object, another client_id:
/// `invalid_request_object`, sent to the query's (registered) redirect_uri with its state.
async fn bad_request_objects_are_refused(h: &TestServer) {
    let key = es256_key("k1");
    let rp = ro_client(h, &key).await;
    let stranger = es256_key("k1");
    let other = es256_key("k2");
    let cases: Vec<(&str, ObjectRequest)> = vec![
        (
            "another key under the same kid",
            object_request(h, &rp, |c| stranger.sign(c), |_| {}),
        ),
        ("an unknown kid", object_request(h, &rp, |c| other.sign(c), |_| {})),
        (
            "a tampered payload",
            object_request(
                h,
                &rp,
                |c| {
                    let jwt = key.sign(c);
                    let parts: Vec<&str> = jwt.split('.').collect();
                    let mut evil = c.clone();
                    evil["scope"] = json!("openid email profile");
                    format!("{}.{}.{}", parts[0], b64url(evil.to_string().as_bytes()), parts[2])
                },
                |_| {},
            ),
        ),
        ("iss", object_request(h, &rp, |c| key.sign(c), |c| c["iss"] = json!("someone"))),
        (
            "aud",
            object_request(h, &rp, |c| key.sign(c), |c| c["aud"] = json!("https://elsewhere.example")),
        ),
        (
            "exp",
            object_request(h, &rp, |c| key.sign(c), |c| c["exp"] = json!(h.clock.now() - 3600)),
        ),
        (
            "client_id",
            object_request(h, &rp, |c| key.sign(c), |c| c["client_id"] = json!("other")),
        ),
        (
            "nested request",
            object_request(h, &rp, |c| key.sign(c), |c| c["request"] = json!("x.y.z")),
        ),
    ];
    for (why, r) in cases {
        let page = h.browser().get(&r.url).await;
        page.assert_redirect_to(CB2);
        assert_eq!(page.location_param("error").as_deref(), Some("invalid_request_object"), "{why}");
        assert_eq!(page.location_param("state").as_deref(), Some("query"), "{why}");
    }
}

/// OIDC Core §6.1 and OIDC Registration §2: a client that registered no
/// `request_object_signing_alg` may send an unsigned (`alg: none`) object; its parameters
/// then pass the same checks as query parameters (PKCE, redirect_uri), and no `iss`/`aud`
/// is needed. A `none` object with a signature part is refused.
async fn unsigned_request_object_per_the_rule(h: &TestServer) {
    ana(h).await;
    let key = es256_key("k1");
    let rp = ro_client(h, &key).await;
    let r = object_request(h, &rp, unsigned, |c| {
        c.as_object_mut().unwrap().remove("iss");
        c.as_object_mut().unwrap().remove("aud");
    });
    let id = finish_flow(h, &h.browser(), &rp, r).await;
    assert_eq!(id["email"], "ana@example.test", "{id}");

    let r = object_request(h, &rp, |c| format!("{}c2ln", unsigned(c)), |_| {});
    let page = h.browser().get(&r.url).await;
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_request_object"));

    // An object whose redirect_uri is not registered: the page, never a redirect.
    let r = object_request(h, &rp, unsigned, |c| c["redirect_uri"] = json!("http://127.0.0.1/evil"));
    let page = h.browser().get(&r.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location.is_none());
}

/// A loopback listener serving `body` at /r.jwt (404 elsewhere); returns its base URL.
async fn serve_object(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/r.jwt",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/oauth-authz-req+jwt")], body) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// RFC 9101 §5.2 / OIDC Core §6.2: `request_uri` fetched from the client's host (a loopback
/// listener here), verified like a `request`, its parameters winning over the query's. A
/// request_uri on another host than the redirect URIs', or one that answers 404, is
/// `invalid_request_uri`; both `request` and `request_uri` is `invalid_request`.
async fn request_uri_is_fetched_and_checked(h: &TestServer) {
    ana(h).await;
    let key = es256_key("k1");
    let rp = ro_client(h, &key).await;
    let r = object_request(h, &rp, |c| key.sign(c), |_| {});
    let jwt = r.url.split("request=").nth(1).unwrap().to_owned();
    let jwt = form_urlencoded::parse(format!("x={jwt}").as_bytes()).next().unwrap().1.into_owned();
    let base = serve_object(jwt.clone()).await;
    let by_ref = |uri: &str| {
        r.url.replace(
            &format!("request={}", r.url.split("request=").nth(1).unwrap()),
            &format!(
                "request_uri={}",
                form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
            ),
        )
    };
    let good = by_ref(&format!("{base}/r.jwt"));
    let other_host = by_ref(&format!("{}/r.jwt", base.replace("127.0.0.1", "localhost")));
    let missing = by_ref(&format!("{base}/nothing.jwt"));
    let both = format!("{good}&request={jwt}");
    for (u, code) in [
        (&other_host, "invalid_request_uri"),
        (&missing, "invalid_request_uri"),
        (&both, "invalid_request"),
    ] {
        let page = h.browser().get(u).await;
        page.assert_redirect_to(CB2);
        assert_eq!(page.location_param("error").as_deref(), Some(code), "{u}");
    }
    let id = finish_flow(
        h,
        &h.browser(),
        &rp,
        ObjectRequest {
            url: good,
            verifier: r.verifier,
            nonce: r.nonce,
        },
    )
    .await;
    assert_eq!(id["email"], "ana@example.test", "{id}");
}

/// Discovery says what is done: claims, and request objects by value and by reference.
async fn discovery_advertises_what_is_done(h: &TestServer) {
    let doc: Value = reqwest::get(h.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["claims_parameter_supported"], true);
    assert_eq!(doc["request_parameter_supported"], true);
    assert_eq!(doc["request_uri_parameter_supported"], true);
    assert_eq!(doc["require_request_uri_registration"], false);
    assert_eq!(
        doc["request_object_signing_alg_values_supported"],
        json!(["none", "RS256", "PS256", "ES256"])
    );
}

e2e!(
    claims_parameter_places_each_claim,
    bad_claims_are_invalid_request,
    essential_acr_forces_the_second_factor,
    signed_request_object_wins_over_the_query,
    bad_request_objects_are_refused,
    unsigned_request_object_per_the_rule,
    request_uri_is_fetched_and_checked,
    discovery_advertises_what_is_done,
);
