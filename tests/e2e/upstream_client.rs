//! The upstream OpenID Connect client (`clef::upstream`) against a real provider: a second
//! clef on loopback, driven through its own login pages.

use std::time::{Duration, Instant};

use clef::admin::ClientSpec;
use clef::config::Upstream;
use clef::keys::{Alg, Keys};
use clef::secret::Secret;
use clef::upstream::{HTTP_TIMEOUT, UnverifiedIdToken, UpstreamClient, UpstreamError};
use url::Url;

use crate::support::TestServer;

const EMAIL: &str = "fed@example.test";
const PASSWORD: &str = "correct horse battery";
const CALLBACK: &str = "http://127.0.0.1/login/callback/corp";

/// `h` as an upstream: one user, and clef-the-relying-party registered as a client.
async fn upstream_of(h: &TestServer) -> Upstream {
    h.user(EMAIL, PASSWORD).await;
    let created = h
        .client(ClientSpec {
            name: "downstream clef".into(),
            redirect_uris: vec![CALLBACK.into()],
            skip_consent: true,
            ..ClientSpec::default()
        })
        .await;
    Upstream {
        id: "corp".into(),
        display_name: "Corp".into(),
        issuer: h.issuer.clone(),
        client_id: created.client_id,
        client_secret: Secret::new(created.client_secret.unwrap()),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        button_label: "Continue with Corp".into(),
        trust_email_verified: true,
        trust_mfa: false,
        hosted_domain: None,
    }
}

fn client(upstream: Upstream) -> UpstreamClient {
    UpstreamClient::new(upstream, Url::parse(CALLBACK).unwrap()).unwrap()
}

/// Logs in at the upstream and returns the code its redirect carries, checking `state`.
async fn code_for(h: &TestServer, c: &UpstreamClient) -> (String, clef::upstream::PendingUpstream) {
    let start = c.authorization_url().await.unwrap();
    let back = h.browser().authorize(start.url.as_str(), EMAIL, PASSWORD).await;
    back.assert_redirect_to(CALLBACK);
    assert_eq!(back.location_param("state").as_deref(), Some(start.pending.state.expose()));
    (back.location_param("code").unwrap(), start.pending)
}

fn kid(token: &str) -> String {
    let header: serde_json::Value =
        serde_json::from_slice(&clef::secret::b64url_decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Discovery, the authorization URL, the upstream's pages, the exchange, the identity.
async fn round_trip(h: &TestServer) {
    let c = client(upstream_of(h).await);
    c.discover().await.unwrap();
    let start = c.authorization_url().await.unwrap();
    let q: std::collections::HashMap<String, String> = start.url.query_pairs().into_owned().collect();
    assert!(start.url.as_str().starts_with(&h.url("/authorize")), "{}", start.url);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["state"], start.pending.state.expose());
    assert_eq!(q["nonce"], start.pending.nonce.expose());
    assert_eq!(q["scope"].split(' ').collect::<Vec<_>>(), ["openid", "email", "profile"]);
    assert!(!q.contains_key("hd"), "no hosted domain, no hint");
    assert!(
        !start.url.as_str().contains(start.pending.pkce_verifier.expose()),
        "only the challenge travels"
    );

    let back = h.browser().authorize(start.url.as_str(), EMAIL, PASSWORD).await;
    let code = back.location_param("code").unwrap();
    let id = c.finish(&code, &start.pending, h.clock.now()).await.unwrap();
    assert_eq!(id.issuer, h.issuer);
    assert!(!id.subject.is_empty());
    assert_eq!(id.email.as_deref(), Some(EMAIL));
    assert_eq!(id.name.as_deref(), Some("Ana Test"));
    assert!(id.amr.iter().any(|a| a == "pwd"), "{:?}", id.amr);
    assert!(!id.mfa_trusted(c.upstream()));

    // The same login twice gives the same (issuer, sub).
    let (code, pending) = code_for(h, &c).await;
    let again = c.finish(&code, &pending, h.clock.now()).await.unwrap();
    assert_eq!((again.issuer, again.subject), (id.issuer.clone(), id.subject.clone()));

    // A code is single-use at the upstream: the replay is refused in the protocol's words.
    assert_eq!(
        c.finish(&code, &pending, h.clock.now()).await.unwrap_err(),
        UpstreamError::Denied("invalid_grant".into())
    );
}

/// The nonce binds the ID token to this login attempt (OIDC Core §3.1.3.7 step 11); a
/// hosted domain demands `hd`; a changed byte breaks the signature.
async fn wrong_nonce_hd_and_tampering_rejected(h: &TestServer) {
    let mut upstream = upstream_of(h).await;
    let c = client(upstream.clone());
    let (code, pending) = code_for(h, &c).await;
    let token = c.exchange(&code, &pending.pkce_verifier).await.unwrap();
    assert!(!format!("{token:?}").contains(token.as_str()), "Debug hides the token");
    let err = c.verify(&token, &Secret::new("another-nonce"), h.clock.now()).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::InvalidToken(r) if r.contains("nonce")), "{err:?}");
    c.verify(&token, &pending.nonce, h.clock.now()).await.unwrap();

    // A token issued in the future (a skewed or forged iat) and an expired one.
    let err = c.verify(&token, &pending.nonce, h.clock.now() - 3600).await.unwrap_err();
    assert_eq!(err, UpstreamError::InvalidToken("iat is in the future".into()));

    // Another subject with the original signature.
    let parts: Vec<&str> = token.as_str().split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&clef::secret::b64url_decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "someone-else".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        clef::secret::b64url(&serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let err = c
        .verify(&UnverifiedIdToken::new(forged), &pending.nonce, h.clock.now())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, UpstreamError::InvalidToken(r) if r.starts_with("signature")),
        "{err:?}"
    );
    for junk in ["", "a.b", "not.a.jwt"] {
        let err = c
            .verify(&UnverifiedIdToken::new(junk), &pending.nonce, h.clock.now())
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::InvalidToken(_)), "{junk}: {err:?}");
    }

    // With a hosted domain the hint is sent, and a token without `hd` is refused.
    upstream.hosted_domain = Some("example.test".into());
    let c = client(upstream);
    let (code, pending) = code_for(h, &c).await;
    let start = c.authorization_url().await.unwrap();
    assert!(start.url.query_pairs().any(|(k, v)| k == "hd" && v == "example.test"));
    let err = c.finish(&code, &pending, h.clock.now()).await.unwrap_err();
    assert_eq!(err, UpstreamError::InvalidToken("hd is not the configured hosted domain".into()));
}

