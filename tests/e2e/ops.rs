//! Operations (issue 11): the real `clef` binary as a process, for what only a process shows:
//! /metrics on its own listener, JSON log lines, X-Request-Id, `clef audit`, the retention
//! purge, graceful shutdown on SIGTERM, and `clef backup` of a live SQLite database.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{self, Backend, Browser};

const UA: &str = "ops-test/1.0 (X11; Linux x86_64) Firefox/140.0";
const EMAIL: &str = "ana@example.test";
const PASSWORD: &str = "correct horse battery staple 42";

/// The wait between two looks at a real process (its port, its exit), always inside a
/// bounded loop: a process has no test clock to advance.
#[allow(clippy::disallowed_methods)]
fn poll_pause(d: Duration) {
    std::thread::sleep(d);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A database (and keys folder) for processes to share.
struct Site {
    dir: tempfile::TempDir,
    database_url: String,
    pg_database: Option<String>,
}

impl Site {
    async fn new(backend: Backend) -> Site {
        let dir = tempfile::tempdir().unwrap();
        support::copy_keys(&dir.path().join("keys"));
        let (pg_database, database_url) = match backend {
            Backend::Sqlite => (None, format!("sqlite://{}", dir.path().join("clef.db").display())),
            Backend::Postgres => {
                let (name, url) = support::create_pg_database().await;
                (Some(name), url)
            }
        };
        Site {
            dir,
            database_url,
            pg_database,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clef"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("CLEF_DATABASE_URL", &self.database_url)
            .env("CLEF_KEYS_DIR", self.dir.path().join("keys"))
            .env("CLEF_OUTBOX_DIR", self.dir.path().join("outbox"))
            .env("CLEF_LOG", "warn,sqlx::query=error");
        cmd
    }

    /// Runs a command to its end; panics with its stderr when it fails.
    fn run(&self, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> String {
        let mut cmd = self.command(args);
        cmd.envs(envs.iter().copied())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "clef {args:?} failed: {stderr}");
        stdout.into_owned()
    }

    fn create_user(&self) {
        self.run(
            &["users", "create", "--email", EMAIL, "--verified", "--password-stdin"],
            &[],
            Some(&format!("{PASSWORD}\n")),
        );
    }

    async fn finish(self) {
        if let Some(name) = &self.pg_database {
            support::drop_pg_database(name).await;
        }
    }
}

/// A running `clef serve`, its standard error collected line by line.
struct Server {
    child: Child,
    base: String,
    port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(site: &Site, envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = site.command(&["serve"]);
        cmd.env("CLEF_ISSUER", &base)
            .env("CLEF_LISTEN", format!("127.0.0.1:{port}"))
            .env("CLEF_LOG", "info,sqlx::query=error")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let server = Server { child, base, port, stderr };
        server.wait_ready();
        server
    }

    /// Bounded: 30 s for migrations and start-up on a loaded host.
    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            poll_pause(Duration::from_millis(50));
        }
        panic!("clef did not start: {}", self.stderr_text());
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn terminate(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.pid()]).status().unwrap().success();
        assert!(ok);
    }

    /// Waits for the exit, bounded; its status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "clef still running after {within:?}: {}",
                self.stderr_text()
            );
            poll_pause(Duration::from_millis(20));
        }
    }

    fn stop(mut self) -> String {
        self.terminate();
        let status = self.wait_exit(Duration::from_secs(20));
        assert!(status.success(), "{status}: {}", self.stderr_text());
        self.stderr_text()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One login form post, as a browser with a user agent sends it.
async fn post_login(b: &Browser, password: &str, headers: &[(&str, &str)]) -> support::browser::Page {
    let page = b.get("/login").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut form: Vec<(String, String)> = page.hidden_inputs();
    form.push(("email".into(), EMAIL.into()));
    form.push(("password".into(), password.into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut h = vec![("user-agent", UA)];
    h.extend_from_slice(headers);
    b.post_with(&page.form_action(), &form, &h).await
}

/// The value of one sample line of a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn get_text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn metrics_and_audit(backend: Backend) {
    let site = Site::new(backend).await;
    site.create_user();
    let mport = free_port();
    let server = Server::start(&site, &[("CLEF_METRICS_LISTEN", &format!("127.0.0.1:{mport}"))]);
    let metrics_url = format!("http://127.0.0.1:{mport}/metrics");

    // Only the separate listener serves the figures.
    let (status, _) = get_text(&format!("{}/metrics", server.base)).await;
    assert_eq!(status, 404);
    let (status, before) = get_text(&metrics_url).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(sample(&before, "clef_build_info{version=\"0.1.0\"}"), Some(1.0), "{before}");

    let b = Browser::new(&server.base);
    let wrong = post_login(&b, "not the password", &[]).await;
    assert_eq!(wrong.status, 200, "{}", wrong.body);
    let right = post_login(&b, PASSWORD, &[]).await;
    assert!(right.status.is_redirection(), "{}: {}", right.status, right.body);
    // No trusted proxy here: an incoming request id is not believed, one is made.
    let page = b.get_with("/healthz", &[("x-request-id", "from-the-client")]).await;
    let id = page.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert_ne!(id, "from-the-client");

    let (_, after) = get_text(&metrics_url).await;
    let logins =
        |text: &str, outcome: &str| sample(text, &format!("clef_logins_total{{method=\"password\",outcome=\"{outcome}\"}}")).unwrap_or(0.0);
    assert_eq!(logins(&after, "failure") - logins(&before, "failure"), 1.0, "{after}");
    assert_eq!(logins(&after, "success") - logins(&before, "success"), 1.0, "{after}");
    assert_eq!(sample(&after, "clef_logins_completed_total"), Some(1.0), "{after}");
    // Latency per route template, never per raw path.
    assert!(
        after.contains("clef_http_request_duration_seconds_bucket{route=\"/login\",method=\"POST\""),
        "{after}"
    );
    assert!(
        after.contains("clef_http_requests_total{route=\"/login\",method=\"GET\",status=\"200\"}"),
        "{after}"
    );
    assert!(sample(&after, "clef_db_pool_max_connections").is_some_and(|n| n >= 1.0), "{after}");
    // The periodic user gauges run once at start, in the background (the user was created
    // before): bounded wait for the first run.
    let mut gauges = after.clone();
    let started = Instant::now();
    while sample(&gauges, "clef_users{state=\"total\"}").is_none() && started.elapsed() < Duration::from_secs(10) {
        poll_pause(Duration::from_millis(50));
        gauges = get_text(&metrics_url).await.1;
    }
    assert_eq!(
        sample(&gauges, "clef_users{state=\"total\"}"),
        Some(1.0),
        "{gauges}\n{}",
        server.stderr_text()
    );
    assert_eq!(sample(&gauges, "clef_users{state=\"verified\"}"), Some(1.0), "{gauges}");
    assert_eq!(sample(&gauges, "clef_users{state=\"pending_verification\"}"), Some(0.0), "{gauges}");

    // The audit log: the failure, then the login, each with the address and the user agent.
    let out = site.run(&["audit", "--user", EMAIL, "--since", "1h", "--json"], &[], None);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    let failed = kinds.iter().position(|k| *k == "login_failed").unwrap_or_else(|| panic!("{out}"));
    let login = kinds.iter().position(|k| *k == "login").unwrap_or_else(|| panic!("{out}"));
    assert!(failed < login, "{out}");
    for r in [&rows[failed], &rows[login]] {
        assert_eq!(r["ip"], "127.0.0.1", "{out}");
        assert_eq!(r["user_agent"], UA, "{out}");
        assert_eq!(r["email"], EMAIL, "{out}");
        assert!(r["time"].as_str().unwrap().ends_with('Z'), "{out}");
    }
    assert_eq!(rows[failed]["detail"], "password");
    // Another address has none of these; a future --since has nothing.
    let other = site.run(&["audit", "--user", "bob@example.test", "--json"], &[], None);
    assert!(!other.contains("login"), "{other}");
    let later = site.run(&["audit", "--since", "2999-01-01T00:00:00Z"], &[], None);
    assert!(later.trim().is_empty(), "{later}");
    // The operator's own actions are kept too.
    site.run(
        &["clients", "create", "--name", "shop", "--redirect-uri", "https://shop.example/cb"],
        &[],
        None,
    );
    let text = site.run(&["audit"], &[], None);
    assert!(text.contains("\tuser_created\t") && text.contains("\tclient_created\t"), "{text}");
    // The account goes; its events stay, still under its address, until retention.
    site.run(&["users", "delete", EMAIL], &[], None);
    let kept = site.run(&["audit", "--user", EMAIL, "--json"], &[], None);
    for kind in ["\"login\"", "\"login_failed\"", "\"user_deleted\""] {
        assert!(kept.contains(kind), "{kind}: {kept}");
    }

    server.stop();
    site.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_audit_sqlite() {
    metrics_and_audit(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_audit_postgres() {
    metrics_and_audit(Backend::Postgres).await;
}

/// CLEF_LOG_FORMAT=json: every line parses, and a line logged inside a request carries the
/// request id a trusted proxy sent, which the response echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id() {
    let site = Site::new(Backend::Sqlite).await;
    site.create_user();
    let server = Server::start(&site, &[("CLEF_LOG_FORMAT", "json"), ("CLEF_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let b = Browser::new(&server.base);
    let page = post_login(&b, "not the password", &[("x-request-id", "edge-7f3a.1_b")]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers.get("x-request-id").unwrap(), "edge-7f3a.1_b");
    // Even from a trusted proxy, an id that could forge a log line is replaced.
    let page = b.get_with("/healthz", &[("x-request-id", "a b\"c")]).await;
    assert_ne!(page.headers.get("x-request-id").unwrap(), "a b\"c");
    let page = b.get_with("/healthz", &[("x-request-id", &"x".repeat(65))]).await;
    assert_ne!(page.headers.get("x-request-id").unwrap().len(), 65);

    let text = server.stop();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "clef is serving"), "{text}");
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "login factor failed")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(failed["level"], "INFO");
    let spans = failed["spans"].as_array().unwrap();
    assert!(
        spans.iter().any(|s| s["request_id"] == "edge-7f3a.1_b" && s["route"] == "/login"),
        "{failed}"
    );
    // Nothing secret: neither the password typed nor the CSRF value.
    assert!(!text.contains("not the password"), "{text}");
    site.finish().await;
}

/// SIGTERM: new connections are refused at once, a request in flight still gets its answer,
/// and the process exits 0 within CLEF_SHUTDOWN_GRACE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight() {
    let site = Site::new(Backend::Sqlite).await;
    let mut server = Server::start(&site, &[("CLEF_SHUTDOWN_GRACE", "5")]);
    // A request whose body is still arriving when the signal comes.
    let body = "grant_type=client_credentials&client_id=nobody&client_secret=x";
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        slow,
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    slow.flush().unwrap();
    poll_pause(Duration::from_millis(200));
    let signalled = Instant::now();
    server.terminate();
    // Bounded wait until the listener is closed.
    let refused = loop {
        match TcpStream::connect(("127.0.0.1", server.port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break true,
            _ if signalled.elapsed() > Duration::from_secs(3) => break false,
            _ => poll_pause(Duration::from_millis(20)),
        }
    };
    assert!(refused, "still accepting after SIGTERM: {}", server.stderr_text());
    slow.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer:?}");
    assert!(answer.contains("\"error\""), "{answer}");
    let status = server.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status}: {}", server.stderr_text());
    assert!(signalled.elapsed() < Duration::from_secs(6), "{:?}", signalled.elapsed());
    assert!(server.stderr_text().contains("clef stopped"), "{}", server.stderr_text());
    site.finish().await;
}

/// A request that never finishes is cut at the grace period; the exit is still clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_bounded_by_the_grace_period() {
    let site = Site::new(Backend::Sqlite).await;
    let mut server = Server::start(&site, &[("CLEF_SHUTDOWN_GRACE", "2"), ("CLEF_BODY_TIMEOUT", "60")]);
    let mut stuck = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stuck
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant",
        )
        .unwrap();
    poll_pause(Duration::from_millis(200));
    let signalled = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", server.stderr_text());
    let took = signalled.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "{took:?}");
    assert!(server.stderr_text().contains("grace period over"), "{}", server.stderr_text());
    site.finish().await;
}

