//! The client side of OpenID Connect against an upstream provider (Google, a company IdP):
//! discovery, the authorization URL, the code exchange and full ID token verification.

mod identity;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, DiscoveryError, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    StandardErrorResponse, TokenResponse, reqwest,
};
use tokio::sync::Mutex;
use url::Url;

use crate::config::Upstream;
use crate::secret::Secret;

pub use identity::UpstreamIdentity;

/// Every call to the upstream gives up after this long: a user is waiting on a page, and a
/// slow provider must end on a clear error, not a hung login (issue 9: "a few seconds").
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(4);

/// An ID token naming an unknown `kid` refetches discovery and JWKS at most this often, so
/// tokens with made-up key ids cannot make us hammer the upstream (OIDC Core §10.1.1).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// The clock skew allowed on `iat` (OIDC Core §3.1.3.7 step 10 leaves the bound to the client).
pub(crate) const IAT_SKEW: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No answer in time: down, refusing connections, or slower than `HTTP_TIMEOUT`.
    #[error("the upstream cannot be reached")]
    Unreachable,
    /// An answer that is not what the protocol says (bad JSON, wrong status, no ID token).
    #[error("the upstream gave a malformed answer")]
    BadResponse,
    /// The upstream refused: an OAuth error code such as `invalid_grant` or `access_denied`.
    #[error("the upstream refused: {0}")]
    Denied(String),
    /// The ID token failed verification; the reason names the check, never the token.
    #[error("the upstream ID token was rejected: {0}")]
    InvalidToken(String),
}

/// The crate's client once discovery has set the authorization endpoint.
type Oidc = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// Discovery plus JWKS, as fetched at `fetched`.
struct Discovered {
    oidc: Oidc,
    fetched: Instant,
}

/// An ID token as it came from the token endpoint; `Debug` never prints it.
pub struct UnverifiedIdToken(Secret);

impl UnverifiedIdToken {
    pub fn new(raw: impl Into<String>) -> Self {
        UnverifiedIdToken(Secret::new(raw))
    }
    pub fn as_str(&self) -> &str {
        self.0.expose()
    }
}

impl std::fmt::Debug for UnverifiedIdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnverifiedIdToken([redacted])")
    }
}

/// What the login attempt keeps between the redirect and the callback. `state` and `nonce`
/// bind the callback to this attempt (RFC 6749 §10.12, OIDC Core §3.1.2.1); the verifier is
/// the PKCE secret (RFC 7636 §4.1).
#[derive(Debug, Clone)]
pub struct PendingUpstream {
    pub state: Secret,
    pub nonce: Secret,
    pub pkce_verifier: Secret,
}

/// Where to send the browser, and what to keep for the callback.
#[derive(Debug, Clone)]
pub struct AuthorizationStart {
    pub url: Url,
    pub pending: PendingUpstream,
}

/// One upstream provider: its settings, an HTTP client, and its cached metadata.
pub struct UpstreamClient {
    upstream: Upstream,
    redirect_uri: RedirectUrl,
    http: reqwest::Client,
    discovered: Mutex<Option<Arc<Discovered>>>,
    min_refresh: Duration,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("upstream", &self.upstream.id)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// `redirect_uri` is clef's callback for this upstream, as registered there.
    pub fn new(upstream: Upstream, redirect_uri: Url) -> Result<UpstreamClient, UpstreamError> {
        // Redirects off: back-channel calls are never bounced elsewhere (SSRF, OIDC Discovery §4).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|_| UpstreamError::Unreachable)?;
        Ok(UpstreamClient {
            upstream,
            redirect_uri: RedirectUrl::from_url(redirect_uri),
            http,
            discovered: Mutex::new(None),
            min_refresh: MIN_REFRESH_INTERVAL,
        })
    }