/// One change to an ID token's claims.
type Edit<'a> = dyn Fn(&mut serde_json::Value) + 'a;

/// Signed by the upstream's own key, a token with one claim wrong is refused: `iss`, `aud`,
/// `azp`, `exp`, `sub` (OIDC Core §3.1.3.7 steps 2, 3, 4, 5, 9; §2).
async fn each_claim_is_checked(h: &TestServer) {
    let upstream = upstream_of(h).await;
    let c = client(upstream.clone());
    let (code, pending) = code_for(h, &c).await;
    let genuine = c.exchange(&code, &pending.pkce_verifier).await.unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&clef::secret::b64url_decode(genuine.as_str().split('.').nth(1).unwrap()).unwrap()).unwrap();
    let sign = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = claims.clone();
        edit(&mut v);
        UnverifiedIdToken::new(h.state.keys.get().sign(Alg::RS256, "JWT", &v).unwrap())
    };
    // The control: re-signed unchanged, it verifies.
    c.verify(&sign(&|_| {}), &pending.nonce, h.clock.now()).await.unwrap();
    let now = h.clock.now();
    let client_id = upstream.client_id.clone();
    let cases: Vec<(&str, Box<Edit<'_>>, &str)> = vec![
        ("iss", Box::new(|v| v["iss"] = "https://evil.example".into()), "issuer"),
        ("aud", Box::new(|v| v["aud"] = "another-client".into()), "audiences"),
        (
            "extra aud",
            Box::new(|v| v["aud"] = serde_json::json!([client_id, "another-client"])),
            "audiences",
        ),
        ("azp", Box::new(|v| v["azp"] = "another-client".into()), "azp"),
        ("exp", Box::new(move |v| v["exp"] = (now - 10).into()), "xpired"),
        ("empty sub", Box::new(|v| v["sub"] = "".into()), "sub"),
        ("long sub", Box::new(|v| v["sub"] = "s".repeat(256).into()), "sub"),
    ];
    for (what, edit, word) in cases {
        let err = c.verify(&sign(&*edit), &pending.nonce, now).await.expect_err(what);
        assert!(
            matches!(&err, UpstreamError::InvalidToken(r) if r.to_lowercase().contains(&word.to_lowercase())),
            "{what}: {err:?}"
        );
    }
}

