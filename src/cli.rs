//! The command line: `serve`, `migrate`, `cleanup`, and the `clients`, `users`, `keys`, `sessions` groups.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::admin::{ClientSpec, UserSpec};
use crate::app::AppState;
use crate::auth::password::Hasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::Keys;
use crate::store::Db;

#[derive(Debug, Parser)]
#[command(name = "clef", version, about = "An OAuth 2.0 / OpenID Connect identity provider")]
pub struct Cli {
    /// Configuration file (default: $CLEF_CONFIG, else ./clef.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the provider.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Delete expired codes, sessions and tokens, and exit.
    Cleanup,
    /// Manage relying-party clients.
    #[command(subcommand)]
    Clients(ClientsCmd),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Manage login sessions.
    #[command(subcommand)]
    Sessions(SessionsCmd), // bcl
    // ops
    /// Print security events (logins, failures, lockouts, changes, operator actions), oldest first.
    Audit {
        /// Only events about this email address (or user id).
        #[arg(long)]
        user: Option<String>,
        /// Only events since this time: RFC 3339 (2026-12-01T00:00:00Z) or a duration ago (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the SQLite database to PATH while clef runs (VACUUM INTO),
    /// then check it. PostgreSQL: use pg_dump.
    Backup { path: PathBuf },
}

#[derive(Debug, Subcommand)]
// Parsed once per process; boxing clap's variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ClientsCmd {
    /// Register a client and print its id and secret.
    Create {
        #[arg(long)]
        name: String,
        /// Required unless the client uses only client_credentials. Repeatable.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A public client (SPA, mobile): no secret, PKCE required.
        #[arg(long)]
        public: bool,
        /// authorization_code, refresh_token, client_credentials; repeatable or a comma list
        /// (default: authorization_code,refresh_token). client_credentials: confidential only.
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// First-party client: no consent page.
        #[arg(long)]
        skip_consent: bool,
        /// ID token algorithm: RS256 (default) or ES256.
        #[arg(long)]
        id_token_signed_response_alg: Option<String>,
        /// Every login for this client needs two factors (password, then an emailed code).
        #[arg(long)]
        require_2fa: bool,
        /// A web origin (https://app.example) whose browser code may call token, userinfo,
        /// revocation, introspection, discovery and JWKS (CORS). Repeatable; the redirect
        /// URIs' origins are always allowed.
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        #[arg(long)]
        json: bool,
        /// bcl: where clef POSTs a logout token when a session this client took part in ends
        /// (OpenID Connect Back-Channel Logout 1.0); https, or http on a loopback host.
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
        /// bcl: logout tokens for this client carry `sid` (needs --backchannel-logout-uri).
        #[arg(long)]
        backchannel_logout_session_required: bool,
        // grants
        /// A scope client_credentials requests may ask for (an API scope such as
        /// invoices:read; not openid or a user scope). Repeatable or a space/comma list.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// An RFC 8707 resource (absolute URI, no fragment) the client's access tokens may be
        /// issued to: their `aud`. Repeatable; without one, a `resource` parameter is refused.
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Access and ID token algorithm: RS256 (default) or ES256.
        /// --id-token-signed-response-alg, when given too, wins for ID tokens.
        #[arg(long)]
        token_alg: Option<String>,
        // dcr
        /// token_endpoint_auth_method: client_secret_basic, client_secret_post,
        /// private_key_jwt or none (default: Basic or POST; none with --public).
        #[arg(long)]
        auth_method: Option<String>,
        /// For private_key_jwt: the URL of the client's JWK Set.
        #[arg(long)]
        jwks_uri: Option<String>,
        /// For private_key_jwt: a file holding the client's JWK Set.
        #[arg(long)]
        jwks_file: Option<std::path::PathBuf>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        client_id: String,
    },
    /// bcl: change a client's back-channel logout registration.
    Update {
        client_id: String,
        /// The new back-channel logout URI.
        #[arg(long, conflicts_with = "no_backchannel_logout")]
        backchannel_logout_uri: Option<String>,
        /// Logout tokens carry `sid`: true or false (default false).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        backchannel_logout_session_required: Option<bool>,
        /// Stop sending this client logout tokens.
        #[arg(long)]
        no_backchannel_logout: bool,
    },
}

