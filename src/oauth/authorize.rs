//! The authorization endpoint's checks (RFC 6749 §4.1.1, OIDC Core §3.1.2.1), in a fixed order:
//! client, redirect_uri, then everything whose failure may be redirected to the client.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::claims::{ACR_2FA, ACR_SUPPORTED, ClaimsRequest};
use super::{ErrorCode, OAuthError, pkce, redirect_uri, scope};
use crate::store::Client;

/// Request parameters from the query or form body, with repeated names remembered.
#[derive(Debug, Default)]
pub struct Params {
    map: HashMap<String, String>,
    repeated: Vec<String>,
    /// RFC 8707 §2: `resource` may be repeated, so every value is kept, in order.
    resources: Vec<String>,
}

impl Params {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            if k == "resource" {
                // RFC 6749 §3.1: an empty value is as if omitted.
                if !v.is_empty() {
                    p.resources.push(v);
                }
                continue;
            }
            match p.map.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    if !p.repeated.contains(e.key()) {
                        p.repeated.push(e.key().clone());
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        p
    }

    /// RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Every `resource` value sent (RFC 8707), in request order.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    pub fn is_repeated(&self, name: &str) -> bool {
        self.repeated.iter().any(|r| r == name)
    }

    /// RFC 6749 §3.1: request and response parameters must not be included more than once.
    pub fn reject_repeated(&self) -> Result<(), OAuthError> {
        match self.repeated.first() {
            // Only a name we know is repeated back; any other name is the client's raw input.
            Some(name) => match KNOWN_PARAMS.iter().find(|k| **k == name.as_str()) {
                Some(known) => Err(OAuthError::invalid_request(format!("parameter {known} is repeated"))),
                None => Err(OAuthError::invalid_request("a parameter is repeated")),
            },
            None => Ok(()),
        }
    }
}

/// The parameter names of the authorization, token and logout requests.
const KNOWN_PARAMS: &[&str] = &[
    "client_id",
    "client_secret",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "display",
    "login_hint",
    "id_token_hint",
    "ui_locales",
    "acr_values",
    "claims",
    "request",
    "request_uri",
    "code_challenge",
    "code_challenge_method",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "token",
    "token_type_hint",
    "post_logout_redirect_uri",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    FormPost,
}

pub const RESPONSE_MODES: &[&str] = &["query", "form_post"];

/// Why a request cannot be answered by redirect: shown to the user as a page instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    MissingClientId,
    UnknownClient,
    MissingRedirectUri,
    RedirectUriMismatch,
    RepeatedClientOrRedirect,
}

impl Untrusted {
    /// Message key in the page catalogue.
    pub fn message_key(self) -> &'static str {
        match self {
            Untrusted::MissingClientId => "error.missing_client_id",
            Untrusted::UnknownClient => "error.unknown_client",
            Untrusted::MissingRedirectUri => "error.missing_redirect_uri",
            Untrusted::RedirectUriMismatch => "error.redirect_uri_mismatch",
            Untrusted::RepeatedClientOrRedirect => "error.repeated_parameter",
        }
    }
}

/// A validated place to send the answer to: errors from here on go to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    /// For the few pages shown on the way back (form_post).
    pub ui_locales: Option<String>,
    /// An unknown response_mode, reported once the target is trusted.
    bad_response_mode: bool,
    /// `state` over `MAX_STATE`, reported (without it) once the target is trusted.
    state_too_long: bool,
}

/// RFC 6749 §4.1.2.1: never redirect to an unvalidated URI, so these two come first.
pub fn check_target(params: &Params, client: Option<&Client>) -> Result<Target, Untrusted> {
    if params.is_repeated("client_id") || params.is_repeated("redirect_uri") {
        return Err(Untrusted::RepeatedClientOrRedirect);
    }
    params.get("client_id").ok_or(Untrusted::MissingClientId)?;
    let client = client.ok_or(Untrusted::UnknownClient)?;
    // OIDC Core §3.1.2.1 makes redirect_uri required.
    let uri = params.get("redirect_uri").ok_or(Untrusted::MissingRedirectUri)?;
    if !redirect_uri::matches(&client.redirect_uris, uri) {
        return Err(Untrusted::RedirectUriMismatch);
    }
    let (response_mode, bad_response_mode) = match params.get("response_mode") {
        None | Some("query") => (ResponseMode::Query, false),
        Some("form_post") => (ResponseMode::FormPost, false),
        Some(_) => (ResponseMode::Query, true),
    };
    // An over-long state is not echoed back: the error says why instead.
    let state = params.get("state");
    let state_too_long = state.is_some_and(|s| s.len() > MAX_STATE);
    Ok(Target {
        redirect_uri: uri.to_owned(),
        response_mode,
        state: state.filter(|_| !state_too_long).map(str::to_owned),
        ui_locales: params.get("ui_locales").filter(|u| u.len() <= MAX_UI_LOCALES).map(str::to_owned),
        bad_response_mode,
        state_too_long,
    })
}