/// Old security events go at the retention purge (here `clef cleanup`); recent ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_retention_purges_old_events() {
    let site = Site::new(Backend::Sqlite).await;
    site.create_user();
    let db = clef::store::Db::connect(&site.database_url).await.unwrap();
    let now = clef::clock::Clock::default().now();
    for (age_days, ip) in [(40, "192.0.2.40"), (10, "192.0.2.10")] {
        let e = clef::store::AuditEvent {
            email: Some(EMAIL),
            ip: Some(ip),
            detail: Some("password"),
            ..Default::default()
        };
        db.audit_record(clef::store::EventKind::LoginFailed, &e, now - age_days * 86_400)
            .await
            .unwrap();
    }
    db.close().await;
    let all = site.run(&["audit", "--json"], &[], None);
    assert!(all.contains("192.0.2.40") && all.contains("192.0.2.10"), "{all}");
    site.run(&["cleanup"], &[("CLEF_AUDIT_RETENTION", "30d")], None);
    let left = site.run(&["audit", "--json"], &[], None);
    assert!(!left.contains("192.0.2.40"), "{left}");
    assert!(left.contains("192.0.2.10"), "{left}");
    // The default, 90 days, keeps the rest.
    site.run(&["cleanup"], &[], None);
    assert!(site.run(&["audit"], &[], None).contains("192.0.2.10"));
    site.finish().await;
}

fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("pragma integrity_check", [], |r| r.get::<_, String>(0)).unwrap()
}

/// `clef backup` while the server is running and writing: the copy is consistent, private,
/// and clef opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_live_database() {
    let site = Site::new(Backend::Sqlite).await;
    site.create_user();
    let server = Server::start(&site, &[]);
    // Writes while the copy is made: every failed login writes limits and an audit row.
    let base = server.base.clone();
    let writer = tokio::spawn(async move {
        let b = Browser::new(&base);
        for _ in 0..6 {
            let _ = post_login(&b, "wrong", &[]).await;
        }
    });
    let copy: PathBuf = site.dir.path().join("copy.db");
    let copy_arg = copy.display().to_string();
    let out = site.run(&["backup", &copy_arg], &[], None);
    assert!(out.contains("integrity ok"), "{out}");
    writer.await.unwrap();
    assert_eq!(integrity(&copy), "ok");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
    // A backup never overwrites a file already there.
    let mut cmd = site.command(&["backup", &copy_arg]);
    let again = cmd.output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot create"), "{again:?}");
    // Restoring is pointing clef at the copy.
    let users = site.run(&["users", "list"], &[("CLEF_DATABASE_URL", &format!("sqlite://{copy_arg}"))], None);
    assert!(users.contains(EMAIL), "{users}");
    server.stop();
    site.finish().await;
}

