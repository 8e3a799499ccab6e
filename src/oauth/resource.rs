//! Resource indicators (RFC 8707): the resources an access token is issued to, its `aud`.

use serde::{Deserialize, Serialize};

use super::{ErrorCode, OAuthError};

/// More resources than this in one request is refused rather than stored or signed.
pub const MAX_RESOURCES: usize = 16;
/// A resource URI longer than this is refused (the same bound as other parameters).
pub const MAX_LEN: usize = 2048;

/// RFC 9068 §2.2 / RFC 7519 §4.1.3: one audience as a string, several as an array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The resources asked for, or the issuer when none was: clef's own endpoints (userinfo,
    /// introspection) are then the audience, as before resource indicators.
    pub fn of(resources: &[String], issuer: &str) -> Audience {
        match resources {
            [] => Audience::One(issuer.to_owned()),
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        }
    }
}

fn invalid(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidTarget, d)
}

/// RFC 8707 §2: an absolute URI with no fragment. The error says why, for the operator.
pub fn check_registrable(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_LEN {
        return Err(format!("resource {uri:?} is longer than {MAX_LEN} bytes"));
    }
    if uri.contains('#') {
        return Err(format!("resource {uri:?} must not have a fragment (RFC 8707 section 2)"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("resource {uri:?} must not contain spaces"));
    }
    match url::Url::parse(uri) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("resource {uri:?} is not an absolute URI")),
    }
}

/// The resources a request asks for, checked against those it may ask for: each must be
/// well-formed (RFC 8707 §2) and in `allowed`, compared as exact strings. Duplicates are
/// dropped and request order kept. The descriptions never echo the request's values.
pub fn requested(asked: &[String], allowed: &[String]) -> Result<Vec<String>, OAuthError> {
    if asked.len() > MAX_RESOURCES {
        return Err(invalid("too many resource parameters"));
    }
    let mut out: Vec<String> = Vec::new();
    for r in asked {
        if check_registrable(r).is_err() {
            return Err(invalid("resource must be an absolute URI without a fragment"));
        }
        if allowed.is_empty() {
            // A client registered for no resource gets tokens for clef itself only: guessing
            // an audience for it could hand a resource server a token it never agreed to.
            return Err(invalid("this client is registered for no resource"));
        }
        if !allowed.iter().any(|a| a == r) {
            return Err(invalid("resource is not one this client is registered for"));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    Ok(out)
}

/// RFC 8707 §2.2: a token request may narrow the resources of its grant, never widen them.
/// A grant made without resources leaves the client's registered ones to choose from.
/// Returns the access token's resources.
pub fn narrowed(asked: &[String], granted: &[String], registered: &[String]) -> Result<Vec<String>, OAuthError> {
    if asked.is_empty() {
        return Ok(granted.to_vec());
    }
    let within = if granted.is_empty() { registered } else { granted };
    requested(asked, within)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn registrable_uris() {
        for ok in [
            "https://api.example/",
            "https://api.example/v1?x=1",
            "urn:example:api",
            "http://127.0.0.1:8080",
        ] {
            check_registrable(ok).unwrap();
        }
        for bad in ["api.example", "/relative", "https://api.example/#frag", "https://a b", "", "mailto"] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_stay_within_what_is_allowed() {
        let allowed = v(&["https://a.example/", "https://b.example/"]);
        assert_eq!(requested(&[], &allowed).unwrap(), Vec::<String>::new());
        assert_eq!(
            requested(&v(&["https://b.example/", "https://b.example/"]), &allowed).unwrap(),
            ["https://b.example/"]
        );
        for bad in [
            v(&["https://c.example/"]),
            v(&["https://a.example"]),
            v(&["https://a.example/#x"]),
            v(&["relative"]),
        ] {
            assert_eq!(requested(&bad, &allowed).unwrap_err().code, ErrorCode::InvalidTarget, "{bad:?}");
        }
        let e = requested(&v(&["https://a.example/"]), &[]).unwrap_err();
        assert_eq!(e.description, "this client is registered for no resource");
        let many: Vec<String> = (0..=MAX_RESOURCES).map(|_| "https://a.example/".to_owned()).collect();
        assert_eq!(requested(&many, &allowed).unwrap_err().code, ErrorCode::InvalidTarget);
    }

    #[test]
    fn token_requests_narrow_the_grant() {
        let registered = v(&["https://a.example/", "https://b.example/"]);
        let granted = v(&["https://a.example/"]);
        assert_eq!(narrowed(&[], &granted, &registered).unwrap(), granted);
        assert_eq!(narrowed(&granted, &granted, &registered).unwrap(), granted);
        let wider = narrowed(&v(&["https://b.example/"]), &granted, &registered).unwrap_err();
        assert_eq!(wider.code, ErrorCode::InvalidTarget);
        assert_eq!(
            narrowed(&v(&["https://b.example/"]), &[], &registered).unwrap(),
            ["https://b.example/"]
        );
    }

    #[test]
    fn audience_shape() {
        assert_eq!(serde_json::to_string(&Audience::of(&[], "https://id")).unwrap(), "\"https://id\"");
        assert_eq!(serde_json::to_string(&Audience::of(&v(&["r1"]), "i")).unwrap(), "\"r1\"");
        assert_eq!(
            serde_json::to_string(&Audience::of(&v(&["r1", "r2"]), "i")).unwrap(),
            "[\"r1\",\"r2\"]"
        );
    }
}
