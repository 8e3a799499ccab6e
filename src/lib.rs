//! clef: an OAuth 2.0 / OpenID Connect identity provider.

/// Operator actions shared by the CLI and tests.
pub mod admin;
/// Application state, start-up and the serve loop.
pub mod app;
/// Sign-in methods.
pub mod auth;
/// The back-channel logout worker (OpenID Connect Back-Channel Logout 1.0).
pub mod backchannel; // bcl
/// The command line.
pub mod cli;
/// The only reader of the wall clock.
pub mod clock;
/// Settings from defaults, `clef.toml` and `CLEF_*`.
pub mod config;
/// A short device summary from a user agent.
pub mod device;
/// axum handlers: thin, no SQL, no protocol rules.
pub mod http;
/// English and French catalogues and locale negotiation.
pub mod i18n;
/// Signing keys, JWKS and rotation.
pub mod keys;
/// SMTP or outbox delivery.
pub mod mail;
/// The mails clef sends.
pub mod notify;
/// Protocol rules, pure and unit-tested.
pub mod oauth;
/// The template engine.
pub mod pages;
/// Route paths shared by router and discovery.
pub mod paths;
/// Random values, hashes, constant-time comparison.
pub mod secret;
/// AES-256-GCM sealing of secrets the server reads back (TOTP seeds).
pub mod secret_box;
/// The server's HMAC keys, outside the database.
pub mod secret_key;
/// SQLite and PostgreSQL storage.
pub mod store;
// ops
/// Prometheus metrics, request ids, and the per-request span.
pub mod telemetry;
/// OpenID Connect client for upstream providers (Google and others).
pub mod upstream;
// dcr
/// Documents fetched from clients: `jwks_uri`, `sector_identifier_uri`.
pub mod remote;
