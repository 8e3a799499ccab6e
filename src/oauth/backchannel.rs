//! OpenID Connect Back-Channel Logout 1.0: the logout token, the URI rule, the retry policy.

use serde::Serialize;
use serde_json::{Map, Value};
use url::Url;

/// §2.4: the one event a logout token carries.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// §2.4: the `typ` header that keeps a logout token from passing for an ID token (RFC 8725 §3.11).
pub const TYP: &str = "logout+jwt";
/// §2.4 recommends a short lifetime; two minutes covers clock skew and a slow RP.
pub const LIFETIME: i64 = 120;
/// Each POST gives up after this long (§2.5 leaves it to the OP; the RP should be quick).
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Attempts per notification before it is dropped with a warning.
pub const MAX_ATTEMPTS: i64 = 3;

/// §2.4. No `nonce`: a logout token must never pass for an ID token (§2.4, "MUST NOT").
#[derive(Debug, Serialize)]
pub struct LogoutTokenClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub events: Map<String, Value>,
}

impl LogoutTokenClaims {
    /// `sub` always; `sid` when the client registered `backchannel_logout_session_required`
    /// (§2.2), as node-oidc-provider does: §2.4 requires one of the two and allows both.
    pub fn new(issuer: &str, client_id: &str, sub: &str, sid: &str, session_required: bool, jti: String, now: i64) -> Self {
        let mut events = Map::new();
        events.insert(EVENT.to_owned(), Value::Object(Map::new()));
        LogoutTokenClaims {
            iss: issuer.to_owned(),
            aud: client_id.to_owned(),
            iat: now,
            exp: now + LIFETIME,
            jti,
            sub: sub.to_owned(),
            sid: session_required.then(|| sid.to_owned()),
            events,
        }
    }
}

/// When to try again after the failed attempt number `attempts`; `None`: give up.
pub fn retry_after(attempts: i64) -> Option<i64> {
    match attempts {
        ..=0 => Some(0),
        1 => Some(10),
        2 => Some(60),
        _ => None,
    }
}

/// How an RP's answer counts. §2.8: 200 is success and 400 means the RP refused the token,
/// which sending it again will not change; a server error or timeout may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Refused,
    Retry,
}

pub fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 425 | 429 => Outcome::Retry,
        // Redirects are not followed (an RP must not bounce the OP elsewhere): as a refusal.
        300..=499 => Outcome::Refused,
        _ => Outcome::Retry,
    }
}

/// §2.2: an absolute URI, no fragment; https, or http on a loopback host (local testing).
pub fn check_registrable(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("backchannel_logout_uri {uri:?} is not an absolute URI ({e})"))?;
    if url.fragment().is_some() {
        return Err(format!("backchannel_logout_uri {uri:?} must not contain a fragment"));
    }
    match (url.scheme(), url.host_str()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some("localhost" | "127.0.0.1" | "[::1]")) => Ok(()),
        _ => Err(format!(
            "backchannel_logout_uri {uri:?}: use https (plain http only for localhost, 127.0.0.1 and [::1])"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_section_2_4() {
        let c = LogoutTokenClaims::new("https://op", "c1", "u1", "s1", false, "j".into(), 1000);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"iss": "https://op", "aud": "c1", "iat": 1000, "exp": 1120, "jti": "j", "sub": "u1",
                "events": {EVENT: {}}})
        );
        let c = LogoutTokenClaims::new("https://op", "c1", "u1", "s1", true, "j".into(), 1000);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["sid"], "s1");
        assert!(v.get("nonce").is_none());
    }

    #[test]
    fn retries_are_bounded() {
        assert_eq!((retry_after(1), retry_after(2), retry_after(3)), (Some(10), Some(60), None));
        assert_eq!(retry_after(MAX_ATTEMPTS), None);
        for (status, want) in [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (400, Outcome::Refused),
            (404, Outcome::Refused),
            (429, Outcome::Retry),
            (500, Outcome::Retry),
            (503, Outcome::Retry),
            (302, Outcome::Refused),
        ] {
            assert_eq!(outcome(status), want, "{status}");
        }
    }

    #[test]
    fn uri_rules() {
        for ok in [
            "https://rp.example/bcl",
            "https://rp.example/bcl?x=1",
            "http://127.0.0.1:9000/bcl",
            "http://localhost/b",
        ] {
            check_registrable(ok).unwrap();
        }
        for bad in [
            "/bcl",
            "https://rp.example/bcl#x",
            "http://rp.example/bcl",
            "com.example.app:/bcl",
            "ftp://rp.example/",
        ] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
    }
}
