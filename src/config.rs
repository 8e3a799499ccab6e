//! Settings: defaults, then `clef.toml`, then `CLEF_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

fn bad(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

/// The product's name where a setting needs one (the TOTP issuer label); pages take theirs
/// from the catalogue's `app.name`.
pub const DEFAULT_PRODUCT_NAME: &str = "clef";
/// `CLEF_REFRESH_GRACE` default and bound, in seconds.
pub const DEFAULT_REFRESH_GRACE: i64 = 2;
pub const MAX_REFRESH_GRACE: i64 = 60;

/// The file and environment shape: everything optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub issuer: Option<String>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub keys_dir: Option<String>,
    pub signup: Option<String>,
    pub templates_dir: Option<String>,
    pub session_ttl: Option<i64>,
    pub code_ttl: Option<i64>,
    pub access_token_ttl: Option<i64>,
    pub id_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    pub max_concurrent_hashes: Option<i64>,
    pub log: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub outbox_dir: Option<String>,
    pub otp_ttl: Option<i64>,
    pub code_send_limit: Option<i64>,
    pub code_verify_limit: Option<i64>,
    pub login_failure_limit: Option<i64>,
    pub lockout: Option<i64>,
    pub trusted_proxies: Option<Vec<String>>,
    pub forwarded_header: Option<String>,
    pub ip_failure_limit: Option<i64>,
    pub ip_code_send_limit: Option<i64>,
    pub ip_code_verify_limit: Option<i64>,
    pub code_failure_limit: Option<i64>,
    pub secret_key: Option<String>,
    pub header_timeout: Option<i64>,
    pub body_timeout: Option<i64>,
    pub max_connections: Option<i64>,
    pub db_acquire_timeout: Option<i64>,
    pub totp_issuer: Option<String>,
    pub reauth_after: Option<i64>,
    pub google_client_id: Option<String>,
    pub google_client_secret: Option<String>,
    pub google_issuer: Option<String>,
    pub google_hosted_domain: Option<String>,
    /// `[[upstream]]` tables: OpenID Connect providers users may log in with.
    pub upstream: Option<Vec<RawUpstream>>,
    // grants
    pub refresh_grace: Option<i64>,
    // fed
    pub upstream_key_refresh: Option<i64>,
    // ops
    pub metrics_listen: Option<String>,
    pub metrics: Option<String>,
    pub log_format: Option<String>,
    pub shutdown_grace: Option<i64>,
    pub audit_retention: Option<String>,
    // dcr
    /// `off`, `open` or `token:SECRET` (RFC 7591 §3).
    pub registration: Option<String>,
    // multi
    pub db_pool_size: Option<i64>,
    pub keys_reload_interval: Option<i64>,
}

/// One `[[upstream]]` table of `clef.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub button_label: Option<String>,
    pub trust_email_verified: Option<bool>,
    pub trust_mfa: Option<bool>,
}

/// Every setting with its environment name, in the order README documents them.
pub const ENV: &[(&str, &str)] = &[
    ("CLEF_ISSUER", "issuer"),
    ("CLEF_LISTEN", "listen"),
    ("CLEF_DATABASE_URL", "database_url"),
    ("CLEF_KEYS_DIR", "keys_dir"),
    ("CLEF_SIGNUP", "signup"),
    ("CLEF_TEMPLATES_DIR", "templates_dir"),
    ("CLEF_SESSION_TTL", "session_ttl"),
    ("CLEF_CODE_TTL", "code_ttl"),
    ("CLEF_ACCESS_TOKEN_TTL", "access_token_ttl"),
    ("CLEF_ID_TOKEN_TTL", "id_token_ttl"),
    ("CLEF_REFRESH_TOKEN_TTL", "refresh_token_ttl"),
    ("CLEF_MAX_CONCURRENT_HASHES", "max_concurrent_hashes"),
    ("CLEF_LOG", "log"),
    ("CLEF_SMTP_URL", "smtp_url"),
    ("CLEF_MAIL_FROM", "mail_from"),
    ("CLEF_OUTBOX_DIR", "outbox_dir"),
    ("CLEF_OTP_TTL", "otp_ttl"),
    ("CLEF_CODE_SEND_LIMIT", "code_send_limit"),
    ("CLEF_CODE_VERIFY_LIMIT", "code_verify_limit"),
    ("CLEF_LOGIN_FAILURE_LIMIT", "login_failure_limit"),
    ("CLEF_LOCKOUT", "lockout"),
    ("CLEF_TRUSTED_PROXIES", "trusted_proxies"),
    ("CLEF_FORWARDED_HEADER", "forwarded_header"),
    ("CLEF_IP_FAILURE_LIMIT", "ip_failure_limit"),
    ("CLEF_IP_CODE_SEND_LIMIT", "ip_code_send_limit"),
    ("CLEF_IP_CODE_VERIFY_LIMIT", "ip_code_verify_limit"),
    ("CLEF_CODE_FAILURE_LIMIT", "code_failure_limit"),
    ("CLEF_SECRET_KEY", "secret_key"),
    ("CLEF_HEADER_TIMEOUT", "header_timeout"),
    ("CLEF_BODY_TIMEOUT", "body_timeout"),
    ("CLEF_MAX_CONNECTIONS", "max_connections"),
    ("CLEF_DB_ACQUIRE_TIMEOUT", "db_acquire_timeout"),
    ("CLEF_TOTP_ISSUER", "totp_issuer"),
    ("CLEF_REAUTH_AFTER", "reauth_after"),
    ("CLEF_GOOGLE_CLIENT_ID", "google_client_id"),
    ("CLEF_GOOGLE_CLIENT_SECRET", "google_client_secret"),
    ("CLEF_GOOGLE_ISSUER", "google_issuer"),
    ("CLEF_GOOGLE_HOSTED_DOMAIN", "google_hosted_domain"),
    // grants
    ("CLEF_REFRESH_GRACE", "refresh_grace"),
    // fed
    ("CLEF_UPSTREAM_KEY_REFRESH", "upstream_key_refresh"),
    // ops
    ("CLEF_METRICS_LISTEN", "metrics_listen"),
    ("CLEF_METRICS", "metrics"),
    ("CLEF_LOG_FORMAT", "log_format"),
    ("CLEF_SHUTDOWN_GRACE", "shutdown_grace"),
    ("CLEF_AUDIT_RETENTION", "audit_retention"),
    // dcr
    ("CLEF_REGISTRATION", "registration"),
    // multi
    ("CLEF_DB_POOL_SIZE", "db_pool_size"),
    ("CLEF_KEYS_RELOAD_INTERVAL", "keys_reload_interval"),
];

