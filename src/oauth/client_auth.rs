//! Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::OAuthError;
use crate::secret::{ct_eq, sha256_b64};
use crate::store::Client;

/// The credentials a request carried, before we know whether they are right.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Basic { client_id: String, secret: String },
    Post { client_id: String, secret: String },
    None { client_id: String },
}

impl Presented {
    pub fn client_id(&self) -> &str {
        match self {
            Presented::Basic { client_id, .. } | Presented::Post { client_id, .. } | Presented::None { client_id } => client_id,
        }
    }
    pub fn used_basic(&self) -> bool {
        matches!(self, Presented::Basic { .. })
    }
}

/// Decodes `Authorization: Basic …`; id and secret are form-urlencoded inside (RFC 6749 §2.3.1).
pub fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic authorization header");
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let raw = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let (id, secret) = (decode(id).ok_or_else(bad)?, decode(secret).ok_or_else(bad)?);
    // Same rule as every other parameter: no control characters (NUL would reach the database).
    if id.chars().chain(secret.chars()).any(char::is_control) {
        return Err(bad());
    }
    Ok((id, secret))
}

/// Works out which method the request used; more than one is an error (RFC 6749 §2.3).
pub fn presented(basic: Option<(String, String)>, body_id: Option<&str>, body_secret: Option<&str>) -> Result<Presented, OAuthError> {
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request("use one client authentication method, not several")),
        (Some((id, _)), Some(body), None) if body != id => Err(OAuthError::invalid_request(
            "client_id in the body differs from the authenticated client",
        )),
        (Some((client_id, secret)), _, None) => Ok(Presented::Basic { client_id, secret }),
        (None, Some(id), Some(secret)) => Ok(Presented::Post {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        (None, Some(id), None) => Ok(Presented::None { client_id: id.to_owned() }),
        (None, None, _) => Err(OAuthError::invalid_client("client authentication required")),
    }
}

/// Checks the presented credentials against the registered client.
pub fn authenticate(client: Option<&Client>, p: &Presented) -> Result<(), OAuthError> {
    let failed = || OAuthError::invalid_client("client authentication failed");
    let client = client.ok_or_else(failed)?;
    match (p, &client.secret_hash) {
        (Presented::None { .. }, None) if client.is_public => Ok(()),
        (Presented::Basic { secret, .. } | Presented::Post { secret, .. }, Some(hash)) if !client.is_public => {
            if ct_eq(&sha256_b64(secret), hash) { Ok(()) } else { Err(failed()) }
        }
        _ => Err(failed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::ErrorCode;

    fn client(public: bool) -> Client {
        Client {
            client_id: "c1".into(),
            secret_hash: (!public).then(|| sha256_b64("s3cret")),
            name: "c".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![],
            is_public: public,
            skip_consent: false,
            id_token_alg: "RS256".into(),
            require_2fa: false,
            created_at: 0,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: vec![],
            resources: vec![],
            access_token_alg: "RS256".into(),
        }
    }

    #[test]
    fn basic_is_urldecoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20id:p%3Ass"));
        assert_eq!(parse_basic(&h).unwrap(), ("my id".to_owned(), "p:ss".to_owned()));
        assert_eq!(parse_basic("Bearer x").unwrap_err().code, ErrorCode::InvalidClient);
    }

    #[test]
    fn method_detection() {
        let basic = Some(("c1".to_owned(), "s".to_owned()));
        assert!(presented(basic.clone(), None, None).unwrap().used_basic());
        assert_eq!(presented(basic, None, Some("s")).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(presented(None, None, None).unwrap_err().code, ErrorCode::InvalidClient);
        assert_eq!(
            presented(None, Some("c1"), None).unwrap(),
            Presented::None { client_id: "c1".into() }
        );
    }

    #[test]
    fn secrets_and_public_clients() {
        let ok = Presented::Post {
            client_id: "c1".into(),
            secret: "s3cret".into(),
        };
        let wrong = Presented::Post {
            client_id: "c1".into(),
            secret: "nope".into(),
        };
        let none = Presented::None { client_id: "c1".into() };
        authenticate(Some(&client(false)), &ok).unwrap();
        authenticate(Some(&client(true)), &none).unwrap();
        for (c, p) in [
            (Some(client(false)), &wrong),
            (Some(client(false)), &none),
            (Some(client(true)), &ok),
            (None, &ok),
        ] {
            assert_eq!(authenticate(c.as_ref(), p).unwrap_err().code, ErrorCode::InvalidClient);
        }
    }
}