/// A request that passed every check, kept server-side while the user logs in and consents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub scope: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    /// `sub` of a valid `id_token_hint`.
    pub hint_sub: Option<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub acr_values: Vec<String>,
    /// Set once the user has logged in during this request (satisfies prompt=login, max_age).
    #[serde(default)]
    pub fresh_login: bool,
    /// The client demands two factors, unlike `acr_values`, which only asks.
    #[serde(default)]
    pub require_2fa: bool,
    /// RFC 8707 resources the grant covers, checked against the client's registered ones.
    #[serde(default)]
    pub resources: Vec<String>,
    /// reqobj: the individual claims asked for with the `claims` parameter (OIDC Core §5.5).
    #[serde(default, skip_serializing_if = "ClaimsRequest::is_empty")]
    pub claims: ClaimsRequest,
}

impl AuthorizeRequest {
    /// Whether the login should add a second factor after the password.
    ///
    /// OIDC Core §3.1.2.1: `acr_values` lists acceptable values in order of preference, so a
    /// one-factor login satisfies a request that accepts the one-factor level. A second factor
    /// is asked for only when every value we know needs it, or when the client demands it.
    /// Values we do not support cannot be met either way and ask for nothing.
    pub fn wants_2fa(&self) -> bool {
        let mut known = self.acr_values.iter().filter(|a| ACR_SUPPORTED.contains(&a.as_str())).peekable();
        self.require_2fa || (known.peek().is_some() && known.all(|a| a == ACR_2FA))
    }
}

impl AuthorizeRequest {
    pub fn target(&self) -> Target {
        Target {
            redirect_uri: self.redirect_uri.clone(),
            response_mode: self.response_mode,
            state: self.state.clone(),
            ui_locales: self.ui_locales.clone(),
            bad_response_mode: false,
            state_too_long: false,
        }
    }
}

/// How an `id_token_hint` turned out; the caller verifies the signature with our keys.
pub enum Hint {
    Absent,
    Valid { sub: String },
    Invalid,
}

/// Caps on what a pending request stores, so an unauthenticated request cannot write rows of
/// its chosen size. Values over a cap are refused with `invalid_request` before anything is
/// written. `state` and `nonce` are opaque to us; 1,024 and 512 bytes leave room for signed
/// or encoded values.
pub const MAX_STATE: usize = 1024;
pub const MAX_NONCE: usize = 512;
/// An email address (RFC 5321 §4.5.3.1: a 256-octet path less the angle brackets).
pub const MAX_LOGIN_HINT: usize = 254;
pub const MAX_UI_LOCALES: usize = 64;
pub const MAX_ACR_VALUES: usize = 256;
pub const MAX_SCOPE: usize = 1024;
/// Parameters read but not stored still get a bound, so none is parsed at any size.
pub const MAX_OTHER: usize = 2048;
/// An id_token_hint is a signed JWT of ours: a few kilobytes at most.
pub const MAX_ID_TOKEN_HINT: usize = 8192;

/// The first parameter over its cap, if any.
fn over_cap(params: &Params) -> Option<&'static str> {
    const CAPS: &[(&str, usize)] = &[
        ("nonce", MAX_NONCE),
        ("login_hint", MAX_LOGIN_HINT),
        ("ui_locales", MAX_UI_LOCALES),
        ("acr_values", MAX_ACR_VALUES),
        ("scope", MAX_SCOPE),
        ("id_token_hint", MAX_ID_TOKEN_HINT),
    ];
    if let Some((name, _)) = CAPS.iter().find(|(name, cap)| params.get(name).is_some_and(|v| v.len() > *cap)) {
        return Some(name);
    }
    params
        .map
        .iter()
        .find(|(k, v)| !CAPS.iter().any(|(n, _)| n == k) && k.as_str() != "state" && v.len() > MAX_OTHER)
        .map(|_| "a parameter")
}

