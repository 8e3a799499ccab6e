//! Drives Debian's Chromium through chromedriver (WebDriver, via fantoccini) against the real
//! server. One chromedriver per test process, one fresh browser profile per session, at most
//! two sessions at once; every page a test passes through is saved as a PNG.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tempfile::TempDir;
use tokio::sync::{OnceCell, Semaphore};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Bounds every wait on the browser: a page that never comes is a failure, not a hang.
const WAIT: Duration = Duration::from_secs(15);

/// Two cores are shared with the rest of the suite: more browsers at once only thrash.
static SESSIONS: Semaphore = Semaphore::const_new(2);
static DRIVER: OnceCell<Driver> = OnceCell::const_new();

struct Driver {
    url: String,
    /// Held for the life of the process; the shell around chromedriver watches this
    /// process's id and ends chromedriver once it is gone.
    _watchdog: std::process::Child,
}

/// Starts chromedriver once for this test process, on a free loopback port, under a small
/// shell that ends it (and any browser it left) when this process is gone: statics are never
/// dropped, so `kill_on_drop` would not fire at exit.
async fn driver() -> &'static str {
    DRIVER
        .get_or_init(|| async {
            assert!(
                std::path::Path::new(CHROMEDRIVER).exists(),
                "{CHROMEDRIVER} is missing: apt-get install -y chromium chromium-driver (scripts/test does it)"
            );
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let script = format!(
                "{CHROMEDRIVER} --port={port} --allowed-ips=127.0.0.1 >/dev/null 2>&1 & d=$!; \
                 while kill -0 {pid} 2>/dev/null && kill -0 $d 2>/dev/null; do sleep 1; done; \
                 kill $d 2>/dev/null; sleep 1; kill -TERM 0",
                pid = std::process::id()
            );
            use std::os::unix::process::CommandExt;
            let mut watchdog = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .process_group(0)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start chromedriver");
            let url = format!("http://127.0.0.1:{port}");
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return Driver { url, _watchdog: watchdog };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The watchdog leads its own process group: end the whole group, then reap it.
            let _ = std::process::Command::new("kill")
                .arg("--")
                .arg(format!("-{}", watchdog.id()))
                .status();
            let _ = watchdog.wait();
            panic!("chromedriver did not listen on {url} within 10 s");
        })
        .await
        .url
        .as_str()
}

/// Where screenshots go: `<target dir>/screenshots/<test>/`.
fn screenshot_dir(test: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots").join(test)
}

/// The page a session is on, for the failure report.
#[derive(Default, Clone)]
struct Where {
    url: String,
    h1: String,
    alert: String,
    label: String,
}

/// A session as the runner sees it: to close it, and to say where it was.
struct Opened {
    name: String,
    client: Client,
    here: Arc<Mutex<Where>>,
}

struct Shared {
    dir: PathBuf,
    shots: AtomicUsize,
    sessions: Mutex<Vec<Opened>>,
}

/// Opens browser sessions for one test and remembers them, so the runner can close them and
/// report where each one was when the test failed.
#[derive(Clone)]
pub struct Browsers(Arc<Shared>);

/// Options of one browser profile.
#[derive(Default, Clone, Copy)]
pub struct Profile<'a> {
    /// The browser's language: the UI language and the Accept-Language it sends.
    pub lang: Option<&'a str>,
}

impl Browsers {
    pub async fn open(&self, name: &str) -> Session {
        self.open_with(name, Profile::default()).await
    }

    pub async fn open_with(&self, name: &str, profile: Profile<'_>) -> Session {
        let data_dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=800,900".into(),
            format!("--user-data-dir={}", data_dir.path().display()),
        ];
        let mut prefs = serde_json::Map::new();
        if let Some(lang) = profile.lang {
            args.push(format!("--lang={lang}"));
            args.push(format!("--accept-lang={lang}"));
            prefs.insert("intl.accept_languages".into(), lang.into());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": CHROMIUM, "args": args, "prefs": prefs }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(driver().await)
            .await
            .unwrap_or_else(|e| panic!("a Chromium session from chromedriver: {e}"));
        let here = Arc::new(Mutex::new(Where::default()));
        self.0.sessions.lock().unwrap().push(Opened {
            name: name.to_owned(),
            client: client.clone(),
            here: here.clone(),
        });
        Session {
            client,
            name: name.to_owned(),
            shared: self.0.clone(),
            here,
            _data_dir: data_dir,
        }
    }
}