#[derive(Clone, Debug)]
pub struct Config {
    /// Without a trailing slash; every endpoint URL is `issuer + path`.
    pub issuer: String,
    pub issuer_is_https: bool,
    /// scheme://host[:port], what browsers send as `Origin`.
    pub issuer_origin: String,
    pub listen: SocketAddr,
    pub database_url: String,
    pub keys_dir: PathBuf,
    pub signup_open: bool,
    pub templates_dir: Option<PathBuf>,
    pub session_ttl: i64,
    pub code_ttl: i64,
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub max_concurrent_hashes: usize,
    pub log: String,
    /// `None`: mail goes to `outbox_dir` as .eml files.
    pub smtp_url: Option<Secret>,
    pub mail_from: String,
    pub outbox_dir: PathBuf,
    pub otp_ttl: i64,
    pub limits: Limits,
    /// Peers whose forwarding headers are believed; empty: every header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarded_header: ForwardedHeader,
    /// `CLEF_SECRET_KEY`: the HMAC keys, first signs, all verify. `None`: `keys_dir/secret.key`.
    pub secret_key: Option<Secret>,
    /// Time allowed for a request's headers, and for an idle keep-alive connection.
    pub header_timeout: std::time::Duration,
    /// Time allowed for a whole request body to arrive.
    pub body_timeout: std::time::Duration,
    /// Open connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a database call waits for a pooled connection before answering 503.
    pub db_acquire_timeout: std::time::Duration,
    /// The issuer label authenticator apps show next to the account (otpauth URI).
    pub totp_issuer: String,
    /// Sensitive actions need an authentication at most this many seconds old.
    pub reauth_after: i64,
    /// OpenID Connect upstreams, Google first when configured; ids are unique.
    pub upstreams: Vec<Upstream>,
    /// Seconds after a refresh token's rotation during which presenting it again returns the
    /// same successor, once; 0 turns the grace off (reuse always revokes the grant).
    pub refresh_grace: i64,
    // fed
    /// An upstream ID token naming an unknown `kid` refetches the upstream's keys at most
    /// this often (`CLEF_UPSTREAM_KEY_REFRESH`, seconds; OIDC Core §10.1.1).
    pub upstream_key_refresh: std::time::Duration,
    // ops
    /// A second listener serving only `/metrics` (kept off the public address).
    pub metrics_listen: Option<SocketAddr>,
    /// `/metrics` on the public listener too (`CLEF_METRICS=public`); off by default.
    pub metrics_public: bool,
    pub log_format: LogFormat,
    /// How long shutdown waits for requests in flight and queued mail.
    pub shutdown_grace: std::time::Duration,
    /// Security events older than this many seconds are purged.
    pub audit_retention: i64,
    // dcr
    pub registration: Registration,
    // multi
    /// Database connections this instance may hold at most (`None`: the backend's default).
    pub db_pool_size: Option<u32>,
    /// How often the keys folder is checked for keys another instance (or `clef keys rotate`)
    /// wrote; instances agree on the JWKS within this time.
    pub keys_reload_interval: std::time::Duration,
}

/// Who may register clients at the registration endpoint (RFC 7591 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// No endpoint; discovery advertises none.
    Off,
    /// Anyone may register (the OpenID Dynamic OP profile).
    Open,
    /// Only a caller presenting this initial access token (RFC 7591 §3, as a Bearer token).
    Token(Secret),
}

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable; colour codes only on a terminal.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

impl Config {
    /// Whether anything serves `/metrics`: otherwise no recorder is installed and every
    /// counter is a no-op.
    pub fn metrics_enabled(&self) -> bool {
        self.metrics_public || self.metrics_listen.is_some()
    }
}

/// `90d`, `24h`, `15m`, `30s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = digits.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Google's issuer, which `CLEF_GOOGLE_ISSUER` replaces only in tests and odd set-ups.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// An OpenID Connect provider users may log in with; Google is a preset of it.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `[a-z0-9-]{1,32}`: part of the callback path, and how identities name their provider.
    pub id: String,
    pub display_name: String,
    /// Without a trailing slash, as the discovery document and ID tokens must state it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Always starts with `openid`.
    pub scopes: Vec<String>,
    pub button_label: String,
    /// Whether this provider's `email_verified: true` is believed (account linking).
    pub trust_email_verified: bool,
    /// Whether an ID token whose `amr` holds `mfa` stands in for clef's second step.
    pub trust_mfa: bool,
    /// Google Workspace only: the `hd` claim must equal this, and it is sent as a hint.
    pub hosted_domain: Option<String>,
}

/// Which header a trusted proxy maintains. Only that one is read: a proxy that appends to
/// `X-Forwarded-For` passes a client's own `Forwarded` header through untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

/// The security limits, each per minute or per window, shared by every instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Codes sent per email and per IP per minute.
    pub code_sends_per_minute: i64,
    /// Code checks per account and per IP per minute.
    pub code_checks_per_minute: i64,
    /// Failed password logins per account and per IP in one lockout window.
    pub login_failures: i64,
    /// Lockout window and duration, seconds.
    pub lockout: i64,
    /// Failed password logins per client address in one lockout window (a NAT office).
    pub ip_login_failures: i64,
    /// Codes sent per client address per minute.
    pub ip_code_sends_per_minute: i64,
    /// Code checks per client address per minute.
    pub ip_code_checks_per_minute: i64,
    /// Consecutive wrong codes per account, across codes, before code login locks.
    pub code_failures: i64,
}

