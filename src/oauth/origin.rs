//! Web origins (RFC 6454) for CORS: the serialised `scheme://host[:port]` browsers send.

use url::Url;

/// The origin of an absolute http(s) URL: lower-case host, default port dropped (RFC 6454
/// §6.2). `None` for other schemes (native apps' private schemes have no web origin).
pub fn of_url(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

/// An `Origin` request header, or an operator's `--allowed-origin`: an origin and nothing
/// else (no path, query, fragment or credentials). `null` and opaque origins give `None`.
pub fn parse(value: &str) -> Option<String> {
    let url = Url::parse(value.trim()).ok()?;
    let bare =
        url.path() == "/" && url.query().is_none() && url.fragment().is_none() && url.username().is_empty() && url.password().is_none();
    // `Url` adds the "/" path itself; a value that spelled out more was not an origin.
    let spelled_path = value.trim().trim_end_matches('/').matches('/').count() > 2;
    if !bare || spelled_path {
        return None;
    }
    of_url(value.trim())
}

/// Checks an origin an operator registers with the same rule as redirect URIs: https
/// anywhere, plain http only on loopback (RFC 9700 §4.1.3 spirit: no cleartext hosts).
pub fn check_registrable(value: &str) -> Result<String, String> {
    let origin = parse(value).ok_or_else(|| format!("{value:?} is not an origin such as https://app.example"))?;
    let url = Url::parse(&origin).map_err(|e| e.to_string())?;
    match (url.scheme(), url.host_str()) {
        ("https", _) | ("http", Some("localhost" | "127.0.0.1" | "[::1]")) => Ok(origin),
        _ => Err(format!("{value:?}: plain http is only allowed for localhost, 127.0.0.1 and [::1]")),
    }
}

/// The origins a client's browser code may call from: its redirect URIs' origins, then the
/// operator's extra ones, without repeats.
pub fn for_client(redirect_uris: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in redirect_uris
        .iter()
        .filter_map(|u| of_url(u))
        .chain(extra.iter().filter_map(|e| parse(e)))
    {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        for (given, want) in [
            ("https://App.Example", Some("https://app.example")),
            ("https://app.example:443", Some("https://app.example")),
            ("http://127.0.0.1:80", Some("http://127.0.0.1")),
            ("http://127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("https://app.example/", Some("https://app.example")),
            ("https://app.example:8443", Some("https://app.example:8443")),
            ("null", None),
            ("https://app.example/cb", None),
            ("https://app.example?x", None),
            ("https://u@app.example", None),
            ("com.example.app:/cb", None),
            ("file:///etc", None),
            ("", None),
        ] {
            assert_eq!(parse(given).as_deref(), want, "{given}");
        }
    }

    #[test]
    fn redirect_uris_give_their_origin() {
        assert_eq!(of_url("https://App.example:443/cb?x=1").as_deref(), Some("https://app.example"));
        assert_eq!(of_url("com.example.app:/cb"), None);
        let got = for_client(
            &[
                "https://a.example/cb".into(),
                "https://a.example/other".into(),
                "com.x.y:/cb".into(),
            ],
            &["https://b.example".into()],
        );
        assert_eq!(got, ["https://a.example", "https://b.example"]);
    }

    #[test]
    fn registrable_origins() {
        assert_eq!(check_registrable("https://SPA.example/").unwrap(), "https://spa.example");
        assert_eq!(check_registrable("http://localhost:5173").unwrap(), "http://localhost:5173");
        assert_eq!(check_registrable("http://127.0.0.1").unwrap(), "http://127.0.0.1");
        assert!(check_registrable("http://spa.example").is_err());
        assert!(check_registrable("https://spa.example/app").is_err());
        assert!(check_registrable("*").is_err());
    }
}