    /// Replaces `MIN_REFRESH_INTERVAL` (tests rotate keys within seconds).
    pub fn with_refresh_interval(mut self, interval: Duration) -> UpstreamClient {
        self.min_refresh = interval;
        self
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Fetches discovery and JWKS unless cached; start-up may call it to check the set-up.
    pub async fn discover(&self) -> Result<(), UpstreamError> {
        self.current().await.map(|_| ())
    }

    async fn current(&self) -> Result<Arc<Discovered>, UpstreamError> {
        let mut slot = self.discovered.lock().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let fresh = Arc::new(self.fetch().await?);
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// A newer copy than `seen`, fetched now unless one was fetched within `min_refresh`;
    /// `None` when it is too soon.
    async fn refreshed(&self, seen: &Arc<Discovered>) -> Result<Option<Arc<Discovered>>, UpstreamError> {
        let mut slot = self.discovered.lock().await;
        if let Some(d) = slot.as_ref()
            && !Arc::ptr_eq(d, seen)
        {
            // Another call refreshed while this one waited for the lock.
            return Ok(Some(d.clone()));
        }
        if seen.fetched.elapsed() < self.min_refresh {
            return Ok(None);
        }
        let fresh = Arc::new(self.fetch().await?);
        *slot = Some(fresh.clone());
        Ok(Some(fresh))
    }

    async fn fetch(&self) -> Result<Discovered, UpstreamError> {
        let issuer = IssuerUrl::new(self.upstream.issuer.clone()).map_err(|_| UpstreamError::BadResponse)?;
        // discover_async checks that the document names this issuer (OIDC Discovery §4.3) and
        // fetches its jwks_uri.
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| self.discovery_error(e))?;
        let oidc = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.upstream.client_id.clone()),
            Some(ClientSecret::new(self.upstream.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        tracing::info!(upstream = %self.upstream.id, "upstream discovery and keys fetched");
        Ok(Discovered {
            oidc,
            fetched: Instant::now(),
        })
    }

    fn discovery_error<RE: std::error::Error + 'static>(&self, e: DiscoveryError<RE>) -> UpstreamError {
        let (err, what) = match e {
            DiscoveryError::Request(_) => (UpstreamError::Unreachable, "no answer"),
            DiscoveryError::Response(..) => (UpstreamError::BadResponse, "unexpected status"),
            DiscoveryError::Parse(_) => (UpstreamError::BadResponse, "not a discovery document"),
            DiscoveryError::Validation(_) => (UpstreamError::BadResponse, "discovery names another issuer"),
            _ => (UpstreamError::BadResponse, "discovery failed"),
        };
        tracing::warn!(upstream = %self.upstream.id, problem = what, "upstream discovery failed");
        err
    }

    /// The authorization-code request with PKCE S256, `state` and `nonce` (OIDC Core §3.1.2.1),
    /// plus Google's `hd` hint when a hosted domain is set.
    pub async fn authorization_url(&self) -> Result<AuthorizationStart, UpstreamError> {
        let d = self.current().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d
            .oidc
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        // The crate always sends `openid`.
        for s in self.upstream.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if let Some(hd) = &self.upstream.hosted_domain {
            req = req.add_extra_param("hd", hd.clone());
        }
        let (url, state, nonce) = req.url();
        Ok(AuthorizationStart {
            url,
            pending: PendingUpstream {
                state: Secret::new(state.secret().clone()),
                nonce: Secret::new(nonce.secret().clone()),
                pkce_verifier: Secret::new(verifier.secret().clone()),
            },
        })
    }

    /// Trades the callback's code for the upstream's tokens and keeps only the ID token.
    pub async fn exchange(&self, code: &str, pkce_verifier: &Secret) -> Result<UnverifiedIdToken, UpstreamError> {
        let d = self.current().await?;
        let request = d
            .oidc
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| UpstreamError::BadResponse)?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_owned()));
        let tokens = request.request_async(&self.http).await.map_err(|e| self.token_error(e))?;
        let id_token = tokens.id_token().ok_or_else(|| {
            tracing::warn!(upstream = %self.upstream.id, "upstream token response without an id_token");
            UpstreamError::BadResponse
        })?;
        Ok(UnverifiedIdToken::new(id_token.to_string()))
    }

    fn token_error<RE: std::error::Error + 'static>(
        &self,
        e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
    ) -> UpstreamError {
        // Only the error code is kept: descriptions and bodies may echo what was sent.
        let err = match e {
            RequestTokenError::ServerResponse(r) => UpstreamError::Denied(r.error().to_string()),
            RequestTokenError::Request(_) => UpstreamError::Unreachable,
            RequestTokenError::Parse(..) | RequestTokenError::Other(_) => UpstreamError::BadResponse,
        };
        tracing::warn!(upstream = %self.upstream.id, error = %err, "upstream code exchange failed");
        err
    }

    /// OIDC Core §3.1.3.7: signature against the upstream's JWKS (refreshed once when the
    /// token names an unknown `kid`, §10.1.1), `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`,
    /// and `hd` when a hosted domain is set.
    pub async fn verify(&self, token: &UnverifiedIdToken, nonce: &Secret, now: i64) -> Result<UpstreamIdentity, UpstreamError> {
        let id_token: CoreIdToken = token
            .as_str()
            .parse()
            .map_err(|_| UpstreamError::InvalidToken("not a signed JWT".into()))?;
        let nonce = Nonce::new(nonce.expose().to_owned());
        let d = self.current().await?;
        let claims = match check(&d.oidc, &id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                match self.refreshed(&d).await? {
                    Some(fresh) => check(&fresh.oidc, &id_token, &nonce),
                    None => Err(ClaimsVerificationError::SignatureVerification(
                        SignatureVerificationError::NoMatchingKey,
                    )),
                }
            }
            other => other,
        }
        .map_err(|e| {
            let reason = match e {
                ClaimsVerificationError::SignatureVerification(s) => format!("signature: {s}"),
                other => other.to_string(),
            };
            tracing::warn!(upstream = %self.upstream.id, %reason, "upstream ID token rejected");
            UpstreamError::InvalidToken(reason)
        })?;
        identity::from_claims(&self.upstream, &claims, token.as_str(), now)
    }

    /// The callback's work: exchange the code, then verify the ID token against `pending`.
    pub async fn finish(&self, code: &str, pending: &PendingUpstream, now: i64) -> Result<UpstreamIdentity, UpstreamError> {
        let token = self.exchange(code, &pending.pkce_verifier).await?;
        self.verify(&token, &pending.nonce, now).await
    }
}

