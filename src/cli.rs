//! The command line: `serve`, `migrate`, `cleanup`, and the `clients`, `users`, `keys` groups.

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
}

#[derive(Debug, Subcommand)]
pub enum ClientsCmd {
    /// Register a client and print its id and secret.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A public client (SPA, mobile): no secret, PKCE required.
        #[arg(long)]
        public: bool,
        /// authorization_code, refresh_token (default: both).
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
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        client_id: String,
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
    init_tracing(&config.log);
    let rt = match cli.command {
        Command::Serve => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
    };
    rt.block_on(dispatch(config, cli.command))
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
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
            let n = open_db(&config).await?.cleanup(clock.now()).await?;
            println!("{n} expired rows deleted");
            Ok(())
        }
        Command::Clients(cmd) => clients(&open_db(&config).await?, cmd, clock.now()).await,
        Command::Users(cmd) => users(&config, &open_db(&config).await?, cmd, clock.now()).await,
        Command::Keys(cmd) => keys(&config, cmd, clock.now()),
    }
}

async fn serve(config: Config, clock: Clock) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("CLEF_LISTEN: cannot bind {}", config.listen))?;
    let issuer = config.issuer.clone();
    let state = AppState::build(config, clock).await?;
    tracing::info!(issuer = %issuer, listen = %listener.local_addr()?, "clef is serving");
    eprint!("{}", start_banner(&state).await);
    crate::app::serve(listener, state, shutdown_signal()).await?;
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
        } => {
            let spec = ClientSpec {
                name,
                redirect_uris,
                post_logout_redirect_uris,
                grant_types,
                public,
                skip_consent,
                id_token_alg: id_token_signed_response_alg,
                require_2fa,
                allowed_origins,
            };
            let created = crate::admin::create_client(db, &spec, now).await?;
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
            println!("deleted client {client_id}");
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
            db.user_delete(&user).await.map_err(|e| anyhow::anyhow!("{e}: {user}"))?;
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
