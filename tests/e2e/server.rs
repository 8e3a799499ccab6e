//! The server itself: the HMAC key outside the database, outbox permissions, header and body
//! timeouts with a connection cap, and answers during a database outage.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use clef::admin::UserSpec;
use clef::secret_key::SecretKeys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::e2e;
use crate::support::browser::{Browser, Page};
use crate::support::{Backend, TestServer};

const PW: &str = "correct horse battery";

/// The login page of a fresh authorization request, then the code page after asking for one.
async fn ask_code(b: &Browser, start_url: &str, email: &str) -> (Page, Page) {
    let login = b.follow(b.get(start_url).await).await;
    let csrf = login.input("csrf").unwrap();
    let req = login.input("req").unwrap();
    let page = b.post("/login/code", &[("csrf", &csrf), ("req", &req), ("email", email)]).await;
    (login, page)
}

fn secret_file(h: &TestServer) -> std::path::PathBuf {
    h.state.config.keys_dir.join(clef::secret_key::CURRENT_FILE)
}

/// Every text the database holds, table by table (SQLite: the raw file and its WAL).
async fn database_dump(h: &TestServer) -> Vec<u8> {
    match h.backend {
        Backend::Sqlite => {
            let mut out = Vec::new();
            for ext in ["db", "db-wal"] {
                if let Ok(bytes) = std::fs::read(h.dir().join(format!("clef.{ext}"))) {
                    out.extend(bytes);
                }
            }
            out
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&h.state.config.database_url).await.unwrap();
            let tables: Vec<(String,)> =
                sqlx::query_as("select table_name::text from information_schema.tables where table_schema = 'public'")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            assert!(tables.len() > 5, "{tables:?}");
            let mut out = Vec::new();
            for (t,) in tables {
                let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("select t::text from \"{t}\" t")))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                for (r,) in rows {
                    out.extend(r.into_bytes());
                }
            }
            out
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Item 6 of issue 7: the key lives in a 0600 file, and neither it nor the old `hmac_key` row
/// is anywhere in the database, even after codes and forms were made with it.
async fn database_holds_no_key_material(h: &TestServer) {
    h.user_with(UserSpec {
        email: "k@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let (_, page) = ask_code(&h.browser(), &rp.start(&[]).url, "k@example.test").await;
    assert_eq!(page.status, 200, "{}", page.body);

    let file = secret_file(h);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    let b64 = text.trim();
    let raw = clef::secret::b64url_decode(b64).unwrap();
    assert_eq!(raw.len(), 32);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();

    let dump = database_dump(h).await;
    assert!(contains(&dump, b"otp_codes") || h.backend == Backend::Postgres);
    for needle in [b64.as_bytes(), &raw, hex.as_bytes(), b"hmac_key"] {
        assert!(!contains(&dump, needle), "key material found in the database");
    }
}

/// Runs statements on the test database directly, as an older clef would have left it.
async fn exec(h: &TestServer, statements: &[&str]) {
    use sqlx::Connection;
    let url = &h.state.config.database_url;
    match h.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.to_string())).execute(&mut c).await.unwrap();
            }
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.to_string())).execute(&mut c).await.unwrap();
            }
        }
    }
}

/// A database from before migration 0006 still holds the key in `settings`: migrating
/// deletes it.
async fn migration_deletes_the_stored_key(h: &TestServer) {
    exec(
        h,
        &[
            "insert into settings (name, value) values ('hmac_key', 'an old key')",
            "delete from _sqlx_migrations where version = 6",
        ],
    )
    .await;
    assert_eq!(stored_key_rows(h).await, 1);
    h.state.db.migrate().await.unwrap();
    // By SQL, not by bytes: SQLite may keep deleted bytes in free pages, which is harmless
    // here since no instance accepts that key any more.
    assert_eq!(stored_key_rows(h).await, 0);
}

async fn stored_key_rows(h: &TestServer) -> i64 {
    use sqlx::Connection;
    let url = &h.state.config.database_url;
    let sql = "select count(*) from settings where name = 'hmac_key'";
    match h.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as::<_, (i64,)>(sql).fetch_one(&mut c).await.unwrap().0
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as::<_, (i64,)>(sql).fetch_one(&mut c).await.unwrap().0
        }
    }
}

