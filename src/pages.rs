//! The page engine: minijinja over the embedded templates, each replaceable by a file of the
//! same name in the operator's templates folder. Strict: a typo is an error, not "".

use std::path::Path;
use std::sync::Arc;

use minijinja::value::{Kwargs, Value};
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
    ("done.html", include_str!("../templates/pages/done.html")),
    (
        "account_email_code.html",
        include_str!("../templates/pages/account_email_code.html"),
    ),
    ("password.html", include_str!("../templates/pages/password.html")),
    ("login_totp.html", include_str!("../templates/pages/login_totp.html")),
    ("offer_totp.html", include_str!("../templates/pages/offer_totp.html")),
    ("email/message.txt", include_str!("../templates/email/message.txt")),
    ("email/message.html", include_str!("../templates/email/message.html")),
    ("two_factor.html", include_str!("../templates/pages/two_factor.html")),
    ("two_factor_enrol.html", include_str!("../templates/pages/two_factor_enrol.html")),
    ("two_factor_codes.html", include_str!("../templates/pages/two_factor_codes.html")),
    ("reauth.html", include_str!("../templates/pages/reauth.html")),
    // fed
    ("upstream_link.html", include_str!("../templates/pages/upstream_link.html")),
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
        // `t("key")`, or `t("key", n=3)` for a count (`key.one` / `key.other`); other keyword
        // arguments fill `{name}` placeholders. The result is escaped like any value.
        env.add_function("t", move |state: &State, key: &str, kwargs: Kwargs| -> Result<String, Error> {
            let locale = state
                .lookup("locale")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| DEFAULT_LOCALE.to_owned());
            let missing = || Error::new(ErrorKind::UndefinedError, format!("no text for {key:?}"));
            let mut text = match kwargs.get::<Option<i64>>("n")? {
                Some(n) => cats.plural(&locale, key, n).ok_or_else(missing)?,
                None => cats.text(&locale, key).map(str::to_owned).ok_or_else(missing)?,
            };
            for name in kwargs.args().filter(|a| *a != "n") {
                let value: Value = kwargs.get(name)?;
                text = text.replace(&format!("{{{name}}}"), &value.to_string());
            }
            kwargs.assert_all_used()?;
            Ok(text)
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
                    "login_url": "/login", "scopes": ["openid", "profile", "email", "phone", "address", "roles", "offline_access", "account"],
                    "message": "error.internal", "detail": "[REF:x]", "redirect_uri": "https://rp/cb",
                    "params": [["code", "x"], ["state", "y"]], "nonce": "n", "logout_action": "/logout",
                    "done": false, "hidden": [["state", "s"]], "code_action": "/login/code", "forgot_url": "/password/forgot", "attempt": "a",
                    "new_password": true, "back_url": "/login", "mail_failed": true, "minutes": 1,
                    "kind": "mail.login_code", "link_label": "mail.link_label", "subject": "s", "issuer": "https://id.example",
                    "code": "123456", "link": "https://id.example/login/link?token=x",
                    "detail_link": error.is_some(), "links": [{"href": "/login?req=r", "label": "error.to_login"}, {"href": "/account", "label": "error.to_account"}],
                    "expires_minutes": 10, "resend_action": error.map(|_| "/login/code"), "confirmed": "done.signup", "next_url": "/account",
                    "button": "mail.button.sign_in",
                });
                // The two-factor pages' fields (one json! of everything passes the macro's recursion limit).
                let extra = serde_json::json!({
                    "totp_on": error.is_some(), "backup_codes_left": 7, "locked_minutes": 3, "enable_action": "/e",
                    "disable_action": "/d", "regenerate_action": "/r", "account_url": "/account", "qr_svg": "<svg></svg>",
                    "otpauth_uri": "otpauth://totp/clef:a?secret=A&issuer=clef", "secret_grouped": "ABCD EFGH",
                    "codes": ["abcde-fghjk"], "download_href": "data:text/plain,x", "download_name": "backup-codes.txt",
                    "totp_action": "/login/totp", "backup_action": "/login/backup-code", "setup_url": "/account/two-factor",
                    "client_logo": "https://rp.example/logo.png", "client_policy_uri": "https://rp.example/privacy", "client_tos_uri": null,
                    "reason": "reauth.reason.disable_totp", "ask": "code", "password_action": "/p", "code_action": "/c", "cancel_url": "/account",
                });
                // fed: the upstream buttons and the link page.
                let fed = serde_json::json!({
                    "upstreams": [{"id": "google", "label": "Continue with Google", "google": true, "action": "/login/upstream/google"},
                                  {"id": "corp", "label": "Continue with <Corp>", "google": false, "action": "/login/upstream/corp"}],
                    "upstream_name": "Google", "password_action": "/login/password",
                });
                let mut ctx = ctx;
                for more in [extra, fed] {
                    if let (Some(all), serde_json::Value::Object(more)) = (ctx.as_object_mut(), more) {
                        all.extend(more);
                    }
                }
                for (name, _) in EMBEDDED {
                    let html = pages.render(name, &ctx).unwrap_or_else(|e| panic!("{name} in {locale}: {e:#}"));
                    if name.ends_with(".html") {
                        assert!(html.contains(&format!("lang=\"{locale}\"")), "{name}");
                    }
                }
            }
        }
    }

    /// The page details users asked for, in both languages: counts as plurals, error pages
    /// with a way forward, the code page naming the address with a resend form, mail
    /// buttons that name an action with the plain URL under them.
    #[test]
    fn page_details_render_in_both_languages() {
        let pages = Pages::load(None).unwrap();
        // minijinja escapes "/" too; the assertions read the page as a browser would.
        let render = |name: &str, ctx: serde_json::Value| pages.render(name, &ctx).unwrap().replace("&#x2f;", "/");
        for (locale, minute, minutes) in [
            ("en", "Try again in 1 minute.", "Try again in 5 minutes."),
            ("fr", "Réessayez dans 1 minute.", "Réessayez dans 5 minutes."),
        ] {
            let limited = |n: i64| {
                render(
                    "limited.html",
                    serde_json::json!({"locale": locale, "message": "limited.too_many_tries", "minutes": n, "back_url": "/login"}),
                )
            };
            assert!(limited(1).contains(minute), "{locale}");
            assert!(limited(5).contains(minutes), "{locale}");
            assert!(!limited(5).contains("(s)"));

            let code = render(
                "code.html",
                serde_json::json!({
                    "locale": locale, "action": "/login/code/verify", "csrf": "c", "req": "r", "email": "ana@example.test",
                    "attempt": "a", "notice": "code.sent", "error": null, "mail_failed": false, "new_password": false,
                    "back_url": "/login?req=r", "expires_minutes": 1, "resend_action": "/login/code",
                }),
            );
            assert!(code.contains("<strong class=\"address\">ana@example.test</strong>"), "{code}");
            assert!(code.contains("action=\"/login/code\""), "a resend form: {code}");
            assert!(code.contains(if locale == "en" {
                "works for 1 minute."
            } else {
                "valable 1 minute."
            }));

            let error = render(
                "error.html",
                serde_json::json!({
                    "locale": locale, "message": "error.wrong_address", "detail": "https://id.example/login", "detail_link": true,
                    "links": [{"href": "https://id.example/login", "label": "error.open_login_here"}],
                }),
            );
            assert!(
                error.contains("<a href=\"https://id.example/login\">https://id.example/login</a>"),
                "{error}"
            );
            assert!(error.contains("class=\"button\" href=\"https://id.example/login\""), "{error}");

            let mail = render(
                "email/message.html",
                serde_json::json!({
                    "locale": locale, "kind": "mail.verify_email", "subject": "s", "code": "123456",
                    "link": "https://id.example/login/link?token=x", "link_label": "mail.link_label",
                    "button": "mail.button.verify", "issuer": "https://id.example",
                }),
            );
            let label = if locale == "en" {
                "Verify my address"
            } else {
                "Confirmer mon adresse"
            };
            assert!(mail.contains(&format!(">{label}</a>")), "{mail}");
            assert!(
                mail.contains(">https://id.example/login/link?token=x</a>"),
                "the plain URL below: {mail}"
            );
        }
    }

    /// WCAG 2.x relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }

    /// The base style: controls use the page font, links the button colour, input borders
    /// at least 3:1 against white (WCAG 1.4.11), and a visible focus outline.
    #[test]
    fn base_style_meets_the_contrast_rules() {
        let css = include_str!("../templates/base.html");
        assert!(css.contains("input,button,select,textarea{font:inherit}"));
        let rule = |selector: &str| {
            let at = css.find(&format!("\n{selector}{{")).unwrap_or_else(|| panic!("no rule {selector}"));
            css[at..].split('}').next().unwrap().to_owned()
        };
        let button = rule("button,a.button");
        let link = rule("a");
        let button_bg = button.split("background:").nth(1).unwrap()[..7].to_owned();
        assert_eq!(
            link.split("color:").nth(1).unwrap()[..7],
            button_bg,
            "links share the button colour"
        );
        let input = rule("input[type=email],input[type=password],input[type=text]");
        let border = input.split("border:1px solid ").nth(1).unwrap()[..7].to_owned();
        let ratio = (1.0 + 0.05) / (luminance(&border) + 0.05);
        assert!(ratio >= 3.0, "input border {border} is {ratio:.2}:1 against white");
        let focus = rule(":focus-visible");
        assert!(focus.contains("outline:3px solid"), "{focus}");
        let link_ratio = (1.0 + 0.05) / (luminance(&button_bg) + 0.05);
        assert!(link_ratio >= 4.5, "link text {button_bg} is {link_ratio:.2}:1");
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
