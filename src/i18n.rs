//! English and French catalogues; the locale comes from `ui_locales`, then `Accept-Language`.

use std::collections::HashMap;
use std::path::Path;

pub const LOCALES: &[&str] = &["en", "fr"];
pub const DEFAULT_LOCALE: &str = "en";

const EMBEDDED: &[(&str, &str)] = &[
    ("en", include_str!("../templates/locales/en.toml")),
    ("fr", include_str!("../templates/locales/fr.toml")),
];

/// locale -> key -> text.
#[derive(Debug)]
pub struct Catalogues(HashMap<&'static str, HashMap<String, String>>);

impl Catalogues {
    /// The embedded catalogues, each replaced by `{dir}/locales/{locale}.toml` when present.
    pub fn load(dir: Option<&Path>) -> Result<Catalogues, String> {
        let mut all = HashMap::new();
        for (locale, embedded) in EMBEDDED {
            let text = match dir.map(|d| d.join("locales").join(format!("{locale}.toml"))) {
                Some(p) if p.exists() => std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?,
                _ => (*embedded).to_owned(),
            };
            let table: HashMap<String, String> = toml::from_str(&text).map_err(|e| format!("locale {locale}: {e}"))?;
            all.insert(*locale, table);
        }
        Ok(Catalogues(all))
    }

    /// The text for `key`, falling back to English when an operator's catalogue lacks it.
    /// `None` only for a key English does not know: a template bug, which rendering reports.
    pub fn text(&self, locale: &str, key: &str) -> Option<&str> {
        self.0
            .get(locale)
            .and_then(|c| c.get(key))
            .or_else(|| self.0.get(DEFAULT_LOCALE).and_then(|c| c.get(key)))
            .map(String::as_str)
    }

    /// The text for a count: `{key}.one` or `{key}.other` by the CLDR cardinal rule of the
    /// locale, with `{n}` replaced by the count.
    pub fn plural(&self, locale: &str, key: &str, n: i64) -> Option<String> {
        let category = plural_category(locale, n);
        let text = self
            .text(locale, &format!("{key}.{category}"))
            .or_else(|| self.text(locale, &format!("{key}.other")))?;
        Some(text.replace("{n}", &n.to_string()))
    }

    pub fn keys(&self, locale: &str) -> Vec<&str> {
        let mut k: Vec<&str> = self
            .0
            .get(locale)
            .map(|c| c.keys().map(String::as_str).collect())
            .unwrap_or_default();
        k.sort_unstable();
        k
    }
}

/// CLDR cardinal plural rules for integers (unicode.org/cldr, plurals.xml): English "one"
/// is exactly 1; French "one" is 0 and 1. French "many" (whole millions) reads well as
/// "other" in our texts, so it is not told apart.
pub fn plural_category(locale: &str, n: i64) -> &'static str {
    let i = n.unsigned_abs();
    match locale {
        "fr" if i <= 1 => "one",
        "fr" => "other",
        _ if i == 1 => "one",
        _ => "other",
    }
}

fn supported(tag: &str) -> Option<&'static str> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    LOCALES.iter().copied().find(|l| *l == primary)
}

/// OIDC Core §3.1.2.1 `ui_locales` (space-separated, in order of preference) wins; then
/// `Accept-Language` by q-value; then English.
pub fn negotiate(ui_locales: Option<&str>, accept_language: Option<&str>) -> &'static str {
    if let Some(found) = ui_locales.into_iter().flat_map(|u| u.split(' ')).find_map(supported) {
        return found;
    }
    let mut ranged: Vec<(f32, &'static str)> = accept_language
        .unwrap_or("")
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let locale = supported(it.next()?)?;
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            (q > 0.0).then_some((q, locale))
        })
        .collect();
    // Stable sort keeps header order among equal weights.
    ranged.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranged.first().map(|r| r.1).unwrap_or(DEFAULT_LOCALE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogues_have_the_same_keys() {
        let c = Catalogues::load(None).unwrap();
        assert_eq!(c.keys("en"), c.keys("fr"));
        assert!(c.keys("en").len() > 20);
    }

    #[test]
    fn plural_rules() {
        for (locale, n, want) in [
            ("en", 0, "other"),
            ("en", 1, "one"),
            ("en", 2, "other"),
            ("en", 21, "other"),
            ("fr", 0, "one"),
            ("fr", 1, "one"),
            ("fr", 2, "other"),
            ("fr", 1_000_000, "other"),
        ] {
            assert_eq!(plural_category(locale, n), want, "{locale} {n}");
        }
        let c = Catalogues::load(None).unwrap();
        assert_eq!(c.plural("en", "limited.retry_in", 1).unwrap(), "Try again in 1 minute.");
        assert_eq!(c.plural("en", "limited.retry_in", 0).unwrap(), "Try again in 0 minutes.");
        assert_eq!(c.plural("fr", "limited.retry_in", 0).unwrap(), "Réessayez dans 0 minute.");
        assert_eq!(c.plural("fr", "limited.retry_in", 5).unwrap(), "Réessayez dans 5 minutes.");
    }

    /// The typography rules of both catalogues: plurals instead of "(s)", every plural with
    /// both forms, and French high punctuation after a narrow no-break space (U+202F).
    #[test]
    fn catalogue_typography() {
        let c = Catalogues::load(None).unwrap();
        for locale in LOCALES {
            for key in c.keys(locale) {
                let text = c.text(locale, key).unwrap();
                assert!(!text.contains("(s)") && !text.contains("(e)"), "{locale} {key}: use a plural key");
                if let Some(stem) = key.strip_suffix(".one") {
                    assert!(c.text(locale, &format!("{stem}.other")).is_some(), "{locale} {stem}.other");
                }
                if let Some(stem) = key.strip_suffix(".other") {
                    assert!(c.text(locale, &format!("{stem}.one")).is_some(), "{locale} {stem}.one");
                }
                if *locale == "fr" {
                    let chars: Vec<char> = text.chars().collect();
                    for (i, ch) in chars.iter().enumerate() {
                        if matches!(ch, '?' | '!' | ':' | ';') {
                            assert!(i > 0 && chars[i - 1] == '\u{202F}', "fr {key}: U+202F before {ch:?} in {text:?}");
                        }
                    }
                    assert!(!text.contains(" ?") && !text.contains('\u{A0}'), "fr {key}");
                } else {
                    assert!(!text.contains('\u{202F}'), "{locale} {key}: French spacing in English");
                }
            }
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("de fr-CA en"), Some("en")), "fr");
        assert_eq!(negotiate(None, Some("de;q=1, fr-FR;q=0.8, en;q=0.5")), "fr");
        assert_eq!(negotiate(None, Some("fr;q=0, en")), "en");
        assert_eq!(negotiate(Some("de"), None), "en");
    }
}
