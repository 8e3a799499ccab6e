//! The relying party: the `openidconnect` crate doing discovery, PKCE, code exchange, ID token
//! verification against our JWKS, and userinfo — what a real app would do.

use clef::admin::CreatedClient;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse,
};

pub type Oidc = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

pub struct Rp {
    pub oidc: Oidc,
    pub http: reqwest::Client,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
}

pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

impl Rp {
    pub async fn discover(issuer: &str, created: &CreatedClient, redirect_uri: &str) -> Rp {
        // Redirects off: a provider must never bounce back-channel calls (SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.to_owned()).unwrap(), &http)
            .await
            .unwrap();
        let oidc = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(created.client_id.clone()),
            created.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).unwrap());
        Rp {
            oidc,
            http,
            client_id: created.client_id.clone(),
            client_secret: created.client_secret.clone(),
            redirect_uri: redirect_uri.to_owned(),
        }
    }

    pub fn start(&self, scopes: &[&str]) -> Started {
        self.start_with(scopes, &[])
    }

    pub fn start_with(&self, scopes: &[&str], extra: &[(&str, &str)]) -> Started {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = self
            .oidc
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        for s in scopes {
            req = req.add_scope(Scope::new((*s).to_owned()));
        }
        for (k, v) in extra {
            req = req.add_extra_param(*k, *v);
        }
        let (url, state, nonce) = req.url();
        Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce,
            verifier,
        }
    }

    pub async fn exchange(&self, code: &str, verifier: PkceCodeVerifier) -> CoreTokenResponse {
        self.oidc
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .unwrap()
    }

    pub fn id_claims(&self, tokens: &CoreTokenResponse, nonce: &Nonce) -> CoreIdTokenClaims {
        let id_token = tokens.id_token().expect("an id_token");
        let verifier = self.oidc.id_token_verifier();
        let claims = id_token.claims(&verifier, nonce).unwrap().clone();
        // OIDC Core §3.1.3.8: the RP checks at_hash against the access token.
        let expected = openidconnect::AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected));
        claims
    }

    pub async fn userinfo(&self, access_token: &str) -> CoreUserInfoClaims {
        self.oidc
            .user_info(AccessToken::new(access_token.to_owned()), None)
            .unwrap()
            .request_async(&self.http)
            .await
            .unwrap()
    }

    pub async fn refresh(&self, token: &str) -> Result<CoreTokenResponse, String> {
        self.oidc
            .exchange_refresh_token(&RefreshToken::new(token.to_owned()))
            .unwrap()
            .request_async(&self.http)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    /// A raw form POST to the token endpoint, for the checks the library would refuse to make.
    pub async fn token_raw(
        &self,
        issuer: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut r = self.http.post(format!("{issuer}/token")).form(form);
        if let Some((u, p)) = basic {
            r = r.basic_auth(u, Some(p));
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

pub fn access_token(t: &CoreTokenResponse) -> String {
    t.access_token().secret().clone()
}

pub fn refresh_token(t: &CoreTokenResponse) -> Option<String> {
    t.refresh_token().map(|r| r.secret().clone())
}