/// bcl: login sessions.
#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// End every login session of a user, as "log out everywhere" does: the relying parties
    /// with a back-channel logout URI are notified by the running server, and the refresh
    /// tokens those sessions gave are revoked.
    End {
        #[arg(long = "user", value_name = "EMAIL")]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Create a user. Without --password, the password is read from standard input when it is
    /// not a terminal; otherwise the account has no password.
    Create {
        #[arg(long)]
        email: String,
        /// The password on the command line. Warning: every local user can read it in the
        /// process list (ps) and it stays in the shell history; prefer --password-stdin.
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input (terminal or pipe).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Mark the email as already verified.
        #[arg(long)]
        verified: bool,
        /// Phone number in E.164 form (+33612345678), released with the `phone` scope.
        #[arg(long)]
        phone: Option<String>,
        /// Postal address as one text, released with the `address` scope.
        #[arg(long)]
        address: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a user by id or email.
    Delete { user: String },
    /// Remove a user's two-factor login (TOTP, backup codes and any lock), for a lost device
    /// without backup codes. Recorded as a security event.
    #[command(name = "reset-2fa")]
    Reset2fa { email: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    List,
    /// Make new keys the signers; old public keys stay in JWKS until their tokens expire.
    Rotate,
    /// Replace keys/secret.key (CSRF tokens, emailed codes); the old key moves to
    /// keys/secret.previous and keeps verifying what it signed. Not for CLEF_SECRET_KEY.
    RotateSecret,
    /// Print a fresh value for CLEF_SECRET_KEY.
    NewSecret,
}

pub fn run(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(&config.log, config.log_format);
    let rt = match cli.command {
        Command::Serve => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
    };
    rt.block_on(dispatch(config, cli.command))
}

fn init_tracing(filter: &str, format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        // Colour codes only for a terminal: a log file or collector gets plain text.
        crate::config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        // Every span of the line (the request's, with its request_id) in `spans`.
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .with_ansi(false)
            .try_init(),
    };
}

async fn open_db(config: &Config) -> Result<Db> {
    let db = Db::connect(&config.database_url).await.context("CLEF_DATABASE_URL")?;
    db.migrate().await.context("migrations")?;
    Ok(db)
}

async fn dispatch(config: Config, command: Command) -> Result<()> {
    let clock = Clock::default();
    match command {
        Command::Serve => serve(config, clock).await,
        Command::Migrate => {
            open_db(&config).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Cleanup => {
            let db = open_db(&config).await?;
            let n = db.cleanup(clock.now()).await?;
            println!("{n} expired rows deleted");
            // ops: the audit log's retention (CLEF_AUDIT_RETENTION) too.
            let purged = db.audit_purge(clock.now() - config.audit_retention).await?;
            println!("{purged} security events past the retention period deleted");
            Ok(())
        }
        Command::Clients(cmd) => clients(&open_db(&config).await?, cmd, clock.now()).await,
        Command::Users(cmd) => users(&config, &open_db(&config).await?, cmd, clock.now()).await,
        Command::Keys(cmd) => {
            // ops: a rotation is an operator action the audit log keeps, when the database is there.
            let rotated = matches!(cmd, KeysCmd::Rotate | KeysCmd::RotateSecret);
            let which = if matches!(cmd, KeysCmd::Rotate) {
                "signing keys"
            } else {
                "secret key"
            };
            keys(&config, cmd, clock.now())?;
            if rotated {
                audit_operator(
                    &config,
                    crate::store::EventKind::KeysRotated,
                    |e| e.detail = Some(which),
                    clock.now(),
                )
                .await;
            }
            Ok(())
        }
        // ops
        Command::Audit { user, since, limit, json } => audit(&open_db(&config).await?, user, since, limit, json, clock.now()).await,
        Command::Backup { path } => backup(&config, &path).await,
        Command::Sessions(cmd) => sessions(&open_db(&config).await?, cmd, clock.now()).await, // bcl
    }
}

async fn serve(config: Config, clock: Clock) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("CLEF_LISTEN: cannot bind {}", config.listen))?;
    // ops
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("CLEF_METRICS_LISTEN: cannot bind {addr}"))?,
        ),
        None => None,
    };
    let issuer = config.issuer.clone();
    let state = AppState::build(config, clock).await?;
    tracing::info!(issuer = %issuer, listen = %listener.local_addr()?, "clef is serving");
    if let Some(m) = &metrics {
        tracing::info!(listen = %m.local_addr()?, "metrics served at /metrics");
    }
    // A log collector reading JSON lines gets no free text among them.
    if state.config.log_format == crate::config::LogFormat::Text {
        eprint!("{}", start_banner(&state).await);
    }
    crate::app::serve_with_metrics(listener, metrics, state.clone(), shutdown_signal()).await?;
    state.db.close().await;
    Ok(())
}

