//! Documents clef fetches from clients: `jwks_uri` (RFC 7591 §2, cached) and
//! `sector_identifier_uri` (OIDC Core §8.1). Bounded in time and size, redirects off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::reqwest;
use serde_json::Value;
use url::Url;

use crate::oauth::jose::{PublicJwk, parse_jwks};

/// A client's server that answers slowly must not hold a token request for long.
const TIMEOUT: Duration = Duration::from_secs(4);
/// A JWK Set or a list of redirect URIs is a few kilobytes.
const MAX_BYTES: usize = 64 * 1024;
/// A cached key set is used this long before it is fetched again.
const CACHE_SECS: i64 = 600;
/// An unknown `kid` fetches the set again, at most this often per URI, so a client sending
/// made-up kids cannot make clef hammer its server (or anyone's).
const REFETCH_SECS: i64 = 60;

struct Cached {
    keys: Arc<Vec<PublicJwk>>,
    fetched_at: i64,
}

pub struct Fetcher {
    http: reqwest::Client,
    /// Plain http to a loopback host, only when clef itself runs on one (development and
    /// tests): otherwise a registration could make clef call services on its own machine.
    allow_loopback: bool,
    jwks: Mutex<HashMap<String, Cached>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} must be an https URL")]
    NotHttps(String),
    #[error("{0} could not be fetched: {1}")]
    Unreachable(String, String),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

impl Fetcher {
    pub fn new(issuer: &str) -> Fetcher {
        let allow_loopback = Url::parse(issuer).is_ok_and(|u| is_loopback(&u));
        // Redirects off (SSRF): the client names the exact document.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Fetcher {
            http,
            allow_loopback,
            jwks: Mutex::new(HashMap::new()),
        }
    }

    /// The rule for a URI clef will fetch: https, or loopback http when clef runs on loopback.
    pub fn check_fetchable(&self, uri: &str) -> Result<Url, FetchError> {
        let url = Url::parse(uri).map_err(|_| FetchError::NotHttps(uri.to_owned()))?;
        let ok = url.scheme() == "https" || (url.scheme() == "http" && self.allow_loopback && is_loopback(&url));
        // An address literal inside the network clef runs in is refused outright (SSRF); a
        // name that resolves there is not caught here.
        let internal = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified(),
            Some(url::Host::Ipv6(ip)) => {
                ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00 || (ip.segments()[0] & 0xffc0) == 0xfe80
            }
            _ => false,
        };
        if !ok || url.fragment().is_some() || (internal && !(self.allow_loopback && is_loopback(&url))) {
            return Err(FetchError::NotHttps(uri.to_owned()));
        }
        Ok(url)
    }

    /// GETs a JSON document.
    pub async fn json(&self, uri: &str) -> Result<Value, FetchError> {
        let body = self.get_bounded(uri, "application/json", MAX_BYTES).await?;
        serde_json::from_slice(&body).map_err(|_| FetchError::Invalid(uri.to_owned(), "not JSON".into()))
    }

    /// reqobj: GETs a document of at most `max` bytes (same rules, timeout and no redirects).
    pub async fn get_bounded(&self, uri: &str, accept: &str, max: usize) -> Result<Vec<u8>, FetchError> {
        let url = self.check_fetchable(uri)?;
        let unreachable = |e: String| FetchError::Unreachable(uri.to_owned(), e);
        let mut resp = self
            .http
            .get(url)
            .header("accept", accept)
            .send()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(unreachable(format!("HTTP {}", resp.status().as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(e.without_url().to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > max {
                return Err(FetchError::Invalid(uri.to_owned(), "document too large".into()));
            }
        }
        Ok(body)
    }

    /// A client's keys from its `jwks_uri`, from the cache unless `unknown_kid` asks for a
    /// fresh copy (then at most once a minute).
    pub async fn jwks(&self, uri: &str, unknown_kid: bool, now: i64) -> Result<Arc<Vec<PublicJwk>>, FetchError> {
        if let Some(keys) = self.cached(uri, unknown_kid, now) {
            return Ok(keys);
        }
        let doc = self.json(uri).await?;
        let keys = Arc::new(parse_jwks(&doc).map_err(|e| FetchError::Invalid(uri.to_owned(), e))?);
        if let Ok(mut map) = self.jwks.lock() {
            // Bounded: a cache of every URI ever registered is not needed to be fast.
            if map.len() > 10_000 {
                map.clear();
            }
            map.insert(
                uri.to_owned(),
                Cached {
                    keys: keys.clone(),
                    fetched_at: now,
                },
            );
        }
        Ok(keys)
    }

    fn cached(&self, uri: &str, unknown_kid: bool, now: i64) -> Option<Arc<Vec<PublicJwk>>> {
        let map = self.jwks.lock().ok()?;
        let c = map.get(uri)?;
        let age = now - c.fetched_at;
        let fresh = if unknown_kid { age < REFETCH_SECS } else { age < CACHE_SECS };
        fresh.then(|| c.keys.clone())
    }
}

pub fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_may_be_fetched() {
        let public = Fetcher::new("https://id.example");
        assert!(public.check_fetchable("https://rp.example/jwks").is_ok());
        for bad in [
            "http://rp.example/jwks",
            "http://127.0.0.1:8080/jwks",
            "https://127.0.0.1/jwks",
            "https://10.1.2.3/jwks",
            "https://192.168.0.1/jwks",
            "https://169.254.169.254/latest",
            "https://[::1]/jwks",
            "https://[fd00::1]/jwks",
            "https://rp.example/jwks#x",
            "ftp://rp.example/jwks",
        ] {
            assert!(public.check_fetchable(bad).is_err(), "{bad}");
        }
        let dev = Fetcher::new("http://127.0.0.1:8080");
        assert!(dev.check_fetchable("http://127.0.0.1:9000/jwks").is_ok());
        assert!(dev.check_fetchable("http://10.0.0.1/jwks").is_err());
    }
}
