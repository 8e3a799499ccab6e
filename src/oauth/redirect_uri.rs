//! Redirect URI rules: registration checks and exact matching (RFC 6749 §3.1.2, RFC 9700 §4.1.3).

use url::Url;

/// Exact string comparison: no prefix, case or normalisation games.
pub fn matches(registered: &[String], given: &str) -> bool {
    registered.iter().any(|r| r == given)
}

/// Checks a URI an operator registers. https anywhere; http only on loopback hosts;
/// private-use schemes (`com.example.app:/cb`) for native apps. Never a fragment.
pub fn check_registrable(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI ({e})"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} must not contain a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => match url.host_str() {
            Some("localhost" | "127.0.0.1" | "[::1]") => Ok(()),
            _ => Err(format!("{uri:?}: plain http is only allowed for localhost, 127.0.0.1 and [::1]")),
        },
        "javascript" | "data" | "file" | "vbscript" => Err(format!("{uri:?}: scheme not allowed")),
        s if s.contains('.') => Ok(()),
        _ => Err(format!("{uri:?}: use https, loopback http, or a reverse-DNS private scheme")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_must_match_exactly() {
        let reg = vec!["https://app.example/cb".to_owned()];
        assert!(matches(&reg, "https://app.example/cb"));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "http://app.example/cb",
            "https://APP.example/cb",
            "",
        ] {
            assert!(!matches(&reg, bad), "{bad}");
        }
    }

    #[test]
    fn registration_rules() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:9000/cb",
            "http://localhost/cb",
            "com.example.app:/oauth",
        ] {
            check_registrable(ok).unwrap();
        }
        for bad in [
            "/relative",
            "https://app.example/cb#x",
            "http://app.example/cb",
            "javascript:alert(1)",
            "myapp:/cb",
        ] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
    }
}