impl RawConfig {
    pub fn from_toml(path: &Path) -> Result<RawConfig, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| bad(&name, e.to_string()))?;
        toml::from_str(&text).map_err(|e| bad(&name, e.message().to_owned()))
    }

    /// Overlays `CLEF_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, _) in ENV {
            let Some(v) = get(var) else { continue };
            let int = || v.trim().parse::<i64>().map_err(|_| bad(var, "not a whole number of seconds"));
            match *var {
                "CLEF_ISSUER" => self.issuer = Some(v),
                "CLEF_LISTEN" => self.listen = Some(v),
                "CLEF_DATABASE_URL" => self.database_url = Some(v),
                "CLEF_KEYS_DIR" => self.keys_dir = Some(v),
                "CLEF_SIGNUP" => self.signup = Some(v),
                "CLEF_TEMPLATES_DIR" => self.templates_dir = Some(v),
                "CLEF_SESSION_TTL" => self.session_ttl = Some(int()?),
                "CLEF_CODE_TTL" => self.code_ttl = Some(int()?),
                "CLEF_ACCESS_TOKEN_TTL" => self.access_token_ttl = Some(int()?),
                "CLEF_ID_TOKEN_TTL" => self.id_token_ttl = Some(int()?),
                "CLEF_REFRESH_TOKEN_TTL" => self.refresh_token_ttl = Some(int()?),
                "CLEF_MAX_CONCURRENT_HASHES" => {
                    self.max_concurrent_hashes = Some(v.trim().parse().map_err(|_| bad(var, "not a whole number"))?)
                }
                "CLEF_LOG" => self.log = Some(v),
                "CLEF_SMTP_URL" => self.smtp_url = Some(v),
                "CLEF_MAIL_FROM" => self.mail_from = Some(v),
                "CLEF_OUTBOX_DIR" => self.outbox_dir = Some(v),
                "CLEF_OTP_TTL" => self.otp_ttl = Some(int()?),
                "CLEF_CODE_SEND_LIMIT" => self.code_send_limit = Some(int()?),
                "CLEF_CODE_VERIFY_LIMIT" => self.code_verify_limit = Some(int()?),
                "CLEF_LOGIN_FAILURE_LIMIT" => self.login_failure_limit = Some(int()?),
                "CLEF_LOCKOUT" => self.lockout = Some(int()?),
                "CLEF_TRUSTED_PROXIES" => {
                    self.trusted_proxies = Some(v.split([',', ' ']).filter(|p| !p.is_empty()).map(str::to_owned).collect())
                }
                "CLEF_FORWARDED_HEADER" => self.forwarded_header = Some(v),
                "CLEF_IP_FAILURE_LIMIT" => self.ip_failure_limit = Some(int()?),
                "CLEF_IP_CODE_SEND_LIMIT" => self.ip_code_send_limit = Some(int()?),
                "CLEF_IP_CODE_VERIFY_LIMIT" => self.ip_code_verify_limit = Some(int()?),
                "CLEF_CODE_FAILURE_LIMIT" => self.code_failure_limit = Some(int()?),
                "CLEF_SECRET_KEY" => self.secret_key = Some(v),
                "CLEF_HEADER_TIMEOUT" => self.header_timeout = Some(int()?),
                "CLEF_BODY_TIMEOUT" => self.body_timeout = Some(int()?),
                "CLEF_MAX_CONNECTIONS" => self.max_connections = Some(v.trim().parse().map_err(|_| bad(var, "not a whole number"))?),
                "CLEF_DB_ACQUIRE_TIMEOUT" => self.db_acquire_timeout = Some(int()?),
                "CLEF_TOTP_ISSUER" => self.totp_issuer = Some(v),
                "CLEF_REAUTH_AFTER" => self.reauth_after = Some(int()?),
                "CLEF_GOOGLE_CLIENT_ID" => self.google_client_id = Some(v),
                "CLEF_GOOGLE_CLIENT_SECRET" => self.google_client_secret = Some(v),
                "CLEF_GOOGLE_ISSUER" => self.google_issuer = Some(v),
                "CLEF_GOOGLE_HOSTED_DOMAIN" => self.google_hosted_domain = Some(v),
                // grants
                "CLEF_REFRESH_GRACE" => self.refresh_grace = Some(int()?),
                // fed
                "CLEF_UPSTREAM_KEY_REFRESH" => self.upstream_key_refresh = Some(int()?),
                // ops
                "CLEF_METRICS_LISTEN" => self.metrics_listen = Some(v),
                "CLEF_METRICS" => self.metrics = Some(v),
                "CLEF_LOG_FORMAT" => self.log_format = Some(v),
                "CLEF_SHUTDOWN_GRACE" => self.shutdown_grace = Some(int()?),
                "CLEF_AUDIT_RETENTION" => self.audit_retention = Some(v),
                // dcr
                "CLEF_REGISTRATION" => self.registration = Some(v),
                // multi
                "CLEF_DB_POOL_SIZE" => self.db_pool_size = Some(v.trim().parse().map_err(|_| bad(var, "not a whole number"))?),
                "CLEF_KEYS_RELOAD_INTERVAL" => self.keys_reload_interval = Some(int()?),
                _ => {}
            }
        }
        Ok(())
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let issuer_raw = self.issuer.unwrap_or_else(|| "http://localhost:8080".to_owned());
        let issuer = Url::parse(&issuer_raw).map_err(|e| bad("CLEF_ISSUER", format!("not an absolute URL ({e})")))?;
        if !matches!(issuer.scheme(), "http" | "https") {
            return Err(bad("CLEF_ISSUER", "must be an http or https URL"));
        }
        // OIDC Discovery §3: the issuer has no query or fragment.
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(bad("CLEF_ISSUER", "must not have a query or fragment"));
        }
        let issuer_str = issuer.as_str().trim_end_matches('/').to_owned();

        let listen_raw = self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = listen_raw
            .parse::<SocketAddr>()
            .map_err(|_| bad("CLEF_LISTEN", format!("{listen_raw:?} is not an address:port")))?;

        let database_url = self.database_url.unwrap_or_else(|| "sqlite://data/clef.db".to_owned());
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres:") || database_url.starts_with("postgresql:")) {
            return Err(bad("CLEF_DATABASE_URL", "must start with sqlite: or postgres:"));
        }

        let signup_open = match self.signup.as_deref().unwrap_or("open") {
            "open" => true,
            "closed" => false,
            other => return Err(bad("CLEF_SIGNUP", format!("{other:?} is neither open nor closed"))),
        };

        let ttl = |name: &str, v: Option<i64>, default: i64| -> Result<i64, ConfigError> {
            let v = v.unwrap_or(default);
            if v <= 0 {
                return Err(bad(name, "must be a positive number of seconds"));
            }
            Ok(v)
        };
        let max_hashes = self
            .max_concurrent_hashes
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(2));
        if !(1..=256).contains(&max_hashes) {
            return Err(bad("CLEF_MAX_CONCURRENT_HASHES", "must be between 1 and 256"));
        }

        if let Some(u) = &self.smtp_url {
            let parsed = Url::parse(u).map_err(|_| bad("CLEF_SMTP_URL", "not a URL such as smtp://host:587"))?;
            if !matches!(parsed.scheme(), "smtp" | "smtps") {
                return Err(bad("CLEF_SMTP_URL", "must start with smtp:// or smtps://"));
            }
        }
        let mail_from = self
            .mail_from
            .unwrap_or_else(|| format!("no-reply@{}", issuer.host_str().unwrap_or("localhost")));
        if !mail_from.contains('@') {
            return Err(bad("CLEF_MAIL_FROM", "not an email address"));
        }
        let limits = Limits {
            code_sends_per_minute: ttl("CLEF_CODE_SEND_LIMIT", self.code_send_limit, 3)?,
            code_checks_per_minute: ttl("CLEF_CODE_VERIFY_LIMIT", self.code_verify_limit, 4)?,
            login_failures: ttl("CLEF_LOGIN_FAILURE_LIMIT", self.login_failure_limit, 5)?,
            lockout: ttl("CLEF_LOCKOUT", self.lockout, 900)?,
            ip_login_failures: ttl("CLEF_IP_FAILURE_LIMIT", self.ip_failure_limit, 50)?,
            ip_code_sends_per_minute: ttl("CLEF_IP_CODE_SEND_LIMIT", self.ip_code_send_limit, 30)?,
            ip_code_checks_per_minute: ttl("CLEF_IP_CODE_VERIFY_LIMIT", self.ip_code_verify_limit, 40)?,
            code_failures: ttl("CLEF_CODE_FAILURE_LIMIT", self.code_failure_limit, 100)?,
        };
        let mut trusted_proxies = Vec::new();
        for p in self.trusted_proxies.unwrap_or_default() {
            trusted_proxies
                .push(parse_net(&p).ok_or_else(|| bad("CLEF_TRUSTED_PROXIES", format!("{p:?} is not an address or CIDR range")))?);
        }
        let forwarded_header = match self.forwarded_header.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
            Some("forwarded") => ForwardedHeader::Forwarded,
            Some(other) => {
                return Err(bad(
                    "CLEF_FORWARDED_HEADER",
                    format!("{other:?} is neither x-forwarded-for nor forwarded"),
                ));
            }
        };
        let max_connections = self.max_connections.unwrap_or(512);
        if !(1..=65_536).contains(&max_connections) {
            return Err(bad("CLEF_MAX_CONNECTIONS", "must be between 1 and 65536"));
        }
        let secs = |name: &str, v: Option<i64>, default: i64| ttl(name, v, default).map(|s| std::time::Duration::from_secs(s as u64));
        let header_timeout = secs("CLEF_HEADER_TIMEOUT", self.header_timeout, 10)?;
        let body_timeout = secs("CLEF_BODY_TIMEOUT", self.body_timeout, 15)?;
        let db_acquire_timeout = secs("CLEF_DB_ACQUIRE_TIMEOUT", self.db_acquire_timeout, 3)?;
        if let Some(k) = &self.secret_key {
            crate::secret_key::parse_list(k).map_err(|e| bad("CLEF_SECRET_KEY", e))?;
        }
        // The otpauth label is `ISSUER:ACCOUNT`, so the issuer cannot hold a colon (Key Uri
        // Format); it defaults to the product's name.
        let totp_issuer = self
            .totp_issuer
            .unwrap_or_else(|| DEFAULT_PRODUCT_NAME.to_owned())
            .trim()
            .to_owned();
        if totp_issuer.is_empty() || totp_issuer.contains(':') || totp_issuer.chars().count() > 64 {
            return Err(bad("CLEF_TOTP_ISSUER", "must be 1 to 64 characters without a colon"));
        }
        let reauth_after = ttl("CLEF_REAUTH_AFTER", self.reauth_after, 300)?;
        // A retry after a lost response comes within seconds; a longer window only widens
        // what a stolen, rotated token could still fetch.
        let refresh_grace = self.refresh_grace.unwrap_or(DEFAULT_REFRESH_GRACE);
        if !(0..=MAX_REFRESH_GRACE).contains(&refresh_grace) {
            return Err(bad("CLEF_REFRESH_GRACE", format!("must be 0 (off) to {MAX_REFRESH_GRACE} seconds")));
        }
        // 0 is allowed (tests rotate keys within seconds); an hour at most, or a rotated key
        // would lock Google users out for longer than anyone waits.
        let upstream_key_refresh = match self.upstream_key_refresh {
            None => crate::upstream::MIN_REFRESH_INTERVAL,
            Some(s @ 0..=3600) => std::time::Duration::from_secs(s.unsigned_abs()),
            Some(_) => return Err(bad("CLEF_UPSTREAM_KEY_REFRESH", "must be 0 to 3600 seconds")),
        };
        // ops
        let metrics_listen = match self.metrics_listen.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(
                raw.parse::<SocketAddr>()
                    .map_err(|_| bad("CLEF_METRICS_LISTEN", format!("{raw:?} is not an address:port")))?,
            ),
        };
        let metrics_public = match self.metrics.as_deref().map(str::trim) {
            None | Some("" | "off") => false,
            Some("public") if metrics_listen.is_some() => {
                return Err(bad("CLEF_METRICS", "public and CLEF_METRICS_LISTEN exclude each other"));
            }
            Some("public") => true,
            Some(other) => return Err(bad("CLEF_METRICS", format!("{other:?} is neither off nor public"))),
        };
        let log_format = match self.log_format.as_deref().map(str::trim) {
            None | Some("" | "text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("CLEF_LOG_FORMAT", format!("{other:?} is neither text nor json"))),
        };
        let shutdown_grace = secs("CLEF_SHUTDOWN_GRACE", self.shutdown_grace, 10)?;
        let audit_retention = match self.audit_retention.as_deref() {
            None => 90 * 86_400,
            Some(raw) => parse_duration(raw)
                .filter(|&s| s > 0)
                .ok_or_else(|| bad("CLEF_AUDIT_RETENTION", "not a duration such as 90d, 12h or 3600"))?,
        };
        // dcr
        let registration = match self.registration.as_deref().map(str::trim) {
            None | Some("off") => Registration::Off,
            Some("open") => Registration::Open,
            Some(t) if t.starts_with("token:") => {
                let token = &t["token:".len()..];
                // A guessable initial access token is open registration in disguise.
                if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(bad(
                        "CLEF_REGISTRATION",
                        "the token after token: must be 16 or more characters, no spaces",
                    ));
                }
                Registration::Token(Secret::new(token))
            }
            Some(_) => return Err(bad("CLEF_REGISTRATION", "must be off, open or token:SECRET")),
        };
        // multi
        let db_pool_size = match self.db_pool_size {
            None => None,
            Some(n @ 1..=1000) => Some(n as u32),
            Some(_) => return Err(bad("CLEF_DB_POOL_SIZE", "must be between 1 and 1000")),
        };
        let keys_reload_interval = secs("CLEF_KEYS_RELOAD_INTERVAL", self.keys_reload_interval, 10)?;
        let upstreams = upstreams(
            self.google_client_id,
            self.google_client_secret,
            self.google_issuer,
            self.google_hosted_domain,
            self.upstream.unwrap_or_default(),
        )?;
        Ok(Config {
            smtp_url: self.smtp_url.map(Secret::new),
            mail_from,
            outbox_dir: PathBuf::from(self.outbox_dir.unwrap_or_else(|| "data/outbox".to_owned())),
            otp_ttl: ttl("CLEF_OTP_TTL", self.otp_ttl, 300)?,
            limits,
            issuer_is_https: issuer.scheme() == "https",
            issuer_origin: issuer.origin().ascii_serialization(),
            issuer: issuer_str,
            listen,
            database_url,
            keys_dir: PathBuf::from(self.keys_dir.unwrap_or_else(|| "keys".to_owned())),
            signup_open,
            templates_dir: self.templates_dir.map(PathBuf::from),
            session_ttl: ttl("CLEF_SESSION_TTL", self.session_ttl, 7 * 24 * 3600)?,
            code_ttl: ttl("CLEF_CODE_TTL", self.code_ttl, 60)?,
            access_token_ttl: ttl("CLEF_ACCESS_TOKEN_TTL", self.access_token_ttl, 900)?,
            id_token_ttl: ttl("CLEF_ID_TOKEN_TTL", self.id_token_ttl, 3600)?,
            refresh_token_ttl: ttl("CLEF_REFRESH_TOKEN_TTL", self.refresh_token_ttl, 30 * 24 * 3600)?,
            max_concurrent_hashes: max_hashes as usize,
            log: self.log.unwrap_or_else(|| "info".to_owned()),
            trusted_proxies,
            forwarded_header,
            secret_key: self.secret_key.map(Secret::new),
            header_timeout,
            body_timeout,
            max_connections: max_connections as usize,
            db_acquire_timeout,
            totp_issuer,
            reauth_after,
            upstreams,
            refresh_grace,
            upstream_key_refresh,
            // ops
            metrics_listen,
            metrics_public,
            log_format,
            shutdown_grace,
            audit_retention,
            registration,
            // multi
            db_pool_size,
            keys_reload_interval,
        })
    }
}