/// The crate's checks: signature, `iss`, `aud` (no untrusted extra audience), `exp`, `nonce`.
/// It does not check `azp`; `identity::from_claims` does.
fn check(oidc: &Oidc, id_token: &CoreIdToken, nonce: &Nonce) -> Result<CoreIdTokenClaims, ClaimsVerificationError> {
    let verifier = oidc.id_token_verifier().set_allowed_algs([
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    ]);
    id_token.claims(&verifier, nonce).cloned()
}

/// The configured upstreams' clients, built once at start-up (in `AppState`), so discovery and
/// keys are cached across logins.
#[derive(Debug, Default)]
pub struct Upstreams(Vec<UpstreamClient>);

impl Upstreams {
    /// One client per `Config::upstreams`, each with its callback `{issuer}/login/callback/{id}`
    /// (the one URI to register at the upstream).
    pub fn from_config(config: &crate::config::Config) -> Result<Upstreams, String> {
        let mut out = Vec::new();
        for u in &config.upstreams {
            let callback = callback_url(&config.issuer, &u.id);
            let url = Url::parse(&callback).map_err(|e| format!("upstream {:?}: callback {callback}: {e}", u.id))?;
            let client = UpstreamClient::new(u.clone(), url)
                .map_err(|e| format!("upstream {:?}: {e}", u.id))?
                .with_refresh_interval(config.upstream_key_refresh);
            out.push(client);
        }
        Ok(Upstreams(out))
    }

    pub fn get(&self, id: &str) -> Option<&UpstreamClient> {
        self.0.iter().find(|c| c.upstream.id == id)
    }

    pub fn all(&self) -> impl Iterator<Item = &UpstreamClient> {
        self.0.iter()
    }
}

/// The callback clef answers for upstream `id`.
pub fn callback_url(issuer: &str, id: &str) -> String {
    format!("{issuer}{}", crate::paths::LOGIN_CALLBACK.replace("{id}", id))
}