/// What a newcomer needs after `clef serve`: where clef answers and, on a fresh database,
/// the next step. Browsers must use the issuer's address: the CSRF check refuses others.
async fn start_banner(state: &AppState) -> String {
    let c = &state.config;
    let mut out = format!(
        "\nclef is serving {issuer}\n  open it at exactly this address (CLEF_ISSUER) in the browser\n  discovery: {issuer}{disc}\n",
        issuer = c.issuer,
        disc = crate::paths::DISCOVERY
    );
    let no_clients = state.db.client_list().await.map(|v| v.is_empty()).unwrap_or(false);
    let no_users = state.db.user_list().await.map(|v| v.is_empty()).unwrap_or(false);
    if no_clients {
        out.push_str(
            "  next: register an application:\n    clef clients create --name my-app --redirect-uri http://localhost:3000/callback\n",
        );
    }
    if no_users {
        out.push_str("  next: create a user (or let people sign up at ");
        out.push_str(&format!(
            "{}{}):\n    clef users create --email you@example.com   (reads the password from standard input)\n",
            c.issuer,
            crate::paths::SIGNUP
        ));
    }
    if c.smtp_url.is_none() {
        out.push_str(&format!(
            "  mail: no CLEF_SMTP_URL set, so mails (codes, links) are written to {}\n",
            c.outbox_dir.display()
        ));
    }
    out.push('\n');
    out
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = ctrl_c.await;
}

