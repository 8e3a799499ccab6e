//! Scope parsing (RFC 6749 §3.3) against the scopes clef knows.

use super::{ErrorCode, OAuthError};

/// Every scope clef understands; others are dropped, as RFC 6749 §3.3 allows.
pub const SUPPORTED: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "roles",
    "offline_access",
    "account",
];

/// Scopes only first-party clients (those created with `--skip-consent`) may be given: the
/// `account` scope manages the user's own second factor and sessions, which no third-party
/// app should be able to ask for, consent or not.
pub const FIRST_PARTY_ONLY: &[&str] = &["account"];

/// Parses a request's scope: `openid` required, unknown scopes ignored, duplicates dropped,
/// request order kept.
pub fn parse(raw: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut out = parse_tokens(raw.unwrap_or(""))?;
    out.retain(|s| SUPPORTED.contains(&s.as_str()));
    if !out.iter().any(|s| s == "openid") {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "scope must include openid"));
    }
    Ok(out)
}

/// Splits a scope into its tokens, duplicates dropped, request order kept, nothing filtered.
pub fn parse_tokens(raw: &str) -> Result<Vec<String>, OAuthError> {
    if !raw.split(' ').all(is_token) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope contains characters RFC 6749 section 3.3 does not allow",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for s in raw.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ); empty passes (a double space).
pub fn is_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

pub fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub fn has(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// True when every scope in `wanted` was already granted.
pub fn covered_by(wanted: &[String], granted: &str) -> bool {
    wanted.iter().all(|w| has(granted, w))
}

/// The union of two scope sets, as the remembered consent after a new grant.
pub fn union(granted: &str, wanted: &[String]) -> String {
    let mut all: Vec<String> = granted.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    for w in wanted {
        if !all.contains(w) {
            all.push(w.clone());
        }
    }
    all.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_filters() {
        assert_eq!(parse(Some("openid email  bogus email")).unwrap(), ["openid", "email"]);
    }

    #[test]
    fn openid_is_required() {
        for raw in [None, Some(""), Some("email profile")] {
            assert_eq!(parse(raw).unwrap_err().code, ErrorCode::InvalidScope, "{raw:?}");
        }
    }

    #[test]
    fn bad_characters_are_refused() {
        assert_eq!(parse(Some("openid \"x\"")).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(parse(Some("openid\\x")).unwrap_err().code, ErrorCode::InvalidScope);
    }

    #[test]
    fn coverage_and_union() {
        let wanted = vec!["openid".to_owned(), "email".to_owned()];
        assert!(covered_by(&wanted, "openid profile email"));
        assert!(!covered_by(&wanted, "openid profile"));
        assert_eq!(union("openid profile", &wanted), "openid profile email");
    }
}
