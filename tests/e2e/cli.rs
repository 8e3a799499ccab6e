//! The `clef` binary: commands, exit codes, env configuration, and key rotation.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::e2e;
use crate::support::TestServer;
use crate::support::rp::{Rp, access_token};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn clef(h: &TestServer, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clef"));
    cmd.args(args)
        .current_dir(h.dir())
        .env("CLEF_DATABASE_URL", &h.state.config.database_url)
        .env("CLEF_KEYS_DIR", &h.state.config.keys_dir)
        // sqlx warns of any statement over 1 s; on a loaded CI host that is a second stderr
        // line that says nothing about the command, and the tests count stderr lines.
        .env("CLEF_LOG", "warn,sqlx::query=error")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        // A command that refuses its arguments exits without reading: the pipe is closed then,
        // and its exit status, not the write, is what the test checks.
        if let Err(e) = child.stdin.take().unwrap().write_all(input.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    let out = child.wait_with_output().unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

async fn clients_commands(h: &TestServer) {
    let run = clef(
        h,
        &[
            "clients",
            "create",
            "--name",
            "shop",
            "--redirect-uri",
            "https://shop.example/cb",
            "--redirect-uri",
            "http://127.0.0.1:3000/cb",
            "--json",
        ],
        None,
    );
    assert!(run.ok, "{}", run.stderr);
    let created: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let id = created["client_id"].as_str().unwrap();
    assert_eq!(created["client_secret"].as_str().unwrap().len(), 43);
    let client = h.state.db.client_get(id).await.unwrap().unwrap();
    assert_ne!(
        client.secret_hash.as_deref(),
        created["client_secret"].as_str(),
        "only a hash is stored"
    );

    let public = clef(
        h,
        &[
            "clients",
            "create",
            "--name",
            "spa",
            "--redirect-uri",
            "https://spa.example/cb",
            "--public",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(public.stdout.trim()).unwrap();
    assert!(v.get("client_secret").is_none());

    let list = clef(h, &["clients", "list"], None);
    assert!(list.stdout.contains(id) && list.stdout.contains("shop"));

    for (args, needle) in [
        (
            vec!["clients", "create", "--name", "x", "--redirect-uri", "not a uri"],
            "not an absolute URI",
        ),
        (
            vec!["clients", "create", "--name", "x", "--redirect-uri", "http://evil.example/cb"],
            "plain http",
        ),
        (
            vec![
                "clients",
                "create",
                "--name",
                "x",
                "--redirect-uri",
                "https://a.example/cb",
                "--grant-type",
                "password",
            ],
            "unsupported grant type",
        ),
        (vec!["clients", "delete", "no-such-client"], "client not found"),
    ] {
        let run = clef(h, &args, None);
        assert!(!run.ok, "{args:?} should fail");
        assert_eq!(run.stderr.trim().lines().count(), 1, "one line: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    assert!(clef(h, &["clients", "delete", id], None).ok);
}

async fn users_commands(h: &TestServer) {
    let run = clef(
        h,
        &[
            "users",
            "create",
            "--email",
            "cli@example.test",
            "--name",
            "Cli",
            "--role",
            "ADMIN",
            "--verified",
        ],
        Some("a long password\n"),
    );
    assert!(run.ok, "{}", run.stderr);
    let user = h.state.db.user_by_email("cli@example.test").await.unwrap().unwrap();
    assert_eq!(user.user_id, run.stdout.trim());
    assert!(user.password_hash.unwrap().starts_with("$argon2id$"));
    assert_eq!(user.roles, ["ADMIN"]);
    assert!(user.email_verified);

    let dup = clef(
        h,
        &["users", "create", "--email", "CLI@example.test", "--password", "another password"],
        None,
    );
    assert!(!dup.ok);
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    let phone = clef(
        h,
        &[
            "users",
            "create",
            "--email",
            "p@example.test",
            "--password",
            "long enough",
            "--phone",
            "0612345678",
        ],
        None,
    );
    assert!(!phone.ok && phone.stderr.contains("E.164"), "{}", phone.stderr);
    let bad = clef(
        h,
        &["users", "create", "--email", "not-an-email", "--password", "long enough"],
        None,
    );
    assert!(!bad.ok && bad.stderr.contains("not an email address"));
    assert!(clef(h, &["users", "list"], None).stdout.contains("cli@example.test"));
    assert!(clef(h, &["users", "delete", "cli@example.test"], None).ok);
    assert!(!clef(h, &["users", "delete", "cli@example.test"], None).ok);
}

async fn bad_configuration_names_the_setting(h: &TestServer) {
    for (var, value) in [
        ("CLEF_SIGNUP", "maybe"),
        ("CLEF_ISSUER", "::"),
        ("CLEF_LISTEN", "nowhere"),
        ("CLEF_SESSION_TTL", "7d"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_clef"))
            .args(["migrate"])
            .current_dir(h.dir())
            .env("CLEF_DATABASE_URL", &h.state.config.database_url)
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
    assert!(clef(h, &["migrate"], None).ok, "migrate is idempotent");
}

/// After `keys rotate`, new tokens use the new key and old ones still verify.
async fn key_rotation_keeps_old_tokens_valid(h: &TestServer) {
    h.user("rot@example.test", "correct horse battery").await;
    let created = h.confidential("rot").await;
    let rp = Rp::discover(&h.issuer, &created, "http://127.0.0.1/rot/cb").await;
    let b = h.browser();
    let s1 = rp.start(&[]);
    let back = b.authorize(&s1.url, "rot@example.test", "correct horse battery").await;
    let old = rp.exchange(&back.location_param("code").unwrap(), s1.verifier).await;

    let run = clef(h, &["keys", "rotate"], None);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().filter(|l| l.contains("\tretired\t")).count(),
        2,
        "{}",
        run.stdout
    );
    assert!(h.state.keys.reload(h.clock.now()).unwrap());
    let jwks: serde_json::Value = serde_json::from_str(&b.get("/jwks").await.body).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 4);

    // The relying party rediscovers (new JWKS) and gets a token signed by the new key.
    let rp = Rp::discover(&h.issuer, &created, "http://127.0.0.1/rot/cb").await;
    let s2 = rp.start(&[]);
    let back = b.follow(b.get(&s2.url).await).await;
    let new = rp.exchange(&back.location_param("code").unwrap(), s2.verifier).await;
    rp.id_claims(&new, &s2.nonce);
    let kid = |t: &str| -> String {
        let h: serde_json::Value = serde_json::from_slice(&clef::secret::b64url_decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        h["kid"].as_str().unwrap().to_owned()
    };
    assert_ne!(kid(&access_token(&old)), kid(&access_token(&new)));
    rp.userinfo(&access_token(&old)).await;

    // Once every token the old key signed has expired, it leaves the JWKS.
    h.clock.advance(h.state.config.max_signed_lifetime() + 1);
    assert!(h.state.keys.reload(h.clock.now()).unwrap());
    let jwks: serde_json::Value = serde_json::from_str(&b.get("/jwks").await.body).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

/// `clef serve` on a fresh database tells a newcomer where it answers and what to do next;
/// once a client and a user exist, the next-step lines are gone.
async fn serve_prints_the_next_steps(h: &TestServer) {
    let banner = |extra_env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clef"));
        cmd.arg("serve")
            .current_dir(h.dir())
            .env("CLEF_DATABASE_URL", &h.state.config.database_url)
            .env("CLEF_KEYS_DIR", &h.state.config.keys_dir)
            .env("CLEF_LISTEN", "127.0.0.1:0")
            .env("CLEF_ISSUER", "http://localhost:9999")
            .env("CLEF_LOG", "warn")
            .env_remove("CLEF_SMTP_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        // The banner ends with an empty line; wait for it, bounded in lines and time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (mut text, mut seen_start) = (String::new(), false);
        for _ in 0..60 {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) else {
                break;
            };
            seen_start |= line.starts_with("clef is serving");
            if seen_start && line.is_empty() {
                break;
            }
            text.push_str(&line);
            text.push('\n');
        }
        child.kill().unwrap();
        child.wait().unwrap();
        text
    };
    let fresh = banner(&[]);
    assert!(fresh.contains("clef is serving http://localhost:9999"), "{fresh}");
    assert!(
        fresh.contains("discovery: http://localhost:9999/.well-known/openid-configuration"),
        "{fresh}"
    );
    assert!(fresh.contains("clef clients create"), "{fresh}");
    assert!(fresh.contains("clef users create"), "{fresh}");
    assert!(fresh.contains("mail: no CLEF_SMTP_URL set"), "{fresh}");
    h.confidential("app").await;
    h.user("ana@example.test", "a long password").await;
    let later = banner(&[("CLEF_SMTP_URL", "smtp://127.0.0.1:2525")]);
    assert!(later.contains("discovery:"), "{later}");
    assert!(!later.contains("next:") && !later.contains("mail:"), "{later}");
}

e2e!(
    serve_prints_the_next_steps,
    clients_commands,
    users_commands,
    bad_configuration_names_the_setting,
    key_rotation_keeps_old_tokens_valid
);

/// Two instances starting at once on an empty database both come up, with one schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let (pg_name, pg_url) = crate::support::create_pg_database().await;
    for url in [format!("sqlite://{}", dir.path().join("race.db").display()), pg_url] {
        let (a, b) = tokio::join!(clef::store::Db::connect(&url), clef::store::Db::connect(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        ra.unwrap_or_else(|e| panic!("{url}: {e}"));
        rb.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(a.client_list().await.unwrap().is_empty());
        a.close().await;
        b.close().await;
    }
    crate::support::drop_pg_database(&pg_name).await;
}
