//! The page engine: minijinja over the embedded templates, each replaceable by a file of the
//! same name in the operator's templates folder. Strict: a typo is an error, not "".

use std::path::Path;
use std::sync::Arc;

use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde::Serialize;

use crate::i18n::{Catalogues, DEFAULT_LOCALE};

pub const EMBEDDED: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/pages/login.html")),
    ("signup.html", include_str!("../templates/pages/signup.html")),
    ("consent.html", include_str!("../templates/pages/consent.html")),
    ("error.html", include_str!("../templates/pages/error.html")),
    ("form_post.html", include_str!("../templates/pages/form_post.html")),
    ("account.html", include_str!("../templates/pages/account.html")),
    ("logout.html", include_str!("../templates/pages/logout.html")),
    ("code.html", include_str!("../templates/pages/code.html")),
    ("forgot.html", include_str!("../templates/pages/forgot.html")),
    ("limited.html", include_str!("../templates/pages/limited.html")),
    ("email/message.txt", include_str!("../templates/email/message.txt")),
    ("email/message.html", include_str!("../templates/email/message.html")),
];

pub struct Pages {
    env: Environment<'static>,
    catalogues: Arc<Catalogues>,
}

impl Pages {
    pub fn load(dir: Option<&Path>) -> Result<Pages, String> {
        let catalogues = Arc::new(Catalogues::load(dir)?);
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, embedded) in EMBEDDED {
            let src = match dir.map(|d| d.join(name)) {
                Some(p) if p.exists() => std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?,
                _ => (*embedded).to_owned(),
            };
            env.add_template_owned(*name, src).map_err(|e| format!("template {name}: {e}"))?;
        }
        let cats = catalogues.clone();
        env.add_function("t", move |state: &State, key: &str| -> Result<String, Error> {
            let locale = state
                .lookup("locale")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| DEFAULT_LOCALE.to_owned());
            cats.text(&locale, key)
                .map(str::to_owned)
                .ok_or_else(|| Error::new(ErrorKind::UndefinedError, format!("no text for {key:?}")))
        });
        Ok(Pages { env, catalogues })
    }

    /// A catalogue text outside a template (mail subjects).
    pub fn text(&self, locale: &str, key: &str) -> Option<&str> {
        self.catalogues.text(locale, key)
    }

    /// Renders `name` with the page struct `ctx`, which must carry a `locale` field.
    pub fn render<S: Serialize>(&self, name: &str, ctx: &S) -> Result<String, Error> {
        let tmpl = self.env.get_template(name)?;
        let html = tmpl.render(minijinja::value::Serde(ctx))?;
        if html.is_empty() {
            return Err(Error::new(ErrorKind::InvalidOperation, "empty page"));
        }
        Ok(html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::LOCALES;

    /// Every template renders in every language with the fields pages pass, and every `t()`
    /// key exists: what askama would check at compile time, checked here.
    #[test]
    fn every_template_renders_in_every_language() {
        let pages = Pages::load(None).unwrap();
        for locale in LOCALES {
            for error in [None, Some("login.failed")] {
                let ctx = serde_json::json!({
                    "locale": locale, "action": "/login", "csrf": "c", "req": "r", "email": "a@b.c", "name": "Ana",
                    "error": error, "notice": "signup.check_email", "client_name": "Shop", "signup_url": "/signup",
                    "login_url": "/login", "scopes": ["openid", "profile", "email", "phone", "address", "roles", "offline_access"],
                    "message": "error.internal", "detail": "[REF:x]", "redirect_uri": "https://rp/cb",
                    "params": [["code", "x"], ["state", "y"]], "nonce": "n", "logout_action": "/logout",
                    "done": false, "hidden": [["state", "s"]], "code_action": "/login/code", "forgot_url": "/password/forgot", "purpose": "login",
                    "new_password": true, "back_url": "/login", "mail_failed": true, "minutes": 1,
                    "kind": "mail.login_code", "link_label": "mail.link_label", "subject": "s", "issuer": "https://id.example",
                    "code": "123456", "link": "https://id.example/login/link?token=x",
                });
                for (name, _) in EMBEDDED {
                    let html = pages.render(name, &ctx).unwrap_or_else(|e| panic!("{name} in {locale}: {e:#}"));
                    if name.ends_with(".html") {
                        assert!(html.contains(&format!("lang=\"{locale}\"")), "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_keys_fail_loudly() {
        let pages = Pages::load(None).unwrap();
        let mut env = pages.env.clone();
        env.add_template("bad.html", "{{ t('no.such.key') }}").unwrap();
        assert!(
            env.get_template("bad.html")
                .unwrap()
                .render(minijinja::context! { locale => "en" })
                .is_err()
        );
    }

    #[test]
    fn operator_templates_override_the_embedded_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("error.html"), "<html lang=\"{{ locale }}\">custom {{ t(message) }}").unwrap();
        let pages = Pages::load(Some(dir.path())).unwrap();
        let html = pages
            .render(
                "error.html",
                &serde_json::json!({"locale": "fr", "message": "error.not_found", "detail": null}),
            )
            .unwrap();
        assert_eq!(html, "<html lang=\"fr\">custom Cette page n’existe pas.");
    }
}
