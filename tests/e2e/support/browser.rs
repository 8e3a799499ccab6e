//! A cookie-keeping HTTP client that fills the hosted forms like a person would.

use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode, header};

pub struct Browser {
    http: Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    base: String,
}

#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of a hidden or prefilled input, as the page renders it.
    pub fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\"");
        let at = self.body.find(&needle)?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.find("value=\"")? + 7;
        let end = tag[v..].find('"')?;
        Some(html_unescape(&tag[v..v + end]))
    }

    /// Every hidden input of the page's first form, as a browser would submit them.
    pub fn hidden_inputs(&self) -> Vec<(String, String)> {
        let start = self.body.find("<form").unwrap_or(0);
        let end = self.body[start..].find("</form>").map(|e| start + e).unwrap_or(self.body.len());
        let form = &self.body[start..end];
        let mut out = Vec::new();
        for tag in form.split('<').filter(|t| t.starts_with("input type=\"hidden\"")) {
            let attr = |a: &str| {
                let at = tag.find(&format!("{a}=\""))? + a.len() + 2;
                let end = tag[at..].find('"')?;
                Some(html_unescape(&tag[at..at + end]))
            };
            if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
                out.push((n, v));
            }
        }
        out
    }

    pub fn form_action(&self) -> String {
        let at = self.body.find("<form method=\"post\" action=\"").expect("a form") + 28;
        let end = self.body[at..].find('"').unwrap();
        html_unescape(&self.body[at..at + end])
    }

    /// The targets of the page's link buttons (`<a class="button…" href>`), in page order.
    pub fn button_links(&self) -> Vec<String> {
        self.body
            .split("<a class=\"button")
            .skip(1)
            .filter_map(|rest| {
                let at = rest.find("href=\"")? + 6;
                let end = rest[at..].find('"')?;
                Some(html_unescape(&rest[at..at + end]))
            })
            .collect()
    }

    pub fn location_param(&self, name: &str) -> Option<String> {
        let loc = self.location.as_ref()?;
        let url = reqwest::Url::parse(loc).ok()?;
        url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    pub fn assert_redirect_to(&self, prefix: &str) -> &str {
        assert!(
            self.status.is_redirection(),
            "expected a redirect, got {} {}",
            self.status,
            self.body
        );
        let loc = self.location.as_deref().unwrap();
        assert!(loc.starts_with(prefix), "redirect to {loc}, expected {prefix}…");
        loc
    }
}

pub fn html_unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .build()
            .unwrap();
        Browser {
            http,
            jar,
            base: base.to_owned(),
        }
    }

    /// The same browser (its cookies) addressing another server: relative URLs and `follow`
    /// go to `base` (a second clef on loopback, as an upstream provider).
    pub fn on(&self, base: &str) -> Browser {
        Browser {
            http: self.http.clone(),
            jar: self.jar.clone(),
            base: base.to_owned(),
        }
    }

    /// The value of a cookie this browser holds for `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let header = self.jar.cookies(&url.parse().unwrap())?;
        let prefix = format!("{name}=");
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix(prefix.as_str()).map(str::to_owned))
    }

    /// Stores a cookie for this server as if it had set it (`name=value; Path=/`).
    pub fn add_cookie(&self, set_cookie: &str) {
        self.jar.add_cookie_str(set_cookie, &self.base.parse().unwrap());
    }

    fn abs(&self, url: &str) -> String {
        if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        }
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.text().await.unwrap();
        Page {
            status,
            location,
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        Self::page(self.http.get(self.abs(url)).send().await.unwrap()).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Page {
        let mut r = self.http.get(self.abs(url));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::page(r.send().await.unwrap()).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        Self::page(self.http.post(self.abs(url)).form(form).send().await.unwrap()).await
    }

    pub async fn post_with(&self, url: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut r = self.http.post(self.abs(url)).form(form);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::page(r.send().await.unwrap()).await
    }

    /// Follows redirects on this server only; stops at the first page or foreign redirect.
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            match &page.location {
                Some(loc) if page.status.is_redirection() && (loc.starts_with('/') || loc.starts_with(&self.base)) => {
                    page = self.get(loc).await;
                }
                _ => return page,
            }
        }
        panic!("redirect loop");
    }

    /// From a confirmation page, presses its main button and follows our redirects.
    pub async fn press_continue(&self, page: &Page) -> Page {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let next = page.button_links().into_iter().next().expect("a continue button");
        self.follow(self.get(&next).await).await
    }

    /// Submits the page's form with its hidden fields plus `fields`.
    pub async fn submit(&self, page: &Page, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(String, String)> = page.hidden_inputs();
        for (k, v) in fields {
            form.push(((*k).to_owned(), (*v).to_owned()));
        }
        Self::page(self.http.post(self.abs(&page.form_action())).form(&form).send().await.unwrap()).await
    }

    /// From an authorization URL to the client's redirect: logs in (when asked) and allows
    /// consent (when asked). Returns the final redirect to the client.
    pub async fn authorize(&self, url: &str, email: &str, password: &str) -> Page {
        self.authorize_with(url, email, password, None).await
    }

    /// As `authorize`, answering the authenticator-code step with `totp` when it is asked.
    pub async fn authorize_with(&self, url: &str, email: &str, password: &str, totp: Option<&str>) -> Page {
        let mut page = self.follow(self.get(url).await).await;
        for _ in 0..4 {
            if page.status.is_redirection() {
                return page;
            }
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            page = if page.body.contains("autocomplete=\"current-password\"") {
                self.submit(&page, &[("email", email), ("password", password)]).await
            } else if let Some(code) = totp.filter(|_| page.body.contains("id=\"login-totp\"")) {
                self.submit(&page, &[("code", code)]).await
            } else if page.body.contains("value=\"allow\"") {
                self.submit(&page, &[("decision", "allow")]).await
            } else {
                panic!("unexpected page: {}", page.body);
            };
            page = self.follow(page).await;
        }
        page
    }
}