/// `clef backup` on PostgreSQL says what to use instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_refuses_postgres() {
    let site = Site::new(Backend::Postgres).await;
    let out = site
        .command(&["backup", &site.dir.path().join("x.db").display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
    site.finish().await;
}

/// In process, with CLEF_METRICS=public: /metrics on the public listener counts tokens by
/// grant. The recorder is the test process's one, shared with other tests, so counts only grow.
async fn tokens_counted_by_grant(backend: Backend) {
    use crate::support::rp::refresh_token;
    let h = support::TestServer::start_with(backend, |raw| raw.metrics = Some("public".into())).await;
    h.user(EMAIL, PASSWORD).await;
    let rp = h.first_party().await;
    let b = h.browser();
    let start = rp.start(&["email"]);
    let back = b.authorize(&start.url, EMAIL, PASSWORD).await;
    let code = back.location_param("code").unwrap();
    let tokens = rp.exchange(&code, start.verifier).await;
    rp.refresh(&refresh_token(&tokens).unwrap()).await.unwrap();
    let (status, text) = get_text(&h.url("/metrics")).await;
    assert_eq!(status, 200);
    for grant in ["authorization_code", "refresh_token"] {
        let n = sample(&text, &format!("clef_tokens_issued_total{{grant_type=\"{grant}\"}}")).unwrap_or(0.0);
        assert!(n >= 1.0, "{grant}: {text}");
    }
    assert!(
        text.contains("clef_http_requests_total{route=\"/token\",method=\"POST\",status=\"200\"}"),
        "{text}"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_counted_by_grant_sqlite() {
    tokens_counted_by_grant(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_counted_by_grant_postgres() {
    tokens_counted_by_grant(Backend::Postgres).await;
}

/// A mail waiting for its retry (the mail server was down) is sent at SIGTERM, without its
/// wait, before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_mail_waiting_for_a_retry() {
    let site = Site::new(Backend::Sqlite).await;
    site.create_user();
    let smtp_port = free_port();
    let mut server = Server::start(&site, &[("CLEF_SMTP_URL", &format!("smtp://127.0.0.1:{smtp_port}"))]);
    let b = Browser::new(&server.base);
    let page = b.get("/login").await;
    let mut form: Vec<(String, String)> = page.hidden_inputs();
    form.push(("email".into(), EMAIL.into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sent = b.post("/login/code", &form).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    // The first try fails (nothing listens yet); the retry waits 5 s.
    let started = Instant::now();
    while !server.stderr_text().contains("retrying in the background") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", server.stderr_text());
        poll_pause(Duration::from_millis(20));
    }
    let mailbox = support::smtp::Mailbox::start_on(&format!("127.0.0.1:{smtp_port}")).await;
    let signalled = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status}: {}", server.stderr_text());
    assert!(signalled.elapsed() < Duration::from_secs(4), "waited for the retry's delay");
    assert_eq!(mailbox.count(), 1, "{}", server.stderr_text());
    assert!(server.stderr_text().contains("mail sent on retry"));
    site.finish().await;
}
