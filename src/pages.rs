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
];

pub struct Pages {
    env: Environment<'static>,
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
            Ok(cats.text(&locale, key).to_owned())
        });
        Ok(Pages { env })
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