async fn clients(db: &Db, cmd: ClientsCmd, now: i64) -> Result<()> {
    match cmd {
        ClientsCmd::Create {
            name,
            redirect_uris,
            public,
            grant_types,
            post_logout_redirect_uris,
            skip_consent,
            id_token_signed_response_alg,
            require_2fa,
            allowed_origins,
            json,
            backchannel_logout_uri,
            backchannel_logout_session_required,
            scopes,
            resources,
            token_alg,
            auth_method,
            jwks_uri,
            jwks_file,
        } => {
            let jwks = match &jwks_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    Some(serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not JSON ({e})", path.display()))?)
                }
                None => None,
            };
            let spec = ClientSpec {
                scopes,
                resources,
                token_alg,
                auth_method,
                jwks_uri,
                jwks,
                name,
                redirect_uris,
                post_logout_redirect_uris,
                grant_types,
                public,
                skip_consent,
                id_token_alg: id_token_signed_response_alg,
                require_2fa,
                allowed_origins,
                backchannel_logout_uri,
                backchannel_logout_session_required,
            };
            let created = crate::admin::create_client(db, &spec, now).await?;
            operator_event(
                db,
                crate::store::EventKind::ClientCreated,
                |e| e.client_id = Some(&created.client_id),
                now,
            )
            .await;
            if json {
                println!("{}", serde_json::to_string(&created)?);
            } else {
                println!("client_id: {}", created.client_id);
                if let Some(s) = &created.client_secret {
                    println!("client_secret: {s}");
                    println!("(the secret is shown only now; clef keeps only its hash)");
                }
            }
        }
        ClientsCmd::List { json } => {
            let list = db.client_list().await?;
            let mut origins = Vec::with_capacity(list.len());
            for c in &list {
                origins.push(db.client_allowed_origins(&c.client_id).await?);
            }
            if json {
                let v: Vec<_> = list
                    .iter()
                    .zip(&origins)
                    .map(|(c, o)| {
                        serde_json::json!({
                            "client_id": c.client_id, "name": c.name, "redirect_uris": c.redirect_uris,
                            "post_logout_redirect_uris": c.post_logout_redirect_uris, "grant_types": c.grant_types,
                            "public": c.is_public, "skip_consent": c.skip_consent, "id_token_signed_response_alg": c.id_token_alg,
                            "require_2fa": c.require_2fa, "allowed_origins": o,
                            "backchannel_logout_uri": c.backchannel_logout_uri,
                            "backchannel_logout_session_required": c.backchannel_logout_session_required,
                            "scope": c.scopes.join(" "), "resources": c.resources, "access_token_alg": c.access_token_alg,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (c, o) in list.iter().zip(&origins) {
                    let kind = if c.is_public { "public" } else { "confidential" };
                    let extra = if o.is_empty() {
                        String::new()
                    } else {
                        format!("\torigins: {}", o.join(" "))
                    };
                    println!("{}\t{}\t{kind}\t{}{extra}", c.client_id, c.name, c.redirect_uris.join(" "));
                }
            }
        }
        ClientsCmd::Delete { client_id } => {
            db.client_delete(&client_id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}: {client_id}"))?;
            operator_event(db, crate::store::EventKind::ClientDeleted, |e| e.client_id = Some(&client_id), now).await;
            println!("deleted client {client_id}");
        }
        ClientsCmd::Update {
            client_id,
            backchannel_logout_uri,
            backchannel_logout_session_required,
            no_backchannel_logout,
        } => {
            let Some(current) = db.client_get(&client_id).await? else {
                bail!("no client with id {client_id}");
            };
            let uri = match (no_backchannel_logout, backchannel_logout_uri) {
                (true, _) => None,
                (false, Some(u)) => Some(u),
                (false, None) => current.backchannel_logout_uri,
            };
            let required = match (no_backchannel_logout, backchannel_logout_session_required) {
                (true, _) => false,
                (false, Some(r)) => r,
                (false, None) => current.backchannel_logout_session_required,
            };
            crate::admin::set_backchannel(db, &client_id, uri.as_deref(), required).await?;
            match uri {
                Some(u) => println!("client {client_id}: backchannel_logout_uri {u}, session required: {required}"),
                None => println!("client {client_id}: no back-channel logout"),
            }
        }
    }
    Ok(())
}

/// bcl: `clef sessions end --user EMAIL`.
async fn sessions(db: &Db, cmd: SessionsCmd, now: i64) -> Result<()> {
    match cmd {
        SessionsCmd::End { email } => {
            let n = crate::admin::end_sessions(db, &email, now).await?;
            let queued = db.backchannel_pending_count().await?;
            println!(
                "ended {n} session(s) of {}; {queued} back-channel logout notification(s) waiting for the server",
                crate::store::normalize_email(&email)
            );
        }
    }
    Ok(())
}

async fn users(config: &Config, db: &Db, cmd: UsersCmd, now: i64) -> Result<()> {
    match cmd {
        UsersCmd::Create {
            email,
            password,
            password_stdin,
            name,
            roles,
            verified,
            phone,
            address,
        } => {
            let password = match password {
                Some(p) => Some(p),
                None if password_stdin => {
                    // One line only, so a script can pass more after it on the same pipe.
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    let line = line.trim_end_matches(['\r', '\n']).to_owned();
                    if line.is_empty() {
                        bail!("standard input held no password");
                    }
                    Some(line)
                }
                None if !std::io::stdin().is_terminal() => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the password from standard input")?;
                    let line = s.lines().next().unwrap_or("").to_owned();
                    if line.is_empty() {
                        bail!("standard input held no password");
                    }
                    Some(line)
                }
                None => None,
            };
            let hasher = Hasher::new(config.max_concurrent_hashes);
            let spec = UserSpec {
                email,
                password,
                name,
                roles,
                verified,
                phone,
                address,
            };
            let id = crate::admin::create_user(db, &hasher, &spec, now).await?;
            let email = crate::store::normalize_email(&spec.email);
            operator_event(
                db,
                crate::store::EventKind::UserCreated,
                |e| {
                    e.user_id = Some(&id);
                    e.email = Some(&email);
                },
                now,
            )
            .await;
            println!("{id}");
        }
        UsersCmd::List { json } => {
            let list = db.user_list().await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|u| serde_json::json!({"sub": u.user_id, "email": u.email, "email_verified": u.email_verified, "name": u.name, "roles": u.roles}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for u in list {
                    let verified = if u.email_verified { "verified" } else { "unverified" };
                    println!("{}\t{}\t{verified}\t{}", u.user_id, u.email, u.roles.join(","));
                }
            }
        }
        UsersCmd::Delete { user } => {
            // bcl: the user's sessions end first, so their back-channel clients hear of it
            // (the queued notifications outlive the user's rows).
            let found = match db.user_get(&user).await? {
                Some(u) => Some(u),
                None => db.user_by_email(&user).await?,
            };
            if let Some(u) = &found {
                db.sessions_end_all_for_user(&u.user_id, now).await?;
            }
            // ops: the email, looked up first: the event outlives the account and names it.
            let email = match found {
                Some(u) => u.email,
                None => crate::store::normalize_email(&user),
            };
            db.user_delete(&user).await.map_err(|e| anyhow::anyhow!("{e}: {user}"))?;
            operator_event(db, crate::store::EventKind::UserDeleted, |e| e.email = Some(&email), now).await;
            println!("deleted user {user}");
        }
        UsersCmd::Reset2fa { email } => {
            let Some(report) = crate::auth::totp::reset(db, &email, now).await? else {
                bail!("no user with the email {}", crate::store::normalize_email(&email));
            };
            let r = report.removed;
            println!(
                "reset two-factor login of {} ({}): {}, {} backup codes removed, {}",
                crate::store::normalize_email(&email),
                report.user_id,
                if r.totp { "TOTP removed" } else { "no TOTP was set up" },
                r.backup_codes,
                if r.lock { "lock cleared" } else { "no lock" }
            );
        }
    }
    Ok(())
}

fn keys(config: &Config, cmd: KeysCmd, now: i64) -> Result<()> {
    let retention = config.max_signed_lifetime();
    let list = match cmd {
        KeysCmd::List => {
            if !config.keys_dir.exists() {
                bail!(
                    "CLEF_KEYS_DIR: {} does not exist (clef serve creates it)",
                    config.keys_dir.display()
                );
            }
            Keys::list(&config.keys_dir, retention, now)?
        }
        KeysCmd::Rotate => {
            let l = Keys::rotate(&config.keys_dir, retention, now)?;
            eprintln!(
                "rotated: running servers switch to the new keys within {} seconds (CLEF_KEYS_RELOAD_INTERVAL)",
                config.keys_reload_interval.as_secs()
            );
            l
        }
        KeysCmd::RotateSecret => {
            if config.secret_key.is_some() {
                bail!("CLEF_SECRET_KEY is set: rotate by putting a new key first in its list (see `clef keys new-secret`)");
            }
            crate::secret_key::SecretKeys::rotate(&config.keys_dir)?;
            eprintln!(
                "rotated {}: running servers sign with the new key within {} seconds; the old one still verifies",
                config.keys_dir.join(crate::secret_key::CURRENT_FILE).display(),
                config.keys_reload_interval.as_secs()
            );
            return Ok(());
        }
        KeysCmd::NewSecret => {
            println!("{}", crate::secret_key::new_value());
            return Ok(());
        }
    };
    for k in list {
        println!("{}\t{}\t{}\t{}", k.kid, k.alg, k.status, k.created_at);
    }
    Ok(())
}

// ops: the audit log's operator side, `clef audit` and `clef backup`.

/// Records an operator action; a failure to record is reported but does not undo the action.
async fn operator_event<'a>(db: &Db, kind: crate::store::EventKind, fill: impl FnOnce(&mut crate::store::AuditEvent<'a>), now: i64) {
    let mut e = crate::store::AuditEvent {
        detail: Some("cli"),
        ..Default::default()
    };
    fill(&mut e);
    if let Err(err) = db.audit_record(kind, &e, now).await {
        eprintln!("clef: warning: the audit log did not record {}: {err}", kind.as_str());
    }
}