/// Google from `CLEF_GOOGLE_*` (when a client id or secret is set), then the `[[upstream]]`
/// tables, each validated; an error names the upstream.
fn upstreams(
    google_client_id: Option<String>,
    google_client_secret: Option<String>,
    google_issuer: Option<String>,
    google_hosted_domain: Option<String>,
    tables: Vec<RawUpstream>,
) -> Result<Vec<Upstream>, ConfigError> {
    let mut out: Vec<Upstream> = Vec::new();
    if google_client_id.is_some() || google_client_secret.is_some() {
        let raw = RawUpstream {
            id: Some("google".into()),
            display_name: Some("Google".into()),
            issuer: Some(google_issuer.unwrap_or_else(|| GOOGLE_ISSUER.to_owned())),
            client_id: google_client_id,
            client_secret: google_client_secret,
            scopes: None,
            button_label: Some("Continue with Google".into()),
            // Google asserts email_verified only for addresses it has checked (Gmail and
            // Workspace domains it hosts), the basis on which its docs allow linking.
            trust_email_verified: Some(true),
            trust_mfa: Some(false),
        };
        let mut google = upstream(raw).map_err(|e| ConfigError {
            setting: "CLEF_GOOGLE_*".into(),
            problem: e.problem,
        })?;
        if let Some(hd) = google_hosted_domain.map(|d| d.trim().to_ascii_lowercase()) {
            if hd.is_empty() || !hd.contains('.') || hd.contains(['/', '@', ' ']) {
                return Err(bad("CLEF_GOOGLE_HOSTED_DOMAIN", "not a domain name such as example.com"));
            }
            google.hosted_domain = Some(hd);
        }
        out.push(google);
    } else if google_hosted_domain.is_some() || google_issuer.is_some() {
        return Err(bad(
            "CLEF_GOOGLE_CLIENT_ID",
            "must be set along with the other CLEF_GOOGLE_* settings",
        ));
    }
    for raw in tables {
        let u = upstream(raw)?;
        if out.iter().any(|o| o.id == u.id) {
            return Err(bad(&format!("upstream {:?}", u.id), "id is used twice"));
        }
        out.push(u);
    }
    Ok(out)
}