/// The checks after the target is trusted; errors are redirected with `state` and `iss`.
pub fn validate(params: &Params, client: &Client, target: &Target, hint: Hint) -> Result<AuthorizeRequest, OAuthError> {
    params.reject_repeated()?;
    if target.bad_response_mode {
        return Err(OAuthError::invalid_request("unsupported response_mode"));
    }
    if target.state_too_long {
        return Err(OAuthError::invalid_request("state is too long"));
    }
    if let Some(name) = over_cap(params) {
        return Err(OAuthError::invalid_request(format!("{name} is too long")));
    }
    // OIDC Core §6: we support neither request objects nor request_uri.
    if params.get("request").is_some() {
        return Err(OAuthError::new(ErrorCode::RequestNotSupported, "request objects are not supported"));
    }
    if params.get("request_uri").is_some() {
        return Err(OAuthError::new(ErrorCode::RequestUriNotSupported, "request_uri is not supported"));
    }
    match params.get("response_type") {
        None => return Err(OAuthError::invalid_request("response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows_grant("authorization_code") {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client may not use the authorization code grant",
        ));
    }
    let mut scope = scope::parse(params.get("scope"))?;
    // RFC 6749 §3.3: the server may grant less than asked; the token response says what it got.
    if !client.skip_consent {
        scope.retain(|s| !scope::FIRST_PARTY_ONLY.contains(&s.as_str()));
    }
    // dcr: RFC 7591 §2 `scope` lists what the client may ask for; `openid` always stays.
    if let Some(allowed) = &client.meta.scope {
        scope.retain(|s| s == "openid" || scope::has(allowed, s));
    }
    let code_challenge = pkce::check_challenge(params.get("code_challenge"), params.get("code_challenge_method"), client.is_public)?;
    let resources = super::resource::requested(params.resources(), &client.resources)?;

    let mut prompt_none = false;
    let mut prompt_login = false;
    let mut prompt_consent = false;
    let mut prompt_count = 0;
    for p in params.get("prompt").unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        prompt_count += 1;
        match p {
            "none" => prompt_none = true,
            // We have one account per browser session, so choosing an account means logging in.
            "login" | "select_account" => prompt_login = true,
            "consent" => prompt_consent = true,
            _ => return Err(OAuthError::invalid_request("unsupported prompt value")),
        }
    }
    if prompt_none && prompt_count > 1 {
        return Err(OAuthError::invalid_request("prompt=none cannot be combined with other values"));
    }
    let max_age = match params.get("max_age") {
        // OIDC Registration §2: the client's default_max_age stands in for a missing max_age.
        None => client.meta.default_max_age,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| OAuthError::invalid_request("max_age must be a non-negative integer"))?,
        ),
    };
    let hint_sub = match hint {
        Hint::Absent => None,
        Hint::Valid { sub } => Some(sub),
        Hint::Invalid => {
            return Err(OAuthError::invalid_request(
                "id_token_hint is not a valid ID token issued by this provider",
            ));
        }
    };
    // reqobj: OIDC Core §5.5. An `acr` claim with values acts as `acr_values` (§5.5.1.1);
    // marked essential, the login must reach it, as a client demanding two factors does.
    let (claims, acr_claim) = match params.get("claims") {
        None => Default::default(),
        Some(text) => ClaimsRequest::parse(text).map_err(OAuthError::invalid_request)?,
    };
    let mut acr_values: Vec<String> = params
        .get("acr_values")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mut require_2fa = client.require_2fa;
    if !acr_claim.values.is_empty() {
        let mut known = acr_claim.values.iter().filter(|a| ACR_SUPPORTED.contains(&a.as_str())).peekable();
        let only_2fa = known.peek().is_some() && known.all(|a| a == ACR_2FA);
        if acr_claim.essential && only_2fa {
            require_2fa = true;
        }
        if acr_values.is_empty() {
            acr_values = acr_claim.values;
        }
    }
    let nonce = params.get("nonce").map(str::to_owned);
    if let Some(d) = params.get("display")
        && !["page", "popup", "touch", "wap"].contains(&d)
    {
        return Err(OAuthError::invalid_request("unsupported display value"));
    }
    Ok(AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: target.redirect_uri.clone(),
        response_mode: target.response_mode,
        state: target.state.clone(),
        scope,
        nonce,
        code_challenge,
        prompt_none,
        prompt_login,
        prompt_consent,
        max_age,
        hint_sub,
        login_hint: params.get("login_hint").map(str::to_owned),
        ui_locales: params.get("ui_locales").map(str::to_owned),
        acr_values,
        fresh_login: false,
        require_2fa,
        resources,
        claims,
    })
}

