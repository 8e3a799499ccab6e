//! The closed set of protocol error codes (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1; OIDC Core §3.1.2.6).

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    UnsupportedTokenType,
    InvalidScope,
    AccessDenied,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks a scope the resource needs.
    InsufficientScope,
    /// RFC 9470 §3: the authentication behind the token is too old or too weak.
    InsufficientUserAuthentication,
    ServerError,
    TemporarilyUnavailable,
    /// RFC 8707 §2: a `resource` that is malformed or not one the client may ask for.
    InvalidTarget,
    /// RFC 7591 §3.2.2.
    InvalidRedirectUri,
    InvalidClientMetadata,
    /// reqobj: OIDC Core §3.1.2.6, a request object that fails its checks.
    InvalidRequestObject,
    /// reqobj: OIDC Core §3.1.2.6, a request_uri that cannot be fetched or is not allowed.
    InvalidRequestUri,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InsufficientUserAuthentication => "insufficient_user_authentication",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidRequestObject => "invalid_request_object",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

impl OAuthError {
    /// The description is forced into the RFC 6749 §5.2 charset here, once for every error.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description_charset(description.into()),
        }
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    /// A failure that is ours, not the client's: logged once under a short reference, and
    /// only the reference is shown.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::ServerError, format!("internal error [REF:{}]", log_internal(err)))
    }
}

/// RFC 6749 §5.2: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E, printable
/// ASCII without `"` and `\`. Quotes become `'`, a backslash `/`, anything else `?`.
pub fn description_charset(d: Cow<'static, str>) -> Cow<'static, str> {
    if d.chars().all(description_char) {
        return d;
    }
    Cow::Owned(
        d.chars()
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                c if description_char(c) => c,
                _ => '?',
            })
            .collect(),
    )
}

pub fn description_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

/// Logs an internal error with a fresh short reference and returns the reference.
pub fn log_internal(err: impl std::fmt::Display) -> String {
    let reference = crate::secret::random_token(6);
    // Escaped (`?`): an error may quote a value that came with the request.
    tracing::error!(reference = %reference, error = ?err.to_string(), "internal error");
    reference
}

/// `Err(invalid_grant)` unless `cond`; keeps grant checks one line each.
pub fn invalid_grant_unless(cond: bool, description: &'static str) -> Result<(), OAuthError> {
    if cond {
        Ok(())
    } else {
        Err(OAuthError::invalid_grant(description))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_to_the_rfc_charset() {
        for (raw, want) in [
            ("plain words", "plain words"),
            ("a \"quoted\" value", "a 'quoted' value"),
            ("back\\slash", "back/slash"),
            ("§ caf\u{e9} \u{1b}[31m\r\n\0", "? caf? ?[31m???"),
        ] {
            let e = OAuthError::invalid_request(raw.to_owned());
            assert_eq!(e.description, want);
            assert!(e.description.chars().all(description_char));
        }
        assert!(matches!(OAuthError::invalid_request("static").description, Cow::Borrowed(_)));
    }

    /// Every description written in the source is already in the charset, so none of them is
    /// silently mangled by `description_charset`: each string literal in the few lines that
    /// build an `OAuthError` is checked.
    #[test]
    fn every_written_description_is_in_the_charset() {
        fn visit(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    visit(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = vec![];
        visit(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let mut checked = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let builds = ["OAuthError::", "invalid_grant_unless("].iter().any(|m| line.contains(m));
                if !builds || line.trim_start().starts_with("//") || line.contains("#[test]") {
                    continue;
                }
                for l in &lines[i..(i + 3).min(lines.len())] {
                    if l.trim_start().starts_with("//") || l.contains("assert") {
                        continue;
                    }
                    // The literals of the line: text between unescaped double quotes.
                    let mut in_lit = false;
                    let mut lit = String::new();
                    let mut chars = l.chars();
                    while let Some(c) = chars.next() {
                        match (in_lit, c) {
                            (false, '"') => in_lit = true,
                            (true, '\\') => {
                                lit.push('\\');
                                chars.next();
                            }
                            (true, '"') => {
                                in_lit = false;
                                assert!(
                                    lit.chars().all(description_char),
                                    "{}:{}: {lit:?} has characters RFC 6749 §5.2 forbids",
                                    f.display(),
                                    i + 1
                                );
                                checked += 1;
                                lit.clear();
                            }
                            (true, c) => lit.push(c),
                            (false, _) => {}
                        }
                    }
                }
            }
        }
        assert!(
            checked > 40,
            "only {checked} literals found: is the scan still looking at the right code?"
        );
    }
}