/// As `operator_event`, opening the database; for commands that work without one (keys).
async fn audit_operator<'a>(
    config: &Config,
    kind: crate::store::EventKind,
    fill: impl FnOnce(&mut crate::store::AuditEvent<'a>),
    now: i64,
) {
    // A SQLite file that is not there yet is not made just to hold this one event.
    if let Some(rest) = config.database_url.strip_prefix("sqlite:") {
        let file = rest.trim_start_matches("//").split('?').next().unwrap_or("");
        if !file.contains(":memory:") && !std::path::Path::new(file).exists() {
            return;
        }
    }
    match open_db(config).await {
        Ok(db) => operator_event(&db, kind, fill, now).await,
        Err(err) => eprintln!("clef: warning: the audit log did not record {}: {err:#}", kind.as_str()),
    }
}

/// `--since`: RFC 3339, or a duration back from now.
fn parse_since(s: &str, now: i64) -> Result<i64> {
    if let Some(d) = crate::config::parse_duration(s) {
        return Ok(now - d);
    }
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--since: {s:?} is neither RFC 3339 (2026-12-01T00:00:00Z) nor a duration (24h, 7d)"))?;
    Ok(t.unix_timestamp())
}

fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

async fn audit(db: &Db, user: Option<String>, since: Option<String>, limit: i64, json: bool, now: i64) -> Result<()> {
    let since = since.map(|s| parse_since(&s, now)).transpose()?;
    let q = crate::store::AuditQuery {
        user,
        since,
        limit: limit.clamp(1, 1_000_000),
    };
    let rows = db.audit_list(&q).await?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for r in rows {
        if json {
            let mut v = serde_json::to_value(&r)?;
            v["time"] = serde_json::Value::String(rfc3339(r.at));
            writeln!(out, "{v}")?;
        } else {
            // Tab-separated; a field the client chose (user agent) is printed escaped.
            let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{:?}",
                rfc3339(r.at),
                r.kind,
                r.email.clone().or(r.user_id.clone()).unwrap_or_else(|| "-".to_owned()),
                dash(&r.client_id),
                dash(&r.ip),
                dash(&r.detail),
                r.user_agent.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(())
}

async fn backup(config: &Config, path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !config.database_url.starts_with("sqlite:") {
        bail!("clef backup is for SQLite; back PostgreSQL up with pg_dump (see README, Operating clef)");
    }
    // Created empty and owner-only first: the copy holds password and token hashes, and
    // VACUUM INTO accepts an empty file but never overwrites a backup already there.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create the backup file", path.display()))?;
    let db = Db::connect(&config.database_url).await.context("CLEF_DATABASE_URL")?;
    if let Err(e) = db.sqlite_backup(path).await {
        let _ = std::fs::remove_file(path);
        return Err(e).context("backup");
    }
    db.close().await;
    // The copy is checked as a restore would open it.
    let verdict = crate::store::sqlite_file_integrity(path).await.context("checking the copy")?;
    if verdict != "ok" {
        bail!("the copy at {} failed its integrity check: {verdict}", path.display());
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("backup written to {} ({size} bytes, integrity ok)", path.display());
    Ok(())
}