/// The session facts the decision needs.
#[derive(Clone, Copy, Debug)]
pub struct SessionView<'a> {
    pub user_id: &'a str,
    pub auth_time: i64,
    pub amr: &'a [String],
    pub acr: &'a str,
    /// The session's `sid` (Back-Channel Logout 1.0 §2.1), carried into the code.
    pub sid: Option<&'a str>,
}

/// Where the user stands on consenting to this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consent {
    /// No stored consent covers the requested scopes.
    Missing,
    /// A stored consent covers them (not enough under prompt=consent).
    Covered,
    /// The user has just answered the consent page for this very request.
    Given,
}

/// Permission to issue a code for this session. Only [`decide`] makes one, so no caller can
/// issue a code without every check of the authorization endpoint (OIDC Core §3.1.2.1,
/// CWE-288: no alternate path around re-authentication).
// Not `#[non_exhaustive]`: that seals it only outside the crate, and the point is that no
// other module of ours can make one.
#[allow(clippy::manual_non_exhaustive)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub sid: Option<String>,
    _sealed: (),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Login,
    Consent,
    Issue(Approval),
    Fail(OAuthError),
}

/// OIDC Core §3.1.2.3 and §3.1.2.4: does this request need a login, a consent, or neither?
pub fn decide(req: &AuthorizeRequest, session: Option<SessionView<'_>>, consent: Consent, skip_consent: bool, now: i64) -> Next {
    let s = match session {
        Some(s) if !login_needed(req, s, now) => s,
        _ => {
            return if req.prompt_none {
                Next::Fail(OAuthError::new(ErrorCode::LoginRequired, "the user is not logged in"))
            } else {
                Next::Login
            };
        }
    };
    let consent_needed = !skip_consent
        && match consent {
            Consent::Missing => true,
            Consent::Covered => req.prompt_consent,
            Consent::Given => false,
        };
    if consent_needed {
        return if req.prompt_none {
            Next::Fail(OAuthError::new(
                ErrorCode::ConsentRequired,
                "the user has not consented to this client",
            ))
        } else {
            Next::Consent
        };
    }
    Next::Issue(Approval {
        user_id: s.user_id.to_owned(),
        auth_time: s.auth_time,
        amr: s.amr.to_vec(),
        acr: s.acr.to_owned(),
        sid: s.sid.map(str::to_owned),
        _sealed: (),
    })
}

fn login_needed(req: &AuthorizeRequest, s: SessionView<'_>, now: i64) -> bool {
    let wrong_user = req.hint_sub.as_deref().is_some_and(|sub| sub != s.user_id);
    let too_old = req.max_age.is_some_and(|m| now - s.auth_time > m);
    let too_weak = s.acr != ACR_2FA;
    // A login made for this request settles it, even as another user than the hint
    // named: the relying party sees the new `sub` and decides. A client that demands
    // two factors is never settled by one.
    (req.require_2fa && too_weak) || !req.fresh_login && (wrong_user || req.prompt_login || too_old || (req.wants_2fa() && too_weak))
}

/// The parameters of an authorization response (RFC 6749 §4.1.2, RFC 9207 `iss`).
pub fn success_params(code: &str, target: &Target, issuer: &str) -> Vec<(&'static str, String)> {
    let mut p = vec![("code", code.to_owned())];
    if let Some(s) = &target.state {
        p.push(("state", s.clone()));
    }
    p.push(("iss", issuer.to_owned()));
    p
}

pub fn error_params(err: &OAuthError, target: &Target, issuer: &str) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("error", err.code.as_str().to_owned()),
        ("error_description", err.description.to_string()),
    ];
    if let Some(s) = &target.state {
        p.push(("state", s.clone()));
    }
    p.push(("iss", issuer.to_owned()));
    p
}