/// A token with every right claim, signed by a third provider's key, is refused.
async fn token_signed_by_another_provider_rejected(h: &TestServer) {
    let upstream = upstream_of(h).await;
    let c = client(upstream.clone()).with_refresh_interval(Duration::ZERO);
    let (code, pending) = code_for(h, &c).await;
    let genuine = c.exchange(&code, &pending.pkce_verifier).await.unwrap();
    let parts: Vec<&str> = genuine.as_str().split('.').collect();
    let claims: serde_json::Value = serde_json::from_slice(&clef::secret::b64url_decode(parts[1]).unwrap()).unwrap();

    // The harness shares one key set between servers, so the third provider gets its own.
    let keys_dir = tempfile::tempdir().unwrap();
    let third = TestServer::start_with(h.backend, |raw| raw.keys_dir = Some(keys_dir.path().display().to_string())).await;
    let forged = third.state.keys.get().sign(Alg::RS256, "JWT", &claims).unwrap();
    assert_ne!(kid(&forged), kid(genuine.as_str()));
    let err = c
        .verify(&UnverifiedIdToken::new(forged.clone()), &pending.nonce, h.clock.now())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, UpstreamError::InvalidToken(r) if r.starts_with("signature")),
        "{err:?}"
    );

    // The same key id as the upstream's does not help either.
    let header: serde_json::Value =
        serde_json::from_slice(&clef::secret::b64url_decode(forged.split('.').next().unwrap()).unwrap()).unwrap();
    let mut header = header;
    header["kid"] = kid(genuine.as_str()).into();
    let f: Vec<&str> = forged.split('.').collect();
    let relabelled = format!("{}.{}.{}", clef::secret::b64url(&serde_json::to_vec(&header).unwrap()), f[1], f[2]);
    let err = c
        .verify(&UnverifiedIdToken::new(relabelled), &pending.nonce, h.clock.now())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, UpstreamError::InvalidToken(r) if r.starts_with("signature")),
        "{err:?}"
    );
    c.verify(&genuine, &pending.nonce, h.clock.now()).await.unwrap();
    third.finish().await;
}

/// The upstream rotates its keys after the client cached its JWKS: the unknown `kid`
/// refreshes the cache and the new token verifies; within the refresh interval it does not.
async fn key_rotation_refreshes_jwks(h: &TestServer) {
    let upstream = upstream_of(h).await;
    let fresh = client(upstream.clone()).with_refresh_interval(Duration::ZERO);
    let throttled = client(upstream);
    let (code, pending) = code_for(h, &fresh).await;
    let before = fresh.exchange(&code, &pending.pkce_verifier).await.unwrap();
    fresh.verify(&before, &pending.nonce, h.clock.now()).await.unwrap();
    throttled.discover().await.unwrap();

    // Twice: the JWKS already publishes the next key, so one rotation signs with a known kid.
    let dir = h.dir().join("keys");
    for _ in 0..2 {
        Keys::rotate(&dir, h.state.config.max_signed_lifetime(), h.clock.now()).unwrap();
    }
    assert!(h.state.keys.reload(h.clock.now()).unwrap());

    let (code, pending) = code_for(h, &fresh).await;
    let after = fresh.exchange(&code, &pending.pkce_verifier).await.unwrap();
    assert_ne!(kid(after.as_str()), kid(before.as_str()));
    let id = fresh.verify(&after, &pending.nonce, h.clock.now()).await.unwrap();
    assert_eq!(id.issuer, h.issuer);
    // The old token's key is still published, and verifies from the refreshed cache.
    let err = fresh.verify(&before, &pending.nonce, h.clock.now()).await.unwrap_err();
    assert!(
        matches!(&err, UpstreamError::InvalidToken(r) if r.contains("nonce")),
        "old key still known: {err:?}"
    );

    // A client that fetched the JWKS moments ago does not refetch on every unknown kid.
    let err = throttled.verify(&after, &pending.nonce, h.clock.now()).await.unwrap_err();
    assert!(
        matches!(&err, UpstreamError::InvalidToken(r) if r.starts_with("signature")),
        "{err:?}"
    );
}

/// Down, stopped mid-login, or silent: `Unreachable`, within the timeout.
async fn upstream_down_is_unreachable(h: &TestServer) {
    let mut upstream = upstream_of(h).await;

    // Nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    upstream.issuer = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    assert_eq!(client(upstream.clone()).discover().await.unwrap_err(), UpstreamError::Unreachable);
    assert!(started.elapsed() < HTTP_TIMEOUT);

    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    upstream.issuer = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let started = Instant::now();
    let c = client(upstream.clone());
    assert_eq!(c.authorization_url().await.unwrap_err(), UpstreamError::Unreachable);
    let took = started.elapsed();
    assert!(
        took >= HTTP_TIMEOUT - Duration::from_millis(100) && took < HTTP_TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    hold.abort();

    // Stopped between the redirect and the callback.
    let other = TestServer::start(h.backend).await;
    let c = client(upstream_of(&other).await);
    let (code, pending) = code_for(&other, &c).await;
    other.finish().await;
    let started = Instant::now();
    assert_eq!(
        c.finish(&code, &pending, h.clock.now()).await.unwrap_err(),
        UpstreamError::Unreachable
    );
    assert!(started.elapsed() < HTTP_TIMEOUT + Duration::from_secs(1));
}

crate::e2e!(
    round_trip,
    wrong_nonce_hd_and_tampering_rejected,
    each_claim_is_checked,
    token_signed_by_another_provider_rejected,
    key_rotation_refreshes_jwks,
    upstream_down_is_unreachable,
);