fn upstream(raw: RawUpstream) -> Result<Upstream, ConfigError> {
    let id = raw.id.unwrap_or_default();
    let valid_id = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_id {
        return Err(bad("upstream", format!("id {id:?} must be 1 to 32 of a-z, 0-9 and -")));
    }
    let name = format!("upstream {id:?}");
    let issuer_raw = raw.issuer.unwrap_or_default();
    let issuer = Url::parse(&issuer_raw).map_err(|_| bad(&name, "issuer is not an absolute URL"))?;
    // The same rule as registered redirect URIs (oauth::redirect_uri): plain http only on
    // loopback, where no one else sits on the wire (RFC 8252 §8.3).
    let loopback = matches!(issuer.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if !(issuer.scheme() == "https" || (issuer.scheme() == "http" && loopback)) {
        return Err(bad(&name, "issuer must be https"));
    }
    // OIDC Discovery §3: the issuer has no query or fragment.
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(bad(&name, "issuer must not have a query or fragment"));
    }
    let present = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let client_id = present(raw.client_id).ok_or_else(|| bad(&name, "client_id is missing"))?;
    let client_secret = present(raw.client_secret).ok_or_else(|| bad(&name, "client_secret is missing"))?;
    let mut scopes = vec!["openid".to_owned()];
    for s in raw.scopes.unwrap_or_else(|| vec!["email".into(), "profile".into()]) {
        // RFC 6749 §3.3: scope tokens are printable ASCII without spaces, quotes or backslashes.
        if s.is_empty() || !s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\') {
            return Err(bad(&name, format!("scope {s:?} is not a scope token")));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let display_name = present(raw.display_name).unwrap_or_else(|| id.clone());
    let button_label = present(raw.button_label).unwrap_or_else(|| format!("Continue with {display_name}"));
    Ok(Upstream {
        issuer: issuer_raw.trim_end_matches('/').to_owned(),
        client_secret: Secret::new(client_secret),
        client_id,
        scopes,
        button_label,
        display_name,
        trust_email_verified: raw.trust_email_verified.unwrap_or(false),
        trust_mfa: raw.trust_mfa.unwrap_or(false),
        hosted_domain: None,
        id,
    })
}

/// An address (taken as a /32 or /128) or a CIDR range.
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    let net = match s.parse::<ipnet::IpNet>() {
        Ok(n) => n,
        Err(_) => ipnet::IpNet::from(s.parse::<std::net::IpAddr>().ok()?),
    };
    Some(net.trunc())
}