/// Runs one browser test: takes a slot, gives the body a way to open sessions, then closes
/// every session whatever happened; on failure prints the page each session was on.
pub async fn run<F, Fut>(test: &'static str, body: F)
where
    F: FnOnce(Browsers) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _slot = SESSIONS.acquire().await.unwrap();
    let dir = screenshot_dir(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shared = Arc::new(Shared {
        dir,
        shots: AtomicUsize::new(0),
        sessions: Mutex::new(Vec::new()),
    });
    let outcome = tokio::spawn(body(Browsers(shared.clone()))).await;
    let sessions = std::mem::take(&mut *shared.sessions.lock().unwrap());
    for Opened { name, client, here } in sessions {
        if outcome.is_err() {
            let w = here.lock().unwrap().clone();
            eprintln!(
                "{test}: browser {name:?} was on page {:?}: {} (h1: {:?}, alert: {:?}); screenshots in {}",
                w.label,
                w.url,
                w.h1,
                w.alert,
                shared.dir.display()
            );
        }
        let _ = client.close().await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

pub struct Session {
    pub client: Client,
    name: String,
    shared: Arc<Shared>,
    here: Arc<Mutex<Where>>,
    _data_dir: TempDir,
}

impl Session {
    /// Records the page the browser is on and saves its screenshot as `NN-<label>.png`.
    pub async fn shot(&self, label: &str) {
        let url = self.url().await;
        let h1 = self.text_of("h1").await.unwrap_or_default();
        let alert = self.text_of("[role=\"alert\"]").await.unwrap_or_default();
        *self.here.lock().unwrap() = Where {
            url,
            h1,
            alert,
            label: label.to_owned(),
        };
        let n = self.shared.shots.fetch_add(1, Ordering::Relaxed) + 1;
        let file = if self.name == "main" {
            format!("{n:02}-{label}.png")
        } else {
            format!("{n:02}-{}-{label}.png", self.name)
        };
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shared.dir.join(file), png).unwrap();
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// Opens `url` and saves the page as `label`.
    pub async fn goto(&self, url: &str, label: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        self.shot(label).await;
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no {css} on {}: {e}", self.url().await),
        }
    }

    pub async fn has(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    pub async fn text_of(&self, css: &str) -> Option<String> {
        let e = self.client.find(Locator::Css(css)).await.ok()?;
        e.text().await.ok()
    }

    pub async fn attr(&self, css: &str, attr: &str) -> Option<String> {
        self.find(css).await.attr(attr).await.unwrap()
    }

    /// `<html lang>`: how the tests tell which language a page speaks.
    pub async fn lang(&self) -> String {
        self.attr("html", "lang").await.unwrap_or_default()
    }

    /// Types into the named inputs of the form matched by `form`, as a person would (clearing
    /// what the page prefilled), and presses its submit button (`button` narrows which).
    pub async fn fill_and_submit(&self, form: &str, fields: &[(&str, &str)], button: &str, label: &str) {
        for (name, value) in fields {
            let input = self.find(&format!("{form} [name=\"{name}\"]")).await;
            input.clear().await.unwrap();
            input.send_keys(value).await.unwrap();
        }
        self.mark_document().await;
        self.find(&format!("{form} {button}")).await.click().await.unwrap();
        self.wait_new_document().await;
        self.shot(label).await;
    }

    /// The confirmation page after a sign-up or a reset (`done` is its catalogue key, e.g.
    /// `done.signup`): checks its heading, then follows its Continue link.
    pub async fn confirm(&self, done: &str, label: &str) {
        let want = super::text("en", &format!("{done}.title"));
        assert_eq!(self.text_of("h1").await.as_deref(), Some(want.as_str()), "confirmation page {done}");
        self.mark_document().await;
        self.find("main a.button[href]").await.click().await.unwrap();
        self.wait_new_document().await;
        self.shot(label).await;
    }

    pub async fn submit(&self, form: &str, fields: &[(&str, &str)], label: &str) {
        self.fill_and_submit(form, fields, "button[type=submit]", label).await;
    }

    /// Waits, bounded, until the browser's URL satisfies `ok`; returns it.
    pub async fn wait_until(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if ok(&url) {
                return url;
            }
            assert!(tokio::time::Instant::now() < deadline, "the browser stayed on {url} for {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits, bounded, until the current document has finished loading.
    pub async fn wait_loaded(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = self.client.execute("return document.readyState", vec![]).await;
            if matches!(state, Ok(serde_json::Value::String(ref s)) if s == "complete") {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the page never finished loading");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Tags the current document, so `wait_new_document` can tell when it has been replaced
    /// (a form may post back to its own URL, so the URL alone does not say).
    pub async fn mark_document(&self) {
        self.client.execute("window.__clefOld = true", vec![]).await.unwrap();
    }

    /// Waits, bounded, until a new document has replaced the tagged one and has loaded.
    pub async fn wait_new_document(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = self
                .client
                .execute(
                    "return window.__clefOld === undefined && document.readyState === 'complete'",
                    vec![],
                )
                .await;
            if matches!(state, Ok(serde_json::Value::Bool(true))) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no new page after {WAIT:?} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
