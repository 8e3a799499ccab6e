//! Several instances on one PostgreSQL database (issue 11): two `clef serve` processes (the
//! real binary, separate OS processes) on loopback ports behind nginx (round robin), sharing
//! one database and one keys folder. Any instance serves any request: a code issued by one is
//! redeemed on the other, refresh families, limits, lockouts and sessions are the database's,
//! and a key rotation reaches both within `CLEF_KEYS_RELOAD_INTERVAL`. A second test cuts the
//! database away (a TCP forwarder the test controls) and times the recovery.
//!
//! PostgreSQL only: SQLite is the single-instance backend.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clef::admin::{ClientSpec, UserSpec};
use openidconnect::core::CoreTokenResponse;
use openidconnect::{OAuth2TokenResponse, TokenResponse};

use crate::support::rp::Rp;
use crate::support::{Backend, Browser, TestServer, create_pg_database, drop_pg_database};

const PW: &str = "correct horse battery";
/// Short, so the rotation test waits seconds; the default is 10 s.
const RELOAD_SECS: u64 = 2;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `clef serve` process; killed on drop. Its log is printed if the test fails.
struct Instance {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Instance {
    fn spawn(name: &str, dir: &Path, issuer: &str, database_url: &str, keys_dir: &Path) -> Instance {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_clef"))
            .arg("serve")
            .current_dir(dir)
            .env("CLEF_ISSUER", issuer)
            .env("CLEF_LISTEN", format!("127.0.0.1:{port}"))
            .env("CLEF_DATABASE_URL", database_url)
            .env("CLEF_KEYS_DIR", keys_dir)
            .env("CLEF_OUTBOX_DIR", dir.join(format!("outbox-{name}")))
            .env("CLEF_TRUSTED_PROXIES", "127.0.0.1")
            .env("CLEF_KEYS_RELOAD_INTERVAL", RELOAD_SECS.to_string())
            .env("CLEF_DB_POOL_SIZE", "4")
            // A replay below must count as theft at once; the refresh grace has its own
            // cross-instance tests (tests/e2e/grants.rs).
            .env("CLEF_REFRESH_GRACE", "0")
            .env("CLEF_MAX_CONCURRENT_HASHES", "2")
            .env("CLEF_LOG", "info,sqlx::query=error")
            .env_remove("CLEF_SECRET_KEY")
            .env_remove("CLEF_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Instance {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Waits (bounded) until `/readyz` answers 200.
    async fn ready(&mut self) {
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("clef exited ({status}): {}", self.log_text());
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("clef at {} never became ready: {}", self.base, self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.base, self.log_text());
        }
    }
}

/// nginx in the foreground on `port`, round robin over `upstreams`; killed on drop.
struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(port: u16, upstreams: &[&str]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {};\n", u.trim_start_matches("http://")))
            .collect();
        // No `proxy_next_upstream` retries for POSTs (nginx's default): a retried token
        // request would hide the instance that answered.
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             upstream clef {{\n{servers}  }}\n  \
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://clef;\n      \
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
             proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header Host $http_host;\n    }}\n  }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("early.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/test installs nginx-light)");
        for _ in 0..100 {
            if let Some(status) = child.try_wait().unwrap() {
                let early = std::fs::read_to_string(dir.path().join("early.log")).unwrap_or_default();
                panic!("nginx exited ({status}): {early}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Nginx { child, _dir: dir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!("nginx did not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two instances, nginx in front, and a connection of our own to the same database.
struct Cluster {
    a: Instance,
    b: Instance,
    nginx: Option<Nginx>,
    issuer: String,
    db: clef::store::Db,
    dir: tempfile::TempDir,
    keys_dir: PathBuf,
    database_url: String,
    pg_name: String,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let (pg_name, database_url) = create_pg_database().await;
        // nginx's port first: it is the issuer both instances are started with.
        for attempt in 0..5 {
            let port = free_port();
            let issuer = format!("http://127.0.0.1:{port}");
            // Both at once on an empty database and an empty keys folder: the migration's
            // advisory lock and the folder lock make them agree on one schema and one key set.
            let mut a = Instance::spawn("a", dir.path(), &issuer, &database_url, &keys_dir);
            let mut b = Instance::spawn("b", dir.path(), &issuer, &database_url, &keys_dir);
            a.ready().await;
            b.ready().await;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                // Someone took the port meanwhile; try another (bounded).
                eprintln!("port {port} taken (attempt {attempt})");
                continue;
            }
            let nginx = Nginx::start(port, &[&a.base, &b.base]).await;
            let db = clef::store::Db::connect(&database_url).await.unwrap();
            return Cluster {
                a,
                b,
                nginx: Some(nginx),
                issuer,
                db,
                dir,
                keys_dir,
                database_url,
                pg_name,
            };
        }
        panic!("no free port for nginx");
    }

    async fn finish(mut self) {
        self.nginx.take();
        self.db.close().await;
        let name = self.pg_name.clone();
        drop(self);
        drop_pg_database(&name).await;
    }

    async fn user(&self, email: &str) {
        let hasher = clef::auth::password::Hasher::new(1);
        let spec = UserSpec {
            email: email.into(),
            password: Some(PW.into()),
            name: Some("Ana Test".into()),
            verified: true,
            ..UserSpec::default()
        };
        clef::admin::create_user(&self.db, &hasher, &spec, now()).await.unwrap();
    }

    /// A first-party confidential client (no consent page) and its relying party, which
    /// discovers through nginx as any app would.
    async fn rp(&self) -> Rp {
        let created = clef::admin::create_client(
            &self.db,
            &ClientSpec {
                name: "app".into(),
                redirect_uris: vec!["http://127.0.0.1/app/cb".into()],
                post_logout_redirect_uris: vec!["http://127.0.0.1/app/bye".into()],
                skip_consent: true,
                ..ClientSpec::default()
            },
            now(),
        )
        .await
        .unwrap();
        Rp::discover(&self.issuer, &created, "http://127.0.0.1/app/cb").await
    }

    async fn jwks(&self, base: &str) -> String {
        reqwest::get(format!("{base}{}", clef::paths::JWKS))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn now() -> i64 {
    clef::clock::Clock::default().now()
}

/// The same authorization URL, sent to one instance directly instead of through nginx.
fn at(url: &str, issuer: &str, base: &str) -> String {
    assert!(url.starts_with(issuer), "{url}");
    format!("{base}{}", &url[issuer.len()..])
}

/// A token request sent to one instance directly, with the client's Basic credentials.
async fn token_at(rp: &Rp, base: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let (status, _, body) = rp
        .token_raw(base, form, Some((&rp.client_id, rp.client_secret.as_deref().unwrap())))
        .await;
    (status, body)
}

fn parse_tokens(body: &serde_json::Value) -> CoreTokenResponse {
    serde_json::from_value(body.clone()).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    In,
    Wrong,
    AccountLocked,
}

/// A password login posted to `base`, as client address `client`, with a CSRF pair fetched
/// from whichever instance served the login page (the pair holds on both: one server secret).
async fn login(base: &str, cookie: &str, csrf: &str, client: &str, email: &str, password: &str) -> Answer {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http
        .post(format!("{base}/login"))
        .header("cookie", cookie)
        .header("x-forwarded-for", client)
        .form(&[("csrf", csrf), ("email", email), ("password", password)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    match status {
        303 => Answer::In,
        200 if body.contains("The email or password is incorrect.") => Answer::Wrong,
        429 if body.contains("Password login for this account is paused") => Answer::AccountLocked,
        _ => panic!("unexpected answer {status}: {body}"),
    }
}

async fn two_instances_behind_nginx() {
    let c = Cluster::start().await;
    let (a, b) = (c.a.base.clone(), c.b.base.clone());

    // One key set: both instances publish the same JWKS, and nginx serves it too.
    let jwks = c.jwks(&a).await;
    assert!(jwks.contains("\"keys\""), "{jwks}");
    assert_eq!(c.jwks(&b).await, jwks);
    assert_eq!(c.jwks(&c.issuer).await, jwks);

    c.user("ana@example.test").await;
    let rp = c.rp().await;

    // Log in on A directly; redeem the code on B.
    let browser = Browser::new(&a);
    let start = rp.start(&["email"]);
    let back = browser.authorize(&at(&start.url, &c.issuer, &a), "ana@example.test", PW).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let code = back.location_param("code").unwrap();
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", rp.redirect_uri.as_str()),
        ("code_verifier", start.verifier.secret().as_str()),
    ];
    let (status, body) = token_at(&rp, &b, &redeem).await;
    assert_eq!(status, 200, "{body}");
    let tokens = parse_tokens(&body);
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert!(claims.email().is_some());

    // The access token A issued works on B's userinfo (the token lookup is the database's).
    let info = rp
        .http
        .get(format!("{b}/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    // Refresh on A; the rotated-away token replayed on B is theft, and ends the family there
    // too: the successor A just issued stops working on B.
    let first = tokens.refresh_token().unwrap().secret().clone();
    let (status, body) = token_at(&rp, &a, &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = token_at(&rp, &b, &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = token_at(&rp, &b, &[("grant_type", "refresh_token"), ("refresh_token", &second)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // Replaying the code on A finds it spent (and revokes what it granted, RFC 6749 §4.1.2).
    let (status, body) = token_at(&rp, &a, &redeem).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");

    // The session A started is known to B: prompt=none on B gets a code, no page.
    let silent = rp.start_with(&["email"], &[("prompt", "none")]);
    let page = browser.get(&at(&silent.url, &c.issuer, &b)).await;
    assert!(page.location_param("code").is_some(), "{:?} {}", page.location, page.body);

    // Logout on B ends the session on A as well.
    let id_token = tokens.id_token().unwrap().to_string();
    let confirm = browser
        .get(&format!(
            "{b}/logout?id_token_hint={id_token}&post_logout_redirect_uri=http://127.0.0.1/app/bye&state=s1"
        ))
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let mut form: Vec<(&str, String)> = vec![("csrf", confirm.input("csrf").unwrap()), ("decision", "logout".into())];
    for k in ["client_id", "post_logout_redirect_uri", "state"] {
        form.push((k, confirm.input(k).unwrap()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = browser.post(&format!("{b}/logout"), &form).await;
    assert_eq!(out.location.as_deref(), Some("http://127.0.0.1/app/bye?state=s1"));
    for base in [&a, &b] {
        let s = rp.start_with(&[], &[("prompt", "none")]);
        let page = browser.get(&at(&s.url, &c.issuer, base)).await;
        assert_eq!(page.location_param("error").as_deref(), Some("login_required"), "on {base}");
    }

    // Through nginx, as an app sees it: each request lands on either instance.
    let via = Browser::new(&c.issuer);
    for _ in 0..2 {
        let start = rp.start(&["email"]);
        let back = via.authorize(&start.url, "ana@example.test", PW).await;
        let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
        rp.id_claims(&tokens, &start.nonce);
        let refreshed = rp.refresh(tokens.refresh_token().unwrap().secret()).await.unwrap();
        assert!(refreshed.refresh_token().is_some());
    }

    // The lockout is counted across both: six wrong passwords at once, three on each, from
    // one client address: exactly five are judged, the sixth finds the account locked.
    c.user("six@example.test").await;
    let page = via.get("/login").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let cookie = format!("clef_csrf={}", via.cookie(&c.issuer, "clef_csrf").unwrap());
    let csrf = page.input("csrf").unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..6 {
        let base = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        set.spawn(async move { login(&base, &cookie, &csrf, "203.0.113.20", "six@example.test", &format!("wrong {i}")).await });
    }
    let mut answers = Vec::new();
    while let Some(x) = set.join_next().await {
        answers.push(x.unwrap());
    }
    answers.sort();
    assert_eq!(answers, [[Answer::Wrong; 5].as_slice(), &[Answer::AccountLocked]].concat());
    // Locked on both, with the right password and from another address too.
    for base in [&a, &b] {
        assert_eq!(
            login(base, &cookie, &csrf, "192.0.2.7", "six@example.test", PW).await,
            Answer::AccountLocked
        );
    }

    // `clef keys rotate` (the CLI, against the same folder and database): both instances
    // publish the new key within the reload interval, and agree.
    let before = jwks;
    let rotate = Command::new(env!("CARGO_BIN_EXE_clef"))
        .args(["keys", "rotate"])
        .current_dir(c.dir.path())
        .env("CLEF_DATABASE_URL", &c.database_url)
        .env("CLEF_KEYS_DIR", &c.keys_dir)
        .env("CLEF_LOG", "warn,sqlx::query=error")
        .output()
        .unwrap();
    assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
    let rotated = Instant::now();
    let mut seen = [None, None];
    while seen.iter().any(Option::is_none) && rotated.elapsed() < Duration::from_secs(RELOAD_SECS * 4 + 5) {
        for (i, base) in [&a, &b].into_iter().enumerate() {
            if seen[i].is_none() && c.jwks(base).await != before {
                seen[i] = Some(rotated.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("new key published by A after {:?}, by B after {:?}", seen[0], seen[1]);
    for (i, s) in seen.iter().enumerate() {
        let s = s.unwrap_or_else(|| panic!("instance {i} never published the rotated key"));
        // One interval, plus slack for a loaded CI host.
        assert!(s <= Duration::from_secs(RELOAD_SECS + 5), "instance {i} took {s:?}");
    }
    let after = c.jwks(&a).await;
    assert_eq!(c.jwks(&b).await, after, "both publish the same set");
    // New tokens are signed with the new key, whichever instance issues them; a relying party
    // that fetches the JWKS again verifies them.
    let created = clef::admin::CreatedClient {
        client_id: rp.client_id.clone(),
        client_secret: rp.client_secret.clone(),
    };
    let rp = Rp::discover(&c.issuer, &created, &rp.redirect_uri).await;
    let start = rp.start(&["email"]);
    let back = via.authorize(&start.url, "ana@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    rp.id_claims(&tokens, &start.nonce);

    c.finish().await;
}

/// A TCP forwarder to PostgreSQL that the test can cut and restore: what a database outage
/// looks like from clef (live connections drop, new ones fail), without touching the shared
/// PostgreSQL server other tests use.
struct Forwarder {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    live: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: String) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let live = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, live2) = (up.clone(), live.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    // Down: the connection is closed at once, as a dead server's would be.
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                live2.lock().unwrap().push(task.abort_handle());
            }
        });
        Forwarder { port, up, live, accept }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for t in self.live.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The database goes away under a running instance: `/readyz` fails, the token endpoint
/// answers `temporarily_unavailable` (503), pages a 503 page, nothing crashes; when it comes
/// back, service resumes by itself. Prints the recovery time.
async fn database_outage_and_recovery() {
    let admin = url::Url::parse(&crate::support::postgres_admin_url()).unwrap();
    let target = format!("{}:{}", admin.host_str().unwrap(), admin.port().unwrap_or(5432));
    let fwd = Forwarder::start(target.clone()).await;
    let port = fwd.port;
    let h = TestServer::start_with(Backend::Postgres, |raw| {
        // The per-test database, reached through the forwarder.
        let mut u = url::Url::parse(raw.database_url.as_deref().unwrap()).unwrap();
        u.set_port(Some(port)).unwrap();
        raw.database_url = Some(u.to_string());
        raw.db_acquire_timeout = Some(2);
    })
    .await;
    let client = h.confidential("app").await;
    let http = reqwest::Client::new();
    let token = || async {
        let r = http
            .post(h.url("/token"))
            .basic_auth(&client.client_id, client.client_secret.as_deref())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("redirect_uri", "http://127.0.0.1/app/cb"),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry = r.headers().get("retry-after").is_some();
        (status, retry, r.json::<serde_json::Value>().await.unwrap_or_default())
    };
    let ready = || async { http.get(h.url("/readyz")).send().await.unwrap().status().as_u16() };
    let authorize = format!(
        "/authorize?response_type=code&client_id={}&redirect_uri=http://127.0.0.1/app/cb&scope=openid",
        client.client_id
    );
    assert_eq!(ready().await, 200);
    assert_eq!(token().await.2["error"], "invalid_grant");

    fwd.cut();
    let cut = Instant::now();
    assert_eq!(ready().await, 503);
    assert!(cut.elapsed() < Duration::from_secs(3), "readyz took {:?}", cut.elapsed());
    let (status, retry, body) = token().await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert!(retry, "Retry-After on the 503");
    let page = h.browser().get(&authorize).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("<html"), "a page, not JSON: {}", page.body);
    assert_eq!(h.browser().get("/healthz").await.status, 200, "the process lives on");
    eprintln!("outage answered within {:?}", cut.elapsed());

    fwd.restore();
    let back = Instant::now();
    let mut recovered = None;
    while back.elapsed() < Duration::from_secs(30) {
        if ready().await == 200 && token().await.2["error"] == "invalid_grant" {
            recovered = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.expect("service resumed after the database came back");
    eprintln!("service resumed {recovered:?} after the database came back");
    assert!(recovered < Duration::from_secs(5), "{recovered:?}");
    // The authorization endpoint works again: on to the login page.
    let page = h.browser().get(&authorize).await;
    assert_eq!(page.status, 303, "{}", page.body);

    drop(fwd);
    h.finish().await;
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_behind_nginx() {
        super::two_instances_behind_nginx().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_outage_and_recovery() {
        super::database_outage_and_recovery().await
    }
}
