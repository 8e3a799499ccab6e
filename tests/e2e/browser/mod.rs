//! Every journey a user has, in a real Chromium, against the real server on SQLite.
//!
//! The reqwest suite sends no `Origin` and no Fetch Metadata, so it could not see that the
//! first release refused every form a browser posted (`Origin: null` under `no-referrer`).
//! Elements are picked by form action, input name and button type or value, never by visible
//! text, which is free to change; a page's language is read from `<html lang>`.

mod account;
mod client_app;
mod cors;
mod csrf;
mod errors;
mod harness;
mod journeys;
mod language;
mod login_page;
mod login_totp;
// fed
mod login_upstream;
mod reauth;
mod two_factor;

use clef::admin::{ClientSpec, CreatedClient};
use clef::i18n::Catalogues;

use crate::support::rp::{Rp, Started};
use crate::support::{Backend, TestServer};
use client_app::ClientApp;
use harness::Session;

const PW: &str = "correct horse battery";

/// A server, the client's web app on another loopback port, and the relying party.
struct Fixture {
    h: TestServer,
    app: ClientApp,
    rp: Rp,
    created: CreatedClient,
}

impl Fixture {
    async fn new(skip_consent: bool) -> Fixture {
        Self::with(ClientSpec {
            skip_consent,
            ..ClientSpec::default()
        })
        .await
    }

    async fn with(spec: ClientSpec) -> Fixture {
        let h = TestServer::start(Backend::Sqlite).await;
        let app = ClientApp::start().await;
        let created = h
            .client(ClientSpec {
                name: "Browser app".into(),
                redirect_uris: vec![app.url("/cb")],
                post_logout_redirect_uris: vec![app.url("/bye")],
                ..spec
            })
            .await;
        let rp = Rp::discover(&h.issuer, &created, &app.url("/cb")).await;
        Fixture { h, app, rp, created }
    }

    /// Waits until the browser has come back to the client's redirect URI and returns the code
    /// it brought, after checking `state`.
    async fn code_at_client(&self, s: &Session, start: &Started) -> String {
        let cb = self.app.url("/cb");
        s.wait_until(|u| u.starts_with(&cb)).await;
        s.wait_loaded().await;
        s.shot("client").await;
        assert!(s.has("#client").await, "the client's own page is shown");
        let hit = self.app.only_hit("/cb");
        assert_eq!(hit.param("state"), Some(start.state.as_str()));
        assert_eq!(hit.param("error"), None, "{hit:?}");
        hit.param("code").expect("a code at the client").to_owned()
    }

    /// The client exchanges the code with the `openidconnect` crate; returns the `sub`.
    async fn exchange(&self, code: &str, start: Started) -> String {
        let tokens = self.rp.exchange(code, start.verifier).await;
        self.rp.id_claims(&tokens, &start.nonce).subject().as_str().to_owned()
    }

    async fn finish(self) {
        self.h.finish().await;
    }
}

/// The catalogue text the server renders for `key`: tests compare with it rather than with
/// a copy of the wording.
fn text(locale: &str, key: &str) -> String {
    Catalogues::load(None)
        .unwrap()
        .text(locale, key)
        .unwrap_or_else(|| panic!("no {key} in {locale}"))
        .to_owned()
}

/// Selectors for the hosted forms, by their `action`.
mod form {
    pub const LOGIN: &str = "form[action$=\"/login\"]";
    /// The login form's second method: the same address, a code by email.
    pub const CODE_BUTTON: &str = "button[formaction$=\"/login/code\"]";
    pub const CODE_VERIFY: &str = "form[action$=\"/login/code/verify\"]";
    pub const CONSENT: &str = "form[action$=\"/consent\"]";
    pub const SIGNUP: &str = "form[action$=\"/signup\"]";
    pub const FORGOT: &str = "form[action$=\"/password/forgot\"]";
    pub const RESET: &str = "form[action$=\"/password/reset\"]";
    pub const LOGOUT: &str = "form[action$=\"/logout\"]";
}

impl Session {
    /// On the login page: email and password, then the login button.
    async fn log_in(&self, email: &str, password: &str, label: &str) {
        assert!(self.has(form::LOGIN).await, "a login form on {}", self.url().await);
        self.submit(form::LOGIN, &[("email", email), ("password", password)], label).await;
    }

    async fn allow(&self, label: &str) {
        assert!(self.has(form::CONSENT).await, "a consent form on {}", self.url().await);
        self.fill_and_submit(form::CONSENT, &[], "button[value=\"allow\"]", label).await;
    }

    /// The text of the page's alert (errors are `role="alert"`).
    async fn alert(&self) -> String {
        self.find("[role=\"alert\"]").await.text().await.unwrap()
    }
}

/// Declares browser tests: each runs on SQLite only, in its own browser profile(s).
#[macro_export]
macro_rules! browser_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::super::harness::run(stringify!($name), super::$name).await;
                }
            )*
        }
    };
}