/// A code mailed (and a form rendered) before `clef keys rotate-secret` still works after it.
async fn code_from_before_a_rotation_still_verifies(h: &TestServer) {
    h.user_with(UserSpec {
        email: "rot@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let start = rp.start(&["email"]);
    let (_, page) = ask_code(&b, &start.url, "rot@example.test").await;
    let code = h.mail.last_to("rot@example.test").six_digit_code();
    let before = std::fs::read_to_string(secret_file(h)).unwrap();

    SecretKeys::rotate(&h.state.config.keys_dir).unwrap();
    assert!(h.state.hmac_key.reload().unwrap(), "the server sees the new key");
    assert_ne!(std::fs::read_to_string(secret_file(h)).unwrap(), before);

    // The page's CSRF token and the code's hash were both made under the old key.
    let back = b.follow(b.submit(&page, &[("code", &code)]).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;

    // A second rotation retires the first key: a form made under it is refused.
    let b = h.browser();
    let (login, _) = ask_code(&b, &rp.start(&[]).url, "rot@example.test").await;
    SecretKeys::rotate(&h.state.config.keys_dir).unwrap();
    h.state.hmac_key.reload().unwrap();
    SecretKeys::rotate(&h.state.config.keys_dir).unwrap();
    h.state.hmac_key.reload().unwrap();
    let refused = b.submit(&login, &[("email", "rot@example.test")]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}

/// Item 3 (issue item 16): the outbox folder is 0700 and each mail 0600; a folder left open
/// by an older version is narrowed at start-up.
async fn outbox_is_private(h: &TestServer) {
    let outbox = h.dir().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = outbox.clone();
    let hs = TestServer::start_with(h.backend, move |raw| {
        raw.smtp_url = None;
        raw.outbox_dir = Some(o.display().to_string());
    })
    .await;
    assert_eq!(std::fs::metadata(&outbox).unwrap().permissions().mode() & 0o777, 0o700);
    hs.user_with(UserSpec {
        email: "box@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = hs.first_party().await;
    let (_, page) = ask_code(&hs.browser(), &rp.start(&[]).url, "box@example.test").await;
    assert_eq!(page.status, 200);
    // The login code goes out after the answer (no enumeration by time): wait for it, bounded.
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(files.len(), 1);
    assert!(files[0].extension().is_some_and(|e| e == "eml"));
    assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    let raw = std::fs::read(&files[0]).unwrap();
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("Your login code"));

    // A folder that does not exist yet is created owner-only.
    let fresh = h.dir().join("new").join("outbox");
    let f = fresh.clone();
    let hs2 = TestServer::start_with(h.backend, move |raw| {
        raw.smtp_url = None;
        raw.outbox_dir = Some(f.display().to_string());
    })
    .await;
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    hs2.finish().await;
    hs.finish().await;
}

/// Reads until the server closes the connection; returns what it sent, or None if it was
/// still open after `within`.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + within;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

async fn half_sent(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
    s
}

/// Item 4 (issue item 8): more idle half-sent requests than the connection cap cannot keep a
/// normal request from an answer; each is closed after the header timeout.
async fn slow_clients_are_cut_off(h: &TestServer) {
    const CAP: i64 = 4;
    let hs = TestServer::start_with(h.backend, |raw| {
        raw.max_connections = Some(CAP);
        raw.header_timeout = Some(1);
        raw.body_timeout = Some(1);
    })
    .await;
    let addr = hs.issuer.trim_start_matches("http://").to_owned();

    // Twice the cap: half take every slot, half wait in the backlog.
    let mut slow = Vec::new();
    for _ in 0..CAP * 2 {
        slow.push(half_sent(&addr).await);
    }
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), reqwest::get(hs.url("/healthz")))
        .await
        .expect("a normal request is answered while slow clients hold every slot")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the cap held: the request waited for a slot"
    );

    // Each half-sent request is closed, none answered with a page.
    for s in &mut slow {
        let got = read_until_closed(s, Duration::from_secs(8))
            .await
            .expect("closed after the header timeout");
        assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
    }

    // One alone: open until the header timeout, closed after it.
    let mut one = half_sent(&addr).await;
    assert!(
        read_until_closed(&mut one, Duration::from_millis(300)).await.is_none(),
        "not cut off early"
    );
    assert!(read_until_closed(&mut one, Duration::from_secs(5)).await.is_some());

    // An idle keep-alive connection is closed after the same timeout.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(5)).await.is_some(),
        "idle keep-alive closed"
    );

    // A body that never finishes is given up after the body deadline.
    let mut body = TcpStream::connect(&addr).await.unwrap();
    body.write_all(
        b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type",
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut body, Duration::from_secs(6))
        .await
        .expect("closed after the body deadline");
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("500"), "{text}");
    hs.finish().await;
}

