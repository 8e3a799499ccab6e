//! The relying party's own web server, on another loopback port: it receives the browser at
//! the redirect URI (by GET, or by POST for `response_mode=form_post`) and records what came.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Html;

#[derive(Clone, Debug)]
pub struct Hit {
    pub method: Method,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub origin: Option<String>,
}

impl Hit {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub struct ClientApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl ClientApp {
    /// Answers every request with a small page whose `h1` has the id `client`.
    pub async fn start() -> ClientApp {
        Self::serving("<h1 id=\"client\">Client app</h1>".to_owned()).await
    }

    /// Answers every request with `body` inside a minimal HTML document.
    pub async fn serving(body: String) -> ClientApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let store = hits.clone();
        let page = Arc::new(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>client</title></head><body>{body}</body></html>"
        ));
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            let page = page.clone();
            async move {
                if uri.path() != "/favicon.ico" {
                    let mut params: Vec<(String, String)> =
                        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
                    if method == Method::POST {
                        params.extend(form_urlencoded::parse(&body).into_owned());
                    }
                    store.lock().unwrap().push(Hit {
                        method,
                        path: uri.path().to_owned(),
                        params,
                        origin: headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned),
                    });
                }
                Html(page.as_str().to_owned())
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ClientApp { base, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The one request that reached `path`.
    pub fn only_hit(&self, path: &str) -> Hit {
        let hits: Vec<Hit> = self.hits().into_iter().filter(|h| h.path == path).collect();
        assert_eq!(hits.len(), 1, "exactly one request to the client at {path}: {hits:?}");
        hits.into_iter().next().unwrap()
    }
}
