//! Dynamic client registration (RFC 7591/7592), JWT client authentication (RFC 7523),
//! pairwise subjects (OIDC Core §8.1), signed userinfo and the registered metadata at work.

use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use clef::admin::CreatedClient;
use clef::secret::b64url;
use serde_json::{Value, json};

use crate::support::TestServer;
use crate::support::rp::{Rp, access_token};

const PW: &str = "correct horse battery";
const TOKEN: &str = "initial-access-token-for-tests";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Each test on both backends, with `CLEF_REGISTRATION` set as the test names it.
macro_rules! registration_e2e {
    ($($name:ident: $mode:expr),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::support::TestServer::start_with($crate::support::Backend::Sqlite, |r| r.registration = Some($mode.into())).await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::support::TestServer::start_with($crate::support::Backend::Postgres, |r| r.registration = Some($mode.into())).await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn register(h: &TestServer, doc: &Value, token: Option<&str>) -> (u16, Value) {
    let mut r = http().post(h.url("/register")).json(doc);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn register_ok(h: &TestServer, doc: Value) -> Value {
    let (status, body) = register(h, &doc, None).await;
    assert_eq!(status, 201, "{body}");
    body
}

fn created(reg: &Value) -> CreatedClient {
    CreatedClient {
        client_id: reg["client_id"].as_str().unwrap().to_owned(),
        client_secret: reg["client_secret"].as_str().map(str::to_owned),
    }
}

/// Logs in through `rp` and returns (ID token sub, access token).
async fn login_sub(h: &TestServer, rp: &Rp, b: &crate::support::Browser) -> (String, String) {
    let start = rp.start(&["email"]);
    let back = b.authorize(&start.url, "ana@example.test", PW).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    let _ = h;
    (claims.subject().as_str().to_owned(), access_token(&tokens))
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
        let header = json!({"alg": "ES256", "kid": self.jwk["kid"], "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    }
}

fn hs256(secret: &str, claims: &Value) -> String {
    use aws_lc_rs::hmac;
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

fn assertion_claims(h: &TestServer, client_id: &str, aud: &str) -> Value {
    let now = h.clock.now();
    json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60,
        "jti": clef::secret::random_token(12)})
}

/// A token request authenticated by `assertion`: a made-up code, so an accepted client gets
/// `invalid_grant` (400) and a refused one `invalid_client` (401).
async fn token_with_assertion(h: &TestServer, assertion: &str) -> (u16, Value) {
    let resp = http()
        .post(h.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("redirect_uri", "http://127.0.0.1/jwt/cb"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Serves `doc` as JSON at `http://127.0.0.1:{port}/doc` for as long as the test runs.
async fn serve_json(doc: Arc<Mutex<Value>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/doc", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/doc",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.lock().unwrap().clone()) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

async fn open_registration_and_a_full_code_flow(h: &TestServer) {
    h.user("ana@example.test", PW).await;
    let doc: Value = serde_json::from_str(&h.browser().get("/.well-known/openid-configuration").await.body).unwrap();
    assert_eq!(doc["registration_endpoint"], h.url("/register"));
    assert_eq!(doc["subject_types_supported"], json!(["public", "pairwise"]));
    assert_eq!(doc["userinfo_signing_alg_values_supported"], json!(["RS256", "ES256"]));
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS256", "PS256", "ES256", "HS256"])
    );
    assert_eq!(
        doc["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"])
    );
    let reg = register_ok(
        h,
        json!({
            "redirect_uris": ["http://127.0.0.1/dyn/cb"],
            "client_name": "Dyn <b>App</b>",
            "logo_uri": "https://logo.example/l.png",
            "policy_uri": "https://rp.example/privacy",
            "tos_uri": "https://rp.example/terms",
            "contacts": ["ops@rp.example"],
            "grant_types": ["authorization_code", "refresh_token"],
            "a_field_clef_does_not_know": {"x": 1},
        }),
    )
    .await;
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(reg["client_secret_expires_at"], 0);
    assert!(reg["client_id_issued_at"].as_i64().unwrap() > 0);
    assert_eq!(reg["redirect_uris"], json!(["http://127.0.0.1/dyn/cb"]));
    assert_eq!(reg["contacts"], json!(["ops@rp.example"]));
    assert!(reg.get("a_field_clef_does_not_know").is_none());
    let client_id = reg["client_id"].as_str().unwrap();
    assert_eq!(reg["registration_client_uri"], h.url(&format!("/register/{client_id}")));
    assert!(reg["registration_access_token"].as_str().unwrap().len() >= 32);

    // The login page names the client, escaped, with its logo and links.
    let rp = Rp::discover(&h.issuer, &created(&reg), "http://127.0.0.1/dyn/cb").await;
    let b = h.browser();
    let login = b.follow(b.get(&rp.start(&["email"]).url).await).await;
    // minijinja escapes `/` too; a browser reads `&#x2f;` as `/`.
    let body = login.body.replace("&#x2f;", "/");
    assert!(body.contains("Dyn &lt;b&gt;App&lt;/b&gt;"), "{body}");
    assert!(!body.contains("<b>App</b>"));
    assert!(body.contains(r#"<img src="https://logo.example/l.png""#), "{body}");
    assert!(body.contains(r#"href="https://rp.example/privacy""#));
    assert!(body.contains(r#"href="https://rp.example/terms""#));
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("img-src 'self' data: https://logo.example;"), "{csp}");

    // The whole flow with the openidconnect crate as the registered relying party; the
    // consent page (a registered client is a third party) shows the same name.
    let start = rp.start(&["email"]);
    let mut page = b.follow(b.get(&start.url).await).await;
    page = b
        .follow(b.submit(&page, &[("email", "ana@example.test"), ("password", PW)]).await)
        .await;
    assert!(page.body.contains("value=\"allow\""), "{}", page.body);
    let body = page.body.replace("&#x2f;", "/");
    assert!(body.contains("Dyn &lt;b&gt;App&lt;/b&gt;"));
    assert!(body.contains(r#"<img src="https://logo.example/l.png""#));
    assert!(body.contains(r#"href="https://rp.example/privacy""#));
    let back = b.follow(b.submit(&page, &[("decision", "allow")]).await).await;
    back.assert_redirect_to("http://127.0.0.1/dyn/cb");
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ana@example.test"));
    let info = rp.userinfo(&access_token(&tokens)).await;
    assert_eq!(info.subject(), claims.subject());
    let refresh = crate::support::rp::refresh_token(&tokens).unwrap();
    rp.refresh(&refresh).await.unwrap();
}

async fn initial_access_token_is_required(h: &TestServer) {
    let doc = json!({"redirect_uris": ["https://rp.example/cb"]});
    for token in [None, Some("wrong-token-of-some-length"), Some("initial-access-token-for-test")] {
        let resp = {
            let mut r = http().post(h.url("/register")).json(&doc);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().await.unwrap()
        };
        assert_eq!(resp.status(), 401, "{token:?}");
        assert!(resp.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    }
    let (status, body) = register(h, &doc, Some(TOKEN)).await;
    assert_eq!(status, 201, "{body}");
    // The initial token is not a registration access token.
    let resp = http()
        .get(h.url(&format!("/register/{}", body["client_id"].as_str().unwrap())))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

async fn read_update_and_delete_a_registration(h: &TestServer) {
    let reg = register_ok(h, json!({"redirect_uris": ["https://rp.example/cb"], "client_name": "First"})).await;
    let uri = reg["registration_client_uri"].as_str().unwrap().to_owned();
    let token = reg["registration_access_token"].as_str().unwrap().to_owned();
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    let secret = reg["client_secret"].as_str().unwrap().to_owned();

    let read = http().get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["cache-control"], "no-store");
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["client_id"], client_id.as_str());
    assert_eq!(body["client_name"], "First");
    assert!(body.get("client_secret").is_none() && body.get("registration_access_token").is_none());
    for bad in ["nope", reg["client_secret"].as_str().unwrap()] {
        assert_eq!(http().get(&uri).bearer_auth(bad).send().await.unwrap().status(), 401);
    }
    assert_eq!(http().get(&uri).send().await.unwrap().status(), 401);
    // Another client's token opens nothing here.
    let other = register_ok(h, json!({"redirect_uris": ["https://other.example/cb"]})).await;
    let other_token = other["registration_access_token"].as_str().unwrap();
    assert_eq!(http().get(&uri).bearer_auth(other_token).send().await.unwrap().status(), 401);

    // RFC 7592 §2.2: the whole document again, with the client_id (and the secret, if sent, the current one).
    let update = json!({"client_id": client_id, "client_secret": secret, "redirect_uris": ["https://rp.example/cb2"],
        "client_name": "Second", "default_max_age": 600});
    let resp = http().put(&uri).bearer_auth(&token).json(&update).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["redirect_uris"], json!(["https://rp.example/cb2"]));
    assert_eq!(body["client_name"], "Second");
    assert_eq!(body["default_max_age"], 600);
    let again: Value = http().get(&uri).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["client_name"], "Second");
    for bad in [
        json!({"redirect_uris": ["https://rp.example/cb"]}),
        json!({"client_id": "someone-else", "redirect_uris": ["https://rp.example/cb"]}),
        json!({"client_id": client_id, "client_secret": "wrong", "redirect_uris": ["https://rp.example/cb"]}),
    ] {
        let resp = http().put(&uri).bearer_auth(&token).json(&bad).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let resp = http()
        .put(&uri)
        .bearer_auth(&token)
        .json(&json!({"client_id": client_id, "redirect_uris": ["http://rp.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_redirect_uri");
    // The secret still works after the update.
    let (status, _) = introspect_basic(h, &client_id, &secret).await;
    assert_eq!(status, 200);

    assert_eq!(http().delete(&uri).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(http().get(&uri).bearer_auth(&token).send().await.unwrap().status(), 401);
    let (status, _) = introspect_basic(h, &client_id, &secret).await;
    assert_eq!(status, 401);
}

async fn introspect_basic(h: &TestServer, id: &str, secret: &str) -> (u16, Value) {
    let resp = http()
        .post(h.url("/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn invalid_metadata_is_refused_with_its_reason(h: &TestServer) {
    let cases = [
        (json!({}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://rp.example/cb#frag"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["http://rp.example/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["myapp:/cb"]}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "response_types": ["code id_token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "self_signed_tls_client_auth"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "id_token_signed_response_alg": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "id_token_signed_response_alg": "HS256"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "userinfo_signed_response_alg": "PS512"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}),
            "invalid_client_metadata",
        ),
        (
            json!({"subject_type": "pairwise", "redirect_uris": ["https://a.example/cb", "https://b.example/cb"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "logo_uri": "javascript:alert(1)"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "default_max_age": "soon"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "sector_identifier_uri": "http://sector.example/list"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "client_name": "a\u{0}b"}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ];
    for (doc, code) in cases {
        let (status, body) = register(h, &doc, None).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(code)), "{doc}: {body}");
        assert!(!body["error_description"].as_str().unwrap().is_empty());
    }
    let resp = http()
        .post(h.url("/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Nothing was half-written: only the clients the operator made exist.
    assert!(h.state.db.client_list().await.unwrap().is_empty());
}

async fn private_key_jwt_with_inline_jwks(h: &TestServer) {
    let key = es256_key("k1");
    let reg = register_ok(
        h,
        json!({"redirect_uris": ["http://127.0.0.1/jwt/cb"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.jwk]}}),
    )
    .await;
    assert!(reg.get("client_secret").is_none() || reg["client_secret"].is_string());
    let id = reg["client_id"].as_str().unwrap();
    let token_url = h.url("/token");

    let good = key.sign(&assertion_claims(h, id, &token_url));
    let (status, body) = token_with_assertion(h, &good).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // RFC 7523 §3 item 7: the same jti again is a replay.
    let (status, body) = token_with_assertion(h, &good).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("jti"));
    // The issuer is an accepted audience too; anything else is not.
    let (status, _) = token_with_assertion(h, &key.sign(&assertion_claims(h, id, &h.issuer))).await;
    assert_eq!(status, 400);
    for claims in [
        assertion_claims(h, id, "https://elsewhere.example/token"),
        {
            let mut c = assertion_claims(h, id, &token_url);
            c["exp"] = json!(h.clock.now() - 1);
            c
        },
        {
            let mut c = assertion_claims(h, id, &token_url);
            c["exp"] = json!(h.clock.now() + 3600);
            c
        },
        {
            let mut c = assertion_claims(h, id, &token_url);
            c.as_object_mut().unwrap().remove("jti");
            c
        },
        {
            let mut c = assertion_claims(h, id, &token_url);
            c["iss"] = json!("someone");
            c
        },
    ] {
        let (status, body) = token_with_assertion(h, &key.sign(&claims)).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{claims}: {body}");
    }
    // Another key with the same kid, and a secret where the key is registered: refused.
    let (status, _) = token_with_assertion(h, &es256_key("k1").sign(&assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 401);
    let (status, _) = token_with_assertion(h, &hs256("guess", &assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 401);
    // Only the registered method counts: no Basic for this client.
    let (status, _) = introspect_basic(h, id, "anything").await;
    assert_eq!(status, 401);
    // The assertion works at introspection too.
    let resp = http()
        .post(h.url("/introspect"))
        .form(&[
            ("token", "x"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &key.sign(&assertion_claims(h, id, &h.url("/introspect")))),
        ])
        .send()
        .await
        .unwrap();
    // The introspection URL is not an audience clef accepts (the token endpoint or issuer is).
    assert_eq!(resp.status(), 401);
    let resp = http()
        .post(h.url("/introspect"))
        .form(&[
            ("token", "x"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &key.sign(&assertion_claims(h, id, &h.issuer))),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["active"], false);
    // And at revocation (RFC 7009 §2.1 takes the token endpoint's client authentication).
    let resp = http()
        .post(h.url("/revoke"))
        .form(&[
            ("token", "x"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &key.sign(&assertion_claims(h, id, &token_url))),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn private_key_jwt_with_a_jwks_uri_and_key_rotation(h: &TestServer) {
    let (k1, k2) = (es256_key("k1"), es256_key("k2"));
    let served = Arc::new(Mutex::new(json!({"keys": [k1.jwk]})));
    let jwks_uri = serve_json(served.clone()).await;
    let reg = register_ok(
        h,
        json!({"redirect_uris": ["http://127.0.0.1/jwt/cb"], "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256", "jwks_uri": jwks_uri}),
    )
    .await;
    let id = reg["client_id"].as_str().unwrap();
    let token_url = h.url("/token");
    let (status, body) = token_with_assertion(h, &k1.sign(&assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 400, "{body}");

    // The client rotates to k2: within the minute the cached set stands, then an unknown
    // kid fetches the set again.
    *served.lock().unwrap() = json!({"keys": [k2.jwk]});
    let (status, _) = token_with_assertion(h, &k2.sign(&assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 401, "an unknown kid refetches at most once a minute");
    h.clock.advance(61);
    let (status, body) = token_with_assertion(h, &k2.sign(&assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 400, "{body}");
    // k1 is gone from the set now.
    h.clock.advance(61);
    let (status, _) = token_with_assertion(h, &k1.sign(&assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 401);
}

async fn client_secret_jwt_uses_the_secret(h: &TestServer) {
    let reg = register_ok(
        h,
        json!({"redirect_uris": ["http://127.0.0.1/jwt/cb"], "token_endpoint_auth_method": "client_secret_jwt"}),
    )
    .await;
    let id = reg["client_id"].as_str().unwrap();
    let secret = reg["client_secret"].as_str().unwrap();
    let token_url = h.url("/token");
    let (status, body) = token_with_assertion(h, &hs256(secret, &assertion_claims(h, id, &token_url))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, _) = token_with_assertion(h, &hs256("not-the-secret", &assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 401);
    // The secret itself, sent plainly, is not the registered method.
    let (status, _) = introspect_basic(h, id, secret).await;
    assert_eq!(status, 401);
    // It is stored sealed, never in clear.
    let client = h.state.db.client_get(id).await.unwrap().unwrap();
    let sealed = client.secret_sealed.unwrap();
    assert!(sealed.starts_with("v1.") && !sealed.contains(secret));

    // `clef keys rotate-secret` twice: sealed again after the first, so the second (which
    // drops the first key) loses nothing.
    let (db, keys, dir) = (&h.state.db, &h.state.hmac_key, h.state.config.keys_dir.clone());
    clef::secret_key::SecretKeys::rotate(&dir).unwrap();
    assert!(keys.reload().unwrap());
    // The housekeeping task does the same on its next tick; whichever runs first wins.
    clef::app::reseal_client_secrets(db, keys).await.unwrap();
    let resealed = db.client_get(id).await.unwrap().unwrap().secret_sealed.unwrap();
    assert_ne!(resealed, sealed);
    clef::secret_key::SecretKeys::rotate(&dir).unwrap();
    assert!(keys.reload().unwrap());
    let (status, body) = token_with_assertion(h, &hs256(secret, &assertion_claims(h, id, &token_url))).await;
    assert_eq!(status, 400, "{body}");
}

async fn pairwise_subjects_differ_across_sectors(h: &TestServer) {
    let user_id = h.user("ana@example.test", PW).await;
    let listed = Arc::new(Mutex::new(json!([
        "http://127.0.0.1/a/cb",
        "http://localhost/c/cb",
        "http://127.0.0.1/c2/cb"
    ])));
    let sector_uri = serve_json(listed).await;
    let a = register_ok(
        h,
        json!({"redirect_uris": ["http://127.0.0.1/a/cb"], "subject_type": "pairwise", "sector_identifier_uri": sector_uri}),
    )
    .await;
    // Two hosts, one sector: the sector_identifier_uri's list holds both.
    let c = register_ok(
        h,
        json!({"redirect_uris": ["http://localhost/c/cb", "http://127.0.0.1/c2/cb"], "subject_type": "pairwise",
            "sector_identifier_uri": sector_uri}),
    )
    .await;
    // Its own sector: the host of its redirect URI.
    let b_reg = register_ok(h, json!({"redirect_uris": ["http://localhost/b/cb"], "subject_type": "pairwise"})).await;
    let public = register_ok(h, json!({"redirect_uris": ["http://127.0.0.1/p/cb"]})).await;
    // A list that leaves a redirect URI out is refused.
    let (status, body) = register(
        h,
        &json!({"redirect_uris": ["http://127.0.0.1/x/cb"], "subject_type": "pairwise", "sector_identifier_uri": sector_uri}),
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client_metadata")), "{body}");

    // Its sector is fixed: an update that would move it is refused, one that keeps it passes.
    let a_uri = a["registration_client_uri"].as_str().unwrap();
    let a_token = a["registration_access_token"].as_str().unwrap();
    let moved = json!({"client_id": a["client_id"], "redirect_uris": ["http://localhost/a/cb"], "subject_type": "pairwise"});
    let resp = http().put(a_uri).bearer_auth(a_token).json(&moved).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    let kept = json!({"client_id": a["client_id"], "redirect_uris": ["http://127.0.0.1/a/cb"], "subject_type": "pairwise",
        "sector_identifier_uri": sector_uri, "client_name": "A"});
    let resp = http().put(a_uri).bearer_auth(a_token).json(&kept).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let browser = h.browser();
    let mut subs = Vec::new();
    for (reg, cb) in [
        (&a, "http://127.0.0.1/a/cb"),
        (&c, "http://localhost/c/cb"),
        (&b_reg, "http://localhost/b/cb"),
        (&public, "http://127.0.0.1/p/cb"),
    ] {
        let rp = Rp::discover(&h.issuer, &created(reg), cb).await;
        let (sub, at) = login_sub(h, &rp, &browser).await;
        // The same sub everywhere it appears: userinfo and introspection too.
        assert_eq!(rp.userinfo(&at).await.subject().as_str(), sub);
        let intro: Value = http()
            .post(h.url("/introspect"))
            .basic_auth(&rp.client_id, rp.client_secret.as_deref())
            .form(&[("token", at.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(intro["sub"], sub.as_str());
        subs.push(sub);
    }
    assert_eq!(subs[0], subs[1], "one sector, one sub");
    assert_ne!(subs[0], subs[2], "another sector, another sub");
    assert_ne!(subs[0], user_id);
    assert_ne!(subs[2], user_id);
    assert_eq!(subs[3], user_id, "a public client sees the local id");
    // Same sector as b (localhost), and a refresh keeps the sub.
    let d = register_ok(
        h,
        json!({"redirect_uris": ["http://localhost/d/cb"], "subject_type": "pairwise",
            "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    let rp = Rp::discover(&h.issuer, &created(&d), "http://localhost/d/cb").await;
    let start = rp.start(&["email"]);
    let back = browser.authorize(&start.url, "ana@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    assert_eq!(rp.id_claims(&tokens, &start.nonce).subject().as_str(), subs[2]);
    let refreshed = rp.refresh(&crate::support::rp::refresh_token(&tokens).unwrap()).await.unwrap();
    let id_token = openidconnect::TokenResponse::id_token(&refreshed).unwrap().to_string();
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&clef::secret::b64url_decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], subs[2].as_str());
    // Stable: a second login through the first client gives the same sub again.
    let rp = Rp::discover(&h.issuer, &created(&a), "http://127.0.0.1/a/cb").await;
    assert_eq!(login_sub(h, &rp, &h.browser()).await.0, subs[0]);
}

async fn userinfo_as_a_signed_jwt(h: &TestServer) {
    let user_id = h.user("ana@example.test", PW).await;
    for alg in ["ES256", "RS256"] {
        let reg = register_ok(
            h,
            json!({"redirect_uris": ["http://127.0.0.1/ui/cb"], "userinfo_signed_response_alg": alg,
                "id_token_signed_response_alg": alg}),
        )
        .await;
        assert_eq!(reg["userinfo_signed_response_alg"], alg);
        let rp = Rp::discover(&h.issuer, &created(&reg), "http://127.0.0.1/ui/cb").await;
        let (sub, at) = login_sub(h, &rp, &h.browser()).await;
        assert_eq!(sub, user_id);
        let resp = http().get(h.url("/userinfo")).bearer_auth(&at).send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "application/jwt");
        let jwt = resp.text().await.unwrap();
        // Verified against the published JWKS, by our parser and by the openidconnect crate.
        let jwks: Value = http().get(h.url("/jwks")).send().await.unwrap().json().await.unwrap();
        let keys = clef::oauth::jose::parse_jwks(&jwks).unwrap();
        let jws = clef::oauth::jose::decode(&jwt).unwrap();
        assert_eq!(jws.alg, alg);
        jws.verify_with_keys(&keys, &[alg]).unwrap();
        assert_eq!(jws.payload["iss"], h.issuer.as_str());
        assert_eq!(jws.payload["aud"], rp.client_id.as_str());
        assert_eq!(jws.payload["sub"], user_id.as_str());
        assert_eq!(jws.payload["email"], "ana@example.test");
        // The openidconnect crate's userinfo verifier accepts RS256 unless told otherwise.
        if alg == "RS256" {
            let info = rp.userinfo(&at).await;
            assert_eq!(info.subject().as_str(), user_id);
        }
    }
}

async fn default_max_age_forces_a_new_login(h: &TestServer) {
    h.user("ana@example.test", PW).await;
    let reg = register_ok(
        h,
        json!({"redirect_uris": ["http://127.0.0.1/age/cb"], "default_max_age": 60, "require_auth_time": true}),
    )
    .await;
    let rp = Rp::discover(&h.issuer, &created(&reg), "http://127.0.0.1/age/cb").await;
    let b = h.browser();
    let start = rp.start(&["email"]);
    let back = b.authorize(&start.url, "ana@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let first = rp.id_claims(&tokens, &start.nonce).auth_time().unwrap();
    // Within the age the session answers at once.
    let page = b.get(&rp.start(&["email"]).url).await;
    page.assert_redirect_to("http://127.0.0.1/age/cb");
    // Past it, the client's default_max_age sends the user to the login page.
    h.clock.advance(120);
    let start = rp.start(&["email"]);
    let page = b.follow(b.get(&start.url).await).await;
    assert!(page.body.contains("autocomplete=\"current-password\""), "{}", page.body);
    let back = b.authorize(&start.url, "ana@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let second = rp.id_claims(&tokens, &start.nonce).auth_time().unwrap();
    assert!(second > first, "auth_time moved on with the new login");
    // An explicit max_age still wins over the default.
    let page = b.get(&rp.start_with(&["email"], &[("max_age", "3600")]).url).await;
    page.assert_redirect_to("http://127.0.0.1/age/cb");
}

/// `clef clients create --auth-method private_key_jwt` with `--jwks-file` or `--jwks-uri`.
async fn operator_created_private_key_jwt_clients(h: &TestServer) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_clef"))
            .args(args)
            .current_dir(h.dir())
            .env("CLEF_DATABASE_URL", &h.state.config.database_url)
            .env("CLEF_KEYS_DIR", &h.state.config.keys_dir)
            .env("CLEF_LOG", "warn,sqlx::query=error")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file_key = es256_key("file");
    let jwks_file = h.dir().join("client-jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [file_key.jwk]}).to_string()).unwrap();
    let base = [
        "clients",
        "create",
        "--name",
        "svc",
        "--redirect-uri",
        "http://127.0.0.1/jwt/cb",
        "--json",
    ];
    let (ok, out, err) = run(&[
        &base[..],
        &["--auth-method", "private_key_jwt", "--jwks-file", jwks_file.to_str().unwrap()],
    ]
    .concat());
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(created.get("client_secret").is_none(), "a key-authenticated client gets no secret");
    let id = created["client_id"].as_str().unwrap();
    let (status, body) = token_with_assertion(h, &file_key.sign(&assertion_claims(h, id, &h.url("/token")))).await;
    assert_eq!(status, 400, "{body}");

    let uri_key = es256_key("uri");
    let jwks_uri = serve_json(Arc::new(Mutex::new(json!({"keys": [uri_key.jwk]})))).await;
    let (ok, out, err) = run(&[&base[..], &["--auth-method", "private_key_jwt", "--jwks-uri", &jwks_uri]].concat());
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(out.trim()).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = token_with_assertion(h, &uri_key.sign(&assertion_claims(h, &id, &h.url("/token")))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = token_with_assertion(h, &file_key.sign(&assertion_claims(h, &id, &h.url("/token")))).await;
    assert_eq!(status, 401);

    for bad in [
        vec!["--auth-method", "private_key_jwt"],
        vec!["--auth-method", "tls_client_auth"],
        vec!["--auth-method", "private_key_jwt", "--jwks-uri", "http://keys.example/jwks"],
        vec!["--auth-method", "none"],
    ] {
        let (ok, _, err) = run(&[&base[..], &bad[..]].concat());
        assert!(!ok && !err.is_empty(), "{bad:?}");
    }
}

/// A registered `scope` bounds what the client may ask for (RFC 7591 §2).
async fn registered_scope_limits_requests(h: &TestServer) {
    h.user("ana@example.test", PW).await;
    let reg = register_ok(h, json!({"redirect_uris": ["http://127.0.0.1/sc/cb"], "scope": "openid email"})).await;
    assert_eq!(reg["scope"], "openid email");
    let rp = Rp::discover(&h.issuer, &created(&reg), "http://127.0.0.1/sc/cb").await;
    let start = rp.start(&["email", "profile"]);
    let back = h.browser().authorize(&start.url, "ana@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    use openidconnect::OAuth2TokenResponse;
    let granted: Vec<String> = tokens.scopes().unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(granted, ["openid", "email"]);
}

async fn registration_is_off_by_default(h: &TestServer) {
    let doc: Value = serde_json::from_str(&h.browser().get("/.well-known/openid-configuration").await.body).unwrap();
    assert!(doc.get("registration_endpoint").is_none());
    let (status, body) = register(h, &json!({"redirect_uris": ["https://rp.example/cb"]}), None).await;
    assert_eq!(status, 404, "{body}");
}

registration_e2e! {
    open_registration_and_a_full_code_flow: "open",
    initial_access_token_is_required: format!("token:{}", super::TOKEN),
    read_update_and_delete_a_registration: "open",
    invalid_metadata_is_refused_with_its_reason: "open",
    private_key_jwt_with_inline_jwks: "open",
    private_key_jwt_with_a_jwks_uri_and_key_rotation: "open",
    client_secret_jwt_uses_the_secret: "open",
    pairwise_subjects_differ_across_sectors: "open",
    userinfo_as_a_signed_jwt: "open",
    default_max_age_forces_a_new_login: "open",
    registration_is_off_by_default: "off",
    operator_created_private_key_jwt_clients: "off",
    registered_scope_limits_requests: "open",
}