impl Config {
    /// Defaults, then the file (`--config`, `CLEF_CONFIG`, or `./clef.toml` if present), then env.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var("CLEF_CONFIG").ok().map(PathBuf::from);
        let local = PathBuf::from("clef.toml");
        let path = file.map(Path::to_path_buf).or(from_env).or_else(|| local.exists().then_some(local));
        let mut raw = match path {
            Some(p) => RawConfig::from_toml(&p)?,
            None => RawConfig::default(),
        };
        raw.apply_env(|k| std::env::var(k).ok())?;
        raw.validate()
    }

    /// Tokens signed by a key must verify until they expire, so retired keys stay this long.
    pub fn max_signed_lifetime(&self) -> i64 {
        self.access_token_ttl.max(self.id_token_ttl)
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn defaults_are_valid() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.issuer, "http://localhost:8080");
        assert_eq!(c.code_ttl, 60);
        assert!(c.signup_open);
        assert_eq!((c.totp_issuer.as_str(), c.reauth_after), ("clef", 300));
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (pairs, setting) in [
            (&[("CLEF_ISSUER", "not a url")][..], "CLEF_ISSUER"),
            (&[("CLEF_LISTEN", "localhost")][..], "CLEF_LISTEN"),
            (&[("CLEF_SIGNUP", "maybe")][..], "CLEF_SIGNUP"),
            (&[("CLEF_DATABASE_URL", "mysql://x")][..], "CLEF_DATABASE_URL"),
            (&[("CLEF_SESSION_TTL", "-5")][..], "CLEF_SESSION_TTL"),
            (&[("CLEF_TRUSTED_PROXIES", "10.0.0.1, nginx")][..], "CLEF_TRUSTED_PROXIES"),
            (&[("CLEF_TRUSTED_PROXIES", "10.0.0.0/33")][..], "CLEF_TRUSTED_PROXIES"),
            (&[("CLEF_FORWARDED_HEADER", "x-real-ip")][..], "CLEF_FORWARDED_HEADER"),
            (&[("CLEF_IP_FAILURE_LIMIT", "0")][..], "CLEF_IP_FAILURE_LIMIT"),
            (&[("CLEF_TOTP_ISSUER", "My:App")][..], "CLEF_TOTP_ISSUER"),
            (&[("CLEF_TOTP_ISSUER", " ")][..], "CLEF_TOTP_ISSUER"),
            (&[("CLEF_REAUTH_AFTER", "0")][..], "CLEF_REAUTH_AFTER"),
        ] {
            let leaked: &'static [(&'static str, &'static str)] = Box::leak(pairs.to_vec().into_boxed_slice());
            let mut raw = RawConfig::default();
            let err = raw.apply_env(env_of(leaked)).and_then(|_| raw.validate().map(|_| ())).unwrap_err();
            assert_eq!(err.setting, setting);
        }
    }

    #[test]
    fn trusted_proxies_and_limits() {
        let c = RawConfig::default().validate().unwrap();
        assert!(c.trusted_proxies.is_empty(), "no proxy is trusted unless configured");
        assert_eq!(c.forwarded_header, ForwardedHeader::XForwardedFor);
        assert_eq!(
            (
                c.limits.ip_login_failures,
                c.limits.ip_code_sends_per_minute,
                c.limits.ip_code_checks_per_minute,
                c.limits.code_failures
            ),
            (50, 30, 40, 100)
        );
        let mut raw = RawConfig::default();
        raw.apply_env(env_of(&[
            ("CLEF_TRUSTED_PROXIES", "127.0.0.1, 10.1.2.3/8 fd00::/8,::1"),
            ("CLEF_FORWARDED_HEADER", "Forwarded"),
        ]))
        .unwrap();
        let c = raw.validate().unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8", "::1/128"]);
        assert_eq!(c.forwarded_header, ForwardedHeader::Forwarded);
        let toml: RawConfig = toml::from_str("trusted_proxies = [\"192.168.0.0/16\"]").unwrap();
        assert_eq!(toml.validate().unwrap().trusted_proxies.len(), 1);
    }

    // grants
    #[test]
    fn refresh_grace_is_short_and_can_be_off() {
        assert_eq!(RawConfig::default().validate().unwrap().refresh_grace, 2);
        for (v, ok) in [("0", true), ("60", true), ("61", false), ("-1", false), ("2s", false)] {
            let mut raw = RawConfig::default();
            let got = raw
                .apply_env(|k| (k == "CLEF_REFRESH_GRACE").then(|| v.to_owned()))
                .and_then(|_| raw.validate().map(|c| c.refresh_grace));
            match got {
                Ok(g) => assert!(ok && g.to_string() == v, "{v}"),
                Err(e) => assert!(!ok && e.setting == "CLEF_REFRESH_GRACE", "{v}: {e:?}"),
            }
        }
    }

    #[test]
    fn toml_rejects_unknown_keys() {
        let err = toml::from_str::<RawConfig>("isuer = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"));
    }

    fn with_upstreams(toml_text: &str, env: &'static [(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(toml_text).unwrap();
        raw.apply_env(env_of(env))?;
        raw.validate()
    }

    const CORP: &str = r#"
