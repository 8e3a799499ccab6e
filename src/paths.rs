//! Route paths, shared by the router and the discovery document so the two cannot drift.

pub const DISCOVERY: &str = "/.well-known/openid-configuration";
pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
pub const JWKS: &str = "/jwks";
pub const AUTHORIZE: &str = "/authorize";
pub const AUTHORIZE_RESUME: &str = "/authorize/resume";
pub const TOKEN: &str = "/token";
pub const USERINFO: &str = "/userinfo";
pub const REVOKE: &str = "/revoke";
pub const INTROSPECT: &str = "/introspect";
pub const END_SESSION: &str = "/logout";
pub const LOGIN: &str = "/login";
pub const LOGIN_CODE: &str = "/login/code";
pub const LOGIN_CODE_VERIFY: &str = "/login/code/verify";
pub const LOGIN_LINK: &str = "/login/link";
/// The password as a further factor of a login attempt.
pub const LOGIN_PASSWORD: &str = "/login/password";
/// TOTP and backup codes as the second factor of a login attempt.
pub const LOGIN_TOTP: &str = "/login/totp";
pub const LOGIN_BACKUP_CODE: &str = "/login/backup-code";
pub const SIGNUP: &str = "/signup";
pub const PASSWORD_FORGOT: &str = "/password/forgot";
pub const PASSWORD_RESET: &str = "/password/reset";
pub const CONSENT: &str = "/consent";
pub const ACCOUNT: &str = "/account";
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const ACCOUNT_API_STATUS: &str = "/account/api/status";
pub const TWO_FACTOR: &str = "/account/two-factor";
pub const TWO_FACTOR_ENABLE: &str = "/account/two-factor/enable";
pub const TWO_FACTOR_CONFIRM: &str = "/account/two-factor/confirm";
pub const TWO_FACTOR_DISABLE: &str = "/account/two-factor/disable";
pub const TWO_FACTOR_BACKUP_CODES: &str = "/account/two-factor/backup-codes";
/// Re-authentication before a sensitive action; `?then=` names the action (added on the new
/// login chain).
pub const REAUTH: &str = "/account/reauth";
pub const ACCOUNT_PASSWORD: &str = "/account/password";
pub const ACCOUNT_EMAIL: &str = "/account/email";
pub const ACCOUNT_EMAIL_VERIFY: &str = "/account/email/verify";
pub const ACCOUNT_SESSION_END: &str = "/account/sessions/end";
pub const ACCOUNT_SESSIONS_END: &str = "/account/sessions/end-others";
pub const ACCOUNT_API_TOTP_START: &str = "/account/api/totp/start";
pub const ACCOUNT_API_TOTP_CONFIRM: &str = "/account/api/totp/confirm";
pub const ACCOUNT_API_TOTP_DISABLE: &str = "/account/api/totp/disable";
pub const ACCOUNT_API_BACKUP_CODES: &str = "/account/api/backup-codes";
pub const ACCOUNT_API_SESSIONS: &str = "/account/api/sessions";
/// `{handle}`: a handle from the sessions list (axum path syntax).
pub const ACCOUNT_API_SESSION_END: &str = "/account/api/sessions/{handle}/end";
/// The forms of a re-authentication (`/account/reauth`): one per method it may ask for.
pub const REAUTH_PASSWORD: &str = "/account/reauth/password";
pub const REAUTH_TOTP: &str = "/account/reauth/totp";
pub const REAUTH_BACKUP_CODE: &str = "/account/reauth/backup-code";
pub const REAUTH_CODE: &str = "/account/reauth/code";
// fed
/// Starts the redirect to upstream `{id}` (a login page button, CSRF-checked POST).
pub const LOGIN_UPSTREAM: &str = "/login/upstream/{id}";
/// The upstream's redirect back, one fixed path per upstream: the URI to register there.
pub const LOGIN_CALLBACK: &str = "/login/callback/{id}";
/// The emailed code that confirms a link by logging in to the local account.
pub const LOGIN_UPSTREAM_CODE: &str = "/login/upstream-link/code";
/// The account page's "Link Google" and "Unlink".
pub const ACCOUNT_UPSTREAM_LINK: &str = "/account/upstream/{id}/link";
pub const ACCOUNT_UPSTREAM_UNLINK: &str = "/account/upstream/unlink";
// ops
/// Prometheus metrics: on `CLEF_METRICS_LISTEN`, or here too with `CLEF_METRICS=public`.
pub const METRICS: &str = "/metrics";
// dcr
/// RFC 7591 §3; a client's configuration endpoint (RFC 7592 §2) is `/register/{client_id}`.
pub const REGISTER: &str = "/register";
pub const REGISTER_CLIENT: &str = "/register/{client_id}";