/// Runs a statement on the PostgreSQL server as the admin.
async fn pg_admin(sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&crate::support::postgres_admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap();
}

fn db_name(h: &TestServer) -> String {
    h.state.config.database_url.rsplit('/').next().unwrap().to_owned()
}

/// Item 6 (issue item 17): with its database gone, clef answers fast and says "try again":
/// /readyz 503 within about a second, /token 503 temporarily_unavailable with Retry-After, a
/// 503 page, and everything back once the database returns.
async fn database_outage_answers_503(h: &TestServer) {
    let rp = h.first_party().await;
    let name = db_name(h);
    let http = reqwest::Client::new();
    assert_eq!(http.get(h.url("/readyz")).send().await.unwrap().status(), 200);

    pg_admin(&format!("alter database {name} allow_connections false")).await;
    pg_admin(&format!(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}' and pid <> pg_backend_pid()"
    ))
    .await;

    for _ in 0..3 {
        let t = Instant::now();
        let r = http.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        assert!(t.elapsed() < Duration::from_millis(2500), "readyz took {:?}", t.elapsed());
    }

    let r = http
        .post(h.url("/token"))
        .basic_auth(&rp.client_id, rp.client_secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", &rp.redirect_uri),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");

    let page = h.browser().get(&rp.start(&[]).url).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.body.contains("briefly unavailable"), "{}", page.body);

    pg_admin(&format!("alter database {name} allow_connections true")).await;
    let mut ready = false;
    for _ in 0..50 {
        if http.get(h.url("/readyz")).send().await.unwrap().status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "readyz recovers");
    let b = h.browser();
    let page = b.follow(b.get(&rp.start(&[]).url).await).await;
    assert_eq!(page.status, 200, "pages recover");
}

/// Two instances on one PostgreSQL database with the same CLEF_SECRET_KEY accept each other's
/// forms; an instance with another key refuses them.
async fn instances_sharing_a_secret_accept_each_others_forms(h: &TestServer) {
    let key = clef::secret_key::new_value();
    let url = h.state.config.database_url.clone();
    let start = |key: String| {
        let url = url.clone();
        TestServer::start_with(Backend::Postgres, move |raw| {
            raw.secret_key = Some(key);
            raw.database_url = Some(url);
        })
    };
    let a = start(format!("{key},{}", clef::secret_key::new_value())).await;
    let b = start(key.clone()).await;
    let other = start(clef::secret_key::new_value()).await;
    assert!(
        !a.state.config.keys_dir.join(clef::secret_key::CURRENT_FILE).exists(),
        "no file with the variable set"
    );
    a.user("two@example.test", PW).await;
    let rp = &a.first_party().await;

    // Loopback cookies ignore the port, so one browser carries A's CSRF cookie to B.
    let browser = a.browser();
    let login = browser.follow(browser.get(&rp.start(&[]).url).await).await;
    let form = login.hidden_inputs();
    let mut fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fields.extend([("email", "two@example.test"), ("password", PW)]);

    let refused = browser.post(&other.url("/login"), &fields).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let accepted = browser.post(&b.url("/login"), &fields).await;
    assert!(accepted.status.is_redirection(), "{} {}", accepted.status, accepted.body);
    other.finish().await;
    b.finish().await;
    a.finish().await;
}

/// Start-up with the database down fails within the acquire timeout and names the cause once.
#[test]
fn start_with_database_down_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clef"))
        .arg("serve")
        .current_dir(dir.path())
        .env("CLEF_DATABASE_URL", format!("postgres://postgres@127.0.0.1:{port}/none"))
        .env("CLEF_KEYS_DIR", dir.path().join("keys"))
        .env("CLEF_LISTEN", "127.0.0.1:0")
        .env("CLEF_DB_ACQUIRE_TIMEOUT", "1")
        .env("CLEF_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");
    assert!(stderr.contains("database unavailable"), "{stderr}");
}

e2e!(
    database_holds_no_key_material,
    migration_deletes_the_stored_key,
    code_from_before_a_rotation_still_verifies,
    outbox_is_private,
    slow_clients_are_cut_off,
);

mod postgres_only {
    use crate::support::{Backend, TestServer};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_outage_answers_503() {
        let h = TestServer::start(Backend::Postgres).await;
        super::database_outage_answers_503(&h).await;
        h.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_sharing_a_secret_accept_each_others_forms() {
        let h = TestServer::start(Backend::Postgres).await;
        super::instances_sharing_a_secret_accept_each_others_forms(&h).await;
        h.finish().await;
    }
}