[[upstream]]
id = "corp"
display_name = "Corp SSO"
issuer = "https://sso.corp.example/"
client_id = "clef"
client_secret = "s3cret"
scopes = ["email", "openid", "groups"]
trust_email_verified = true
"#;

    // fed
    #[test]
    fn upstream_key_refresh() {
        let with = |v: Option<i64>| RawConfig {
            upstream_key_refresh: v,
            ..RawConfig::default()
        };
        assert_eq!(
            with(None).validate().unwrap().upstream_key_refresh,
            crate::upstream::MIN_REFRESH_INTERVAL
        );
        assert_eq!(with(Some(0)).validate().unwrap().upstream_key_refresh, std::time::Duration::ZERO);
        for bad in [-1, 3601] {
            let err = with(Some(bad)).validate().unwrap_err().to_string();
            assert!(err.starts_with("CLEF_UPSTREAM_KEY_REFRESH"), "{err}");
        }
    }

    #[test]
    fn upstreams_good() {
        assert!(RawConfig::default().validate().unwrap().upstreams.is_empty());
        let c = with_upstreams(
            CORP,
            &[("CLEF_GOOGLE_CLIENT_ID", "g-id"), ("CLEF_GOOGLE_CLIENT_SECRET", "g-secret")],
        )
        .unwrap();
        let ids: Vec<&str> = c.upstreams.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["google", "corp"]);
        let g = &c.upstreams[0];
        assert_eq!(
            (g.issuer.as_str(), g.client_id.as_str(), g.client_secret.expose()),
            (GOOGLE_ISSUER, "g-id", "g-secret")
        );
        assert_eq!(g.scopes, ["openid", "email", "profile"]);
        assert!(g.trust_email_verified && !g.trust_mfa && g.hosted_domain.is_none());
        assert!(g.button_label.contains("Google"));
        let corp = &c.upstreams[1];
        assert_eq!(corp.issuer, "https://sso.corp.example", "no trailing slash");
        assert_eq!(corp.scopes, ["openid", "email", "groups"], "openid first, once");
        assert_eq!(
            (corp.display_name.as_str(), corp.button_label.as_str()),
            ("Corp SSO", "Continue with Corp SSO")
        );
        assert!(corp.trust_email_verified && !corp.trust_mfa);
        assert!(!format!("{c:?}").contains("s3cret"), "secrets stay out of Debug");

        // Plain http only for loopback issuers (the test upstreams), and the hosted domain.
        let c = with_upstreams(
            "",
            &[
                ("CLEF_GOOGLE_CLIENT_ID", "g"),
                ("CLEF_GOOGLE_CLIENT_SECRET", "s"),
                ("CLEF_GOOGLE_ISSUER", "http://127.0.0.1:4000"),
                ("CLEF_GOOGLE_HOSTED_DOMAIN", "Example.COM"),
            ],
        )
        .unwrap();
        assert_eq!(c.upstreams[0].issuer, "http://127.0.0.1:4000");
        assert_eq!(c.upstreams[0].hosted_domain.as_deref(), Some("example.com"));
    }

    #[test]
    fn env_overrides_toml_for_google() {
        let file = "google_client_id = \"from-file\"\ngoogle_client_secret = \"file-secret\"\ngoogle_issuer = \"https://file.example\"";
        let c = with_upstreams(file, &[]).unwrap();
        assert_eq!(
            (c.upstreams[0].client_id.as_str(), c.upstreams[0].issuer.as_str()),
            ("from-file", "https://file.example")
        );
        let c = with_upstreams(
            file,
            &[("CLEF_GOOGLE_CLIENT_ID", "from-env"), ("CLEF_GOOGLE_ISSUER", "https://env.example")],
        )
        .unwrap();
        let g = &c.upstreams[0];
        assert_eq!(
            (g.client_id.as_str(), g.client_secret.expose(), g.issuer.as_str()),
            ("from-env", "file-secret", "https://env.example")
        );
    }

    #[test]
    fn upstreams_bad_name_the_upstream() {
        let table = |fields: &str| format!("[[upstream]]\n{fields}");
        let ok = "client_id = \"c\"\nclient_secret = \"s\"";
        for (toml_text, message) in [
            (
                table(&format!("id = \"corp\"\nissuer = \"http://sso.corp.example\"\n{ok}")),
                "upstream \"corp\": issuer must be https",
            ),
            (
                table(&format!("id = \"corp\"\nissuer = \"ftp://sso.corp.example\"\n{ok}")),
                "upstream \"corp\": issuer must be https",
            ),
            (
                table(&format!("id = \"corp\"\nissuer = \"sso\"\n{ok}")),
                "upstream \"corp\": issuer is not an absolute URL",
            ),
            (
                table(&format!("id = \"corp\"\nissuer = \"https://a.example?x=1\"\n{ok}")),
                "upstream \"corp\": issuer must not have a query or fragment",
            ),
            (
                table("id = \"corp\"\nissuer = \"https://a.example\"\nclient_secret = \"s\""),
                "upstream \"corp\": client_id is missing",
            ),
            (
                table("id = \"corp\"\nissuer = \"https://a.example\"\nclient_id = \"c\"\nclient_secret = \" \""),
                "upstream \"corp\": client_secret is missing",
            ),
            (
                table(&format!("id = \"Corp\"\nissuer = \"https://a.example\"\n{ok}")),
                "upstream: id \"Corp\" must be 1 to 32 of a-z, 0-9 and -",
            ),
            (
                table(&format!("issuer = \"https://a.example\"\n{ok}")),
                "upstream: id \"\" must be 1 to 32 of a-z, 0-9 and -",
            ),
            (
                table(&format!("id = \"{}\"\nissuer = \"https://a.example\"\n{ok}", "a".repeat(33))),
                "must be 1 to 32",
            ),
            (
                table(&format!("id = \"corp\"\nissuer = \"https://a.example\"\nscopes = [\"a b\"]\n{ok}")),
                "upstream \"corp\": scope \"a b\" is not a scope token",
            ),
            (
                format!(
                    "{}\n{}",
                    table(&format!("id = \"corp\"\nissuer = \"https://a.example\"\n{ok}")),
                    table(&format!("id = \"corp\"\nissuer = \"https://b.example\"\n{ok}"))
                ),
                "upstream \"corp\": id is used twice",
            ),
        ] {
            let err = with_upstreams(&toml_text, &[]).unwrap_err().to_string();
            assert!(err.contains(message), "{toml_text}: {err}");
        }
        for (env, message) in [
            (&[("CLEF_GOOGLE_CLIENT_ID", "g")][..], "CLEF_GOOGLE_*: client_secret is missing"),
            (
                &[
                    ("CLEF_GOOGLE_CLIENT_ID", "g"),
                    ("CLEF_GOOGLE_CLIENT_SECRET", "s"),
                    ("CLEF_GOOGLE_ISSUER", "http://google.example"),
                ][..],
                "CLEF_GOOGLE_*: issuer must be https",
            ),
            (
                &[
                    ("CLEF_GOOGLE_CLIENT_ID", "g"),
                    ("CLEF_GOOGLE_CLIENT_SECRET", "s"),
                    ("CLEF_GOOGLE_HOSTED_DOMAIN", "not a domain"),
                ][..],
                "CLEF_GOOGLE_HOSTED_DOMAIN",
            ),
            (&[("CLEF_GOOGLE_HOSTED_DOMAIN", "example.com")][..], "CLEF_GOOGLE_CLIENT_ID"),
        ] {
            let leaked: &'static [(&'static str, &'static str)] = Box::leak(env.to_vec().into_boxed_slice());
            let err = with_upstreams("", leaked).unwrap_err().to_string();
            assert!(err.contains(message), "{env:?}: {err}");
        }
        // A Google set-up colliding with an [[upstream]] of the same id.
        let dup = table(&format!("id = \"google\"\nissuer = \"https://a.example\"\n{ok}"));
        let err = with_upstreams(&dup, &[("CLEF_GOOGLE_CLIENT_ID", "g"), ("CLEF_GOOGLE_CLIENT_SECRET", "s")]).unwrap_err();
        assert_eq!(err.to_string(), "upstream \"google\": id is used twice");
        assert!(
            toml::from_str::<RawConfig>("[[upstream]]\nid = \"x\"\nclient_scret = \"s\"").is_err(),
            "unknown keys refused"
        );
    }
}