/// Appends parameters to the redirect URI's query, keeping any query it already has.
pub fn query_url(redirect_uri: &str, params: &[(&'static str, String)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{}", ser.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            client_id: "c1".into(),
            secret_hash: None,
            name: "c".into(),
            redirect_uris: vec!["https://rp.example/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec!["authorization_code".into()],
            is_public: true,
            skip_consent: false,
            id_token_alg: "RS256".into(),
            require_2fa: false,
            created_at: 0,
            meta: Default::default(),
            registration_token_hash: None,
            secret_sealed: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: vec![],
            resources: vec![],
            access_token_alg: "RS256".into(),
        }
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params(extra: &[(&str, &str)]) -> Params {
        let mut base: Vec<(String, String)> = [
            ("client_id", "c1"),
            ("redirect_uri", "https://rp.example/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            base.retain(|(bk, _)| bk != k);
            if !v.is_empty() {
                base.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        Params::from_pairs(base)
    }

    fn run(extra: &[(&str, &str)]) -> Result<AuthorizeRequest, OAuthError> {
        let p = params(extra);
        let c = client();
        let t = check_target(&p, Some(&c)).unwrap();
        validate(&p, &c, &t, Hint::Absent)
    }

    #[test]
    fn target_checks_come_first() {
        let c = client();
        assert_eq!(
            check_target(&params(&[("client_id", "")]), Some(&c)).unwrap_err(),
            Untrusted::MissingClientId
        );
        assert_eq!(check_target(&params(&[]), None).unwrap_err(), Untrusted::UnknownClient);
        assert_eq!(
            check_target(&params(&[("redirect_uri", "")]), Some(&c)).unwrap_err(),
            Untrusted::MissingRedirectUri
        );
        assert_eq!(
            check_target(&params(&[("redirect_uri", "https://rp.example/cb/")]), Some(&c)).unwrap_err(),
            Untrusted::RedirectUriMismatch
        );
    }

    #[test]
    fn error_codes_in_order() {
        for (extra, code) in [
            (&[("response_type", "")][..], ErrorCode::InvalidRequest),
            (&[("response_type", "token")][..], ErrorCode::UnsupportedResponseType),
            (&[("scope", "email")][..], ErrorCode::InvalidScope),
            (&[("code_challenge", "")][..], ErrorCode::InvalidRequest),
            (&[("code_challenge_method", "plain")][..], ErrorCode::InvalidRequest),
            (&[("prompt", "none login")][..], ErrorCode::InvalidRequest),
            (&[("max_age", "-1")][..], ErrorCode::InvalidRequest),
            (&[("request", "eyJ")][..], ErrorCode::RequestNotSupported),
            (&[("response_mode", "fragment")][..], ErrorCode::InvalidRequest),
            (&[("resource", "https://api.example/")][..], ErrorCode::InvalidTarget),
        ] {
            assert_eq!(run(extra).unwrap_err().code, code, "{extra:?}");
        }
    }

    /// RFC 8707 §2: `resource` may repeat, unlike every other parameter.
    #[test]
    fn resources_may_repeat() {
        let mut c = client();
        c.resources = vec!["https://a.example/".into(), "https://b.example/".into()];
        let mut pairs: Vec<(String, String)> = vec![];
        for (k, v) in [
            ("client_id", "c1"),
            ("redirect_uri", "https://rp.example/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", "https://b.example/"),
            ("resource", ""),
            ("resource", "https://a.example/"),
        ] {
            pairs.push((k.into(), v.into()));
        }
        let p = Params::from_pairs(pairs);
        let t = check_target(&p, Some(&c)).unwrap();
        let req = validate(&p, &c, &t, Hint::Absent).unwrap();
        assert_eq!(req.resources, ["https://b.example/", "https://a.example/"]);
    }

    #[test]
    fn stored_fields_are_bounded() {
        let long = |n: usize| "a".repeat(n);
        for (name, cap) in [
            ("nonce", MAX_NONCE),
            ("login_hint", MAX_LOGIN_HINT),
            ("ui_locales", MAX_UI_LOCALES),
            ("acr_values", MAX_ACR_VALUES),
            ("display", MAX_OTHER),
        ] {
            let at_cap = long(cap);
            let over = long(cap + 1);
            if name != "display" {
                run(&[(name, &at_cap)]).unwrap();
            }
            let e = run(&[(name, &over)]).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{name}");
        }
        // An over-long state is refused and not echoed back in the error redirect.
        let p = params(&[("state", &long(MAX_STATE + 1))]);
        let t = check_target(&p, Some(&client())).unwrap();
        assert_eq!(t.state, None);
        assert_eq!(
            validate(&p, &client(), &t, Hint::Absent).unwrap_err().description,
            "state is too long"
        );
        run(&[("state", &long(MAX_STATE))]).unwrap();
    }

    #[test]
    fn descriptions_echo_no_request_value() {
        for extra in [&[("prompt", "\"§\\\u{1b}")][..], &[("x\"§", "1"), ("x\"§", "2")][..]] {
            let mut pairs: Vec<(String, String)> = vec![];
            for (k, v) in [
                ("client_id", "c1"),
                ("redirect_uri", "https://rp.example/cb"),
                ("response_type", "code"),
                ("scope", "openid"),
            ] {
                pairs.push((k.into(), v.into()));
            }
            pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            let p = Params::from_pairs(pairs);
            let t = check_target(&p, Some(&client())).unwrap();
            let d = validate(&p, &client(), &t, Hint::Absent).unwrap_err().description;
            assert!(d.chars().all(super::super::error::description_char), "{d}");
            assert!(!d.contains('?'), "nothing needed replacing: {d}");
        }
    }

    #[test]
    fn repeated_parameters_are_rejected() {
        let mut pairs: Vec<(String, String)> = vec![];
        for (k, v) in [
            ("client_id", "c1"),
            ("redirect_uri", "https://rp.example/cb"),
            ("scope", "openid"),
            ("scope", "openid"),
        ] {
            pairs.push((k.into(), v.into()));
        }
        let p = Params::from_pairs(pairs);
        let t = check_target(&p, Some(&client())).unwrap();
        assert_eq!(
            validate(&p, &client(), &t, Hint::Absent).unwrap_err().description,
            "parameter scope is repeated"
        );
        let p = Params::from_pairs(vec![("client_id".into(), "c1".into()), ("client_id".into(), "c2".into())]);
        assert_eq!(check_target(&p, Some(&client())).unwrap_err(), Untrusted::RepeatedClientOrRedirect);
    }

    #[test]
    fn decisions() {
        let req = run(&[]).unwrap();
        let s = SessionView {
            user_id: "u1",
            auth_time: 1000,
            amr: &[],
            acr: "urn:clef:acr:1fa",
            sid: None,
        };
        let mut hinted = run(&[]).unwrap();
        hinted.hint_sub = Some("u2".into());
        assert_eq!(decide(&hinted, Some(s), Consent::Covered, false, 1000), Next::Login);
        hinted.fresh_login = true;
        assert!(matches!(decide(&hinted, Some(s), Consent::Covered, false, 1000), Next::Issue(_)));
        assert_eq!(decide(&req, None, Consent::Missing, false, 1000), Next::Login);
        assert_eq!(decide(&req, Some(s), Consent::Missing, false, 1000), Next::Consent);
        assert!(matches!(decide(&req, Some(s), Consent::Covered, false, 1000), Next::Issue(_)));
        assert!(matches!(decide(&req, Some(s), Consent::Missing, true, 1000), Next::Issue(_)));

        let none = run(&[("prompt", "none")]).unwrap();
        assert_eq!(
            decide(&none, None, Consent::Covered, false, 1000),
            Next::Fail(OAuthError::new(ErrorCode::LoginRequired, "the user is not logged in"))
        );
        assert!(matches!(decide(&none, Some(s), Consent::Missing, false, 1000), Next::Fail(e) if e.code == ErrorCode::ConsentRequired));

        let mut aged = run(&[("max_age", "60")]).unwrap();
        assert!(matches!(decide(&aged, Some(s), Consent::Covered, false, 1060), Next::Issue(_)));
        assert_eq!(decide(&aged, Some(s), Consent::Covered, false, 1061), Next::Login);
        aged.fresh_login = true;
        assert!(matches!(decide(&aged, Some(s), Consent::Covered, false, 1061), Next::Issue(_)));

        let strong = run(&[("acr_values", "urn:clef:acr:2fa")]).unwrap();
        assert_eq!(decide(&strong, Some(s), Consent::Covered, false, 1000), Next::Login);
        let s2 = SessionView {
            acr: "urn:clef:acr:2fa",
            sid: None,
            ..s
        };
        assert!(matches!(decide(&strong, Some(s2), Consent::Covered, false, 1000), Next::Issue(_)));

        let mut demanded = run(&[]).unwrap();
        demanded.require_2fa = true;
        demanded.fresh_login = true;
        assert_eq!(
            decide(&demanded, Some(s), Consent::Covered, false, 1000),
            Next::Login,
            "one factor never satisfies a 2FA client"
        );
        assert!(matches!(decide(&demanded, Some(s2), Consent::Covered, false, 1000), Next::Issue(_)));

        let login = run(&[("prompt", "login")]).unwrap();
        assert_eq!(decide(&login, Some(s), Consent::Covered, false, 1000), Next::Login);
        // Answering the consent page settles consent, never the login checks (issue 7).
        assert_eq!(decide(&login, Some(s), Consent::Given, false, 1000), Next::Login);
        let mut aged = run(&[("max_age", "1")]).unwrap();
        assert_eq!(decide(&aged, Some(s), Consent::Given, false, 1003), Next::Login);
        aged.fresh_login = true;
        assert!(matches!(decide(&aged, Some(s), Consent::Given, false, 1003), Next::Issue(_)));
        let mut demanded = run(&[]).unwrap();
        demanded.require_2fa = true;
        assert_eq!(decide(&demanded, Some(s), Consent::Given, false, 1000), Next::Login);

        let consent = run(&[("prompt", "consent")]).unwrap();
        assert_eq!(decide(&consent, Some(s), Consent::Covered, false, 1000), Next::Consent);
        assert!(matches!(decide(&consent, Some(s), Consent::Given, false, 1000), Next::Issue(_)));
    }

    #[test]
    fn approval_carries_the_session() {
        let s = SessionView {
            user_id: "u1",
            auth_time: 990,
            amr: &["pwd".to_owned(), "otp".to_owned()],
            acr: ACR_2FA,
            sid: Some("s1"),
        };
        let Next::Issue(a) = decide(&run(&[]).unwrap(), Some(s), Consent::Covered, false, 1000) else {
            panic!("expected a code");
        };
        assert_eq!((a.user_id.as_str(), a.auth_time, a.acr.as_str()), ("u1", 990, ACR_2FA));
        assert_eq!(a.sid.as_deref(), Some("s1"));
        assert_eq!(a.amr, ["pwd", "otp"]);
    }

    /// OIDC Core §3.1.2.1: `acr_values` is a preference list; any acceptable level will do.
    #[test]
    fn acr_values_are_a_preference_list() {
        for (acr_values, require_2fa, wants) in [
            ("", false, false),
            ("urn:clef:acr:1fa", false, false),
            ("urn:clef:acr:2fa", false, true),
            ("urn:clef:acr:2fa urn:clef:acr:1fa", false, false),
            ("urn:clef:acr:1fa urn:clef:acr:2fa", false, false),
            ("urn:clef:acr:2fa urn:other", false, true),
            ("urn:other", false, false),
            ("urn:other urn:clef:acr:1fa", false, false),
            ("urn:clef:acr:2fa urn:clef:acr:2fa", false, true),
            ("", true, true),
            ("urn:clef:acr:1fa", true, true),
            ("urn:clef:acr:1fa urn:clef:acr:2fa", true, true),
        ] {
            let mut req = run(&[("acr_values", acr_values)]).unwrap();
            req.require_2fa = require_2fa;
            assert_eq!(req.wants_2fa(), wants, "{acr_values:?} require_2fa={require_2fa}");
            let one = SessionView {
                user_id: "u1",
                auth_time: 1000,
                amr: &[],
                acr: "urn:clef:acr:1fa",
                sid: None,
            };
            let got = decide(&req, Some(one), Consent::Covered, false, 1000);
            assert_eq!(got == Next::Login, wants, "{acr_values:?} require_2fa={require_2fa}: {got:?}");
        }
    }

    #[test]
    fn query_url_keeps_existing_query() {
        let p = vec![("code", "a b".to_owned()), ("iss", "https://x".to_owned())];
        assert_eq!(query_url("https://rp/cb", &p), "https://rp/cb?code=a+b&iss=https%3A%2F%2Fx");
        assert_eq!(query_url("https://rp/cb?x=1", &p), "https://rp/cb?x=1&code=a+b&iss=https%3A%2F%2Fx");
    }
}
