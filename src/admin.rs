//! Operator actions shared by the CLI and the tests: create clients and users.

use crate::auth::password::Hasher;
use crate::keys::Alg;
use crate::oauth::redirect_uri;
use crate::secret::{random_token, sha256_b64};
use crate::store::{Db, NewClient, NewUser, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

#[derive(Clone, Debug, Default)]
pub struct ClientSpec {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub public: bool,
    pub skip_consent: bool,
    pub id_token_alg: Option<String>,
    pub require_2fa: bool,
    /// Extra web origins allowed to call the JSON endpoints (CORS), beyond the redirect URIs'.
    pub allowed_origins: Vec<String>,
    /// Back-Channel Logout 1.0 §2.2, named as the registration metadata.
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    /// Scopes a client_credentials request may ask for (API scopes, not the user scopes).
    pub scopes: Vec<String>,
    /// RFC 8707 resources the client's access tokens may be issued to.
    pub resources: Vec<String>,
    /// RS256 or ES256 for access and ID tokens; `id_token_alg`, when set, wins for ID tokens.
    pub token_alg: Option<String>,
    // dcr
    /// `token_endpoint_auth_method` (RFC 7591 §2); `None`: Basic or POST, or none if public.
    pub auth_method: Option<String>,
    /// For `private_key_jwt`: the client's JWK Set URL, or the set itself.
    pub jwks_uri: Option<String>,
    pub jwks: Option<serde_json::Value>,
}

#[derive(Debug, serde::Serialize)]
pub struct CreatedClient {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

pub async fn create_client(db: &Db, spec: &ClientSpec, now: i64) -> Result<CreatedClient, AdminError> {
    if spec.name.trim().is_empty() {
        return Err(AdminError::Invalid("--name must not be empty".into()));
    }
    for uri in spec.redirect_uris.iter().chain(&spec.post_logout_redirect_uris) {
        redirect_uri::check_registrable(uri).map_err(AdminError::Invalid)?;
    }
    check_backchannel(spec.backchannel_logout_uri.as_deref(), spec.backchannel_logout_session_required)?;
    let allowed_origins = spec
        .allowed_origins
        .iter()
        .map(|o| crate::oauth::origin::check_registrable(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(AdminError::Invalid)?;
    // Repeated flags or one comma-separated list.
    let mut grant_types: Vec<String> = Vec::new();
    for g in spec
        .grant_types
        .iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !grant_types.iter().any(|x| x == g) {
            grant_types.push(g.to_owned());
        }
    }
    if grant_types.is_empty() {
        grant_types = vec!["authorization_code".to_owned(), "refresh_token".to_owned()];
    }
    for g in &grant_types {
        if !crate::oauth::token::GRANT_TYPES.contains(&g.as_str()) {
            return Err(AdminError::Invalid(format!(
                "unsupported grant type {g:?} (supported: {})",
                crate::oauth::token::GRANT_TYPES.join(", ")
            )));
        }
    }
    let has = |g: &str| grant_types.iter().any(|x| x == g);
    // Only the code flow redirects; a service client (client_credentials) needs no URI.
    if has("authorization_code") && spec.redirect_uris.is_empty() {
        return Err(AdminError::Invalid("at least one --redirect-uri is required".into()));
    }
    if has("refresh_token") && !has("authorization_code") {
        return Err(AdminError::Invalid(
            "refresh_token needs authorization_code: client_credentials issues no refresh token".into(),
        ));
    }
    // RFC 6749 §4.4: client_credentials is for confidential clients only.
    if spec.public && has("client_credentials") {
        return Err(AdminError::Invalid("a public client cannot use client_credentials".into()));
    }
    let scopes = client_scopes(&spec.scopes)?;
    let mut resources: Vec<String> = Vec::new();
    for r in &spec.resources {
        crate::oauth::resource::check_registrable(r).map_err(AdminError::Invalid)?;
        if !resources.contains(r) {
            resources.push(r.clone());
        }
    }
    let algs = |what: &str, v: &str| match Alg::parse(v) {
        Some(a) => Ok(a.as_str().to_owned()),
        None => Err(AdminError::Invalid(format!("unsupported {what} {v:?} (RS256 or ES256)"))),
    };
    let access_token_alg = algs("--token-alg", spec.token_alg.as_deref().unwrap_or("RS256"))?;
    let alg = match &spec.id_token_alg {
        Some(a) => algs("id_token_signed_response_alg", a)?,
        None => access_token_alg.clone(),
    };
    // dcr
    let mut meta = crate::store::ClientMeta::default();
    if let Some(m) = &spec.auth_method {
        use crate::oauth::registration::AUTH_METHODS;
        if !AUTH_METHODS.contains(&m.as_str()) {
            return Err(AdminError::Invalid(format!(
                "unsupported --auth-method {m:?} (supported: {})",
                AUTH_METHODS.join(", ")
            )));
        }
        if (m == "none") != spec.public {
            return Err(AdminError::Invalid(
                "--public goes with --auth-method none, and only with it".into(),
            ));
        }
        if m == "client_secret_jwt" {
            return Err(AdminError::Invalid(
                "client_secret_jwt is for registered clients (POST /register); use private_key_jwt here".into(),
            ));
        }
        meta.token_endpoint_auth_method = Some(m.clone());
    }
    if let Some(doc) = &spec.jwks {
        crate::oauth::jose::parse_jwks(doc).map_err(|e| AdminError::Invalid(format!("--jwks-file: {e}")))?;
        meta.jwks = Some(doc.clone());
    }
    if let Some(u) = &spec.jwks_uri {
        match url::Url::parse(u) {
            Ok(p) if p.scheme() == "https" || (p.scheme() == "http" && crate::remote::is_loopback(&p)) => {}
            _ => return Err(AdminError::Invalid("--jwks-uri must be an https URL".into())),
        }
        meta.jwks_uri = Some(u.clone());
    }
    if spec.auth_method.as_deref() == Some("private_key_jwt") && (meta.jwks.is_none() == meta.jwks_uri.is_none()) {
        return Err(AdminError::Invalid("private_key_jwt needs one of --jwks-uri or --jwks-file".into()));
    }
    let client_id = random_token(16);
    // A private_key_jwt client proves itself with its key: no secret to leak.
    let secret = (!spec.public && spec.auth_method.as_deref() != Some("private_key_jwt")).then(|| random_token(32));
    db.client_create(
        &NewClient {
            client_id: client_id.clone(),
            secret_hash: secret.as_deref().map(sha256_b64),
            name: spec.name.trim().to_owned(),
            redirect_uris: spec.redirect_uris.clone(),
            post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
            grant_types,
            is_public: spec.public,
            skip_consent: spec.skip_consent,
            id_token_alg: alg,
            require_2fa: spec.require_2fa,
            allowed_origins,
            backchannel_logout_uri: spec.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: spec.backchannel_logout_session_required,
            scopes,
            resources,
            access_token_alg,
            meta,
            registration_token_hash: None,
            secret_sealed: None,
        },
        now,
    )
    .await?;
    Ok(CreatedClient {
        client_id,
        client_secret: secret,
    })
}

/// §2.2: `backchannel_logout_session_required` means something only with a URI.
fn check_backchannel(uri: Option<&str>, session_required: bool) -> Result<(), AdminError> {
    match uri {
        Some(u) => crate::oauth::backchannel::check_registrable(u).map_err(AdminError::Invalid),
        None if session_required => Err(AdminError::Invalid(
            "--backchannel-logout-session-required needs --backchannel-logout-uri".into(),
        )),
        None => Ok(()),
    }
}

/// `clients update`: sets (or with `None`, removes) the back-channel logout registration.
pub async fn set_backchannel(db: &Db, client_id: &str, uri: Option<&str>, session_required: bool) -> Result<(), AdminError> {
    check_backchannel(uri, session_required)?;
    if !db.client_set_backchannel(client_id, uri, session_required).await? {
        return Err(AdminError::Invalid(format!("no client with id {client_id}")));
    }
    Ok(())
}

/// `sessions end --user EMAIL`: ends every login session of the user; their relying parties
/// with a back-channel logout URI are notified by the running server. Returns how many ended.
pub async fn end_sessions(db: &Db, email: &str, now: i64) -> Result<u64, AdminError> {
    let Some(user) = db.user_by_email(email).await? else {
        return Err(AdminError::Invalid(format!(
            "no user with the email {}",
            crate::store::normalize_email(email)
        )));
    };
    let n = db.sessions_end_all_for_user(&user.user_id, now).await?;
    db.event_record(
        &user.user_id,
        crate::store::EventKind::OperatorSessionsEnded,
        &crate::store::NewEvent::default(),
        now,
    )
    .await?;
    tracing::info!(user_id = %user.user_id, sessions_ended = n, "sessions ended by the operator");
    Ok(n)
}

/// `--scope` values, space- or comma-separated: API scopes only. `openid` and the user scopes
/// release claims about a user, which a client_credentials token has none of.
fn client_scopes(raw: &[String]) -> Result<Vec<String>, AdminError> {
    let mut out: Vec<String> = Vec::new();
    for s in raw.iter().flat_map(|r| r.split([' ', ','])).filter(|s| !s.is_empty()) {
        if !crate::oauth::scope::is_token(s) {
            return Err(AdminError::Invalid(format!("{s:?} is not a scope (RFC 6749 section 3.3)")));
        }
        if crate::oauth::scope::SUPPORTED.contains(&s) {
            return Err(AdminError::Invalid(format!(
                "--scope {s:?}: openid and the user scopes are not for client_credentials; list API scopes"
            )));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, Default)]
pub struct UserSpec {
    pub email: String,
    pub password: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub verified: bool,
    pub phone: Option<String>,
    pub address: Option<String>,
}

pub async fn create_user(db: &Db, hasher: &Hasher, spec: &UserSpec, now: i64) -> Result<String, AdminError> {
    let email = spec.email.trim();
    match email.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && d.contains('.') && !email.contains(char::is_whitespace) => {}
        _ => return Err(AdminError::Invalid(format!("{email:?} is not an email address"))),
    }
    if let Some(p) = &spec.password
        && p.chars().count() < 8
    {
        return Err(AdminError::Invalid("the password must be at least 8 characters".into()));
    }
    // E.164 is what the phone_number claim should carry (OIDC Core §5.1).
    if let Some(p) = &spec.phone
        && !(p.starts_with('+') && (8..=16).contains(&p.len()) && p[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(AdminError::Invalid(format!(
            "{p:?} is not an E.164 phone number such as +33612345678"
        )));
    }
    for r in &spec.roles {
        if r.is_empty() || r.contains(char::is_whitespace) {
            return Err(AdminError::Invalid(format!("{r:?} is not a role name")));
        }
    }
    if db.user_by_email(email).await?.is_some() {
        return Err(AdminError::Invalid(format!("a user with email {email} already exists")));
    }
    let password_hash = match &spec.password {
        Some(p) => Some(hasher.hash(p).await?),
        None => None,
    };
    let user_id = random_token(16);
    db.user_create(
        &NewUser {
            user_id: user_id.clone(),
            email: email.to_owned(),
            email_verified: spec.verified,
            name: spec.name.clone(),
            password_hash,
            roles: spec.roles.clone(),
            locale: None,
            phone_number: spec.phone.clone(),
            address: spec.address.clone(),
            // The operator's word is trusted: the password works as set, verified or not.
            password_pending: false,
        },
        now,
    )
    .await?;
    Ok(user_id)
}