// ops
#[cfg(test)]
mod ops_tests {
    use super::*;

    fn with(f: impl FnOnce(&mut RawConfig)) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::default();
        f(&mut raw);
        raw.validate()
    }

    #[test]
    fn durations() {
        for (s, want) in [
            ("90d", Some(7_776_000)),
            ("24h", Some(86_400)),
            ("15m", Some(900)),
            ("3600", Some(3600)),
            ("2w", Some(1_209_600)),
        ] {
            assert_eq!(parse_duration(s), want, "{s}");
        }
        for bad in ["", "d", "1y", "-5", "1.5h", "2026-12-01T00:00:00Z"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn operations_settings() {
        let c = with(|_| {}).unwrap();
        assert!(!c.metrics_enabled());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.shutdown_grace, std::time::Duration::from_secs(10));
        assert_eq!(c.audit_retention, 90 * 86_400);
        let c = with(|r| r.metrics_listen = Some("127.0.0.1:9100".into())).unwrap();
        assert!(c.metrics_enabled() && !c.metrics_public);
        let e = with(|r| {
            r.metrics_listen = Some("127.0.0.1:9100".into());
            r.metrics = Some("public".into());
        })
        .unwrap_err();
        assert_eq!(e.setting, "CLEF_METRICS");
        assert_eq!(
            with(|r| r.metrics_listen = Some("9100".into())).unwrap_err().setting,
            "CLEF_METRICS_LISTEN"
        );
        assert_eq!(with(|r| r.log_format = Some("xml".into())).unwrap_err().setting, "CLEF_LOG_FORMAT");
        assert_eq!(
            with(|r| r.audit_retention = Some("0".into())).unwrap_err().setting,
            "CLEF_AUDIT_RETENTION"
        );
        assert_eq!(with(|r| r.shutdown_grace = Some(0)).unwrap_err().setting, "CLEF_SHUTDOWN_GRACE");
        let mut raw = RawConfig::default();
        let env = |k: &str| match k {
            "CLEF_METRICS" => Some("public".to_owned()),
            "CLEF_LOG_FORMAT" => Some("json".to_owned()),
            "CLEF_AUDIT_RETENTION" => Some("7d".to_owned()),
            _ => None,
        };
        raw.apply_env(env).unwrap();
        let c = raw.validate().unwrap();
        assert!(c.metrics_public && c.log_format == LogFormat::Json && c.audit_retention == 7 * 86_400);
    }
}
