//! Behind a real reverse proxy (nginx as a child process): limits key on the client address the
//! proxy reports, the account lock and the address throttle are separate, and concurrent
//! logins of one account are judged right.
//!
//! The set-up: test → nginx (127.0.0.1:N) → clef (127.0.0.1:M), clef trusting 127.0.0.1. nginx
//! appends the address it saw (the test, 127.0.0.1) to the `X-Forwarded-For` the test sends,
//! so clef reads `<fake>, 127.0.0.1` from its trusted peer. Walking right to left, 127.0.0.1 is
//! trusted (the test plays a trusted load balancer in front of nginx) and `<fake>` is the first
//! untrusted address: that is the client. A test without `trusted_proxies` shows the same
//! header is then ignored.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clef::config::RawConfig;

use crate::support::{Backend, Browser, TestServer};

const PW: &str = "correct horse battery";

/// nginx in the foreground, with every path in a temporary directory; killed on drop.
struct Nginx {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(upstream: &str) -> Nginx {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        for _ in 0..5 {
            // A free port: bind, read it, let go; nginx binds it a moment later (retried if taken).
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 512; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://{upstream};\n      \
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
                 proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header Host $host;\n    }}\n  }}\n}}\n"
            );
            let conf_path: PathBuf = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let child = Command::new(nginx_binary())
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
            let mut n = Nginx {
                child,
                base: format!("http://127.0.0.1:{port}"),
                _dir: dir,
            };
            for _ in 0..100 {
                if n.child.try_wait().unwrap().is_some() {
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = n.child.kill();
        }
        panic!("nginx did not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> &'static str {
    "/usr/sbin/nginx"
}

async fn trusting(backend: Backend, adjust: impl FnOnce(&mut RawConfig)) -> TestServer {
    TestServer::start_with(backend, |raw| {
        raw.trusted_proxies = Some(vec!["127.0.0.1".into()]);
        adjust(raw);
    })
    .await
}

/// A login form's CSRF pair, fetched once and reused by many posts (the token is per browser).
struct Form {
    base: String,
    cookie: String,
    csrf: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// The password was hashed and judged right: redirected onwards.
    In,
    /// Hashed and judged wrong.
    Wrong,
    /// Refused before hashing: the account is locked.
    AccountLocked,
    /// Refused before hashing: this client address sends too many failures.
    AddressLimited,
}

impl Form {
    async fn get(base: &str) -> Form {
        let b = Browser::new(base);
        let page = b.get("/login").await;
        assert_eq!(page.status, 200, "{}", page.body);
        Form {
            base: base.to_owned(),
            cookie: format!("clef_csrf={}", b.cookie(base, "clef_csrf").unwrap()),
            csrf: page.input("csrf").unwrap(),
        }
    }

    /// Posts a login as `client` (sent as the first `X-Forwarded-For` hop).
    async fn login(&self, client: Option<&str>, email: &str, password: &str) -> Answer {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut r = http.post(format!("{}/login", self.base)).header("cookie", &self.cookie).form(&[
            ("csrf", self.csrf.as_str()),
            ("email", email),
            ("password", password),
        ]);
        if let Some(c) = client {
            r = r.header("x-forwarded-for", c);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        match status {
            303 => Answer::In,
            200 if body.contains("The email or password is incorrect.") => Answer::Wrong,
            429 if body.contains("Password login for this account is paused") => Answer::AccountLocked,
            429 if body.contains("this network address") => Answer::AddressLimited,
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
}

/// `n` logins at once; the answers, sorted.
async fn parallel(form: &std::sync::Arc<Form>, n: usize, client: &str, email: &str, password: &str) -> Vec<Answer> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (form, client, email) = (form.clone(), client.to_owned(), email.to_owned());
        let password = if password.is_empty() {
            format!("wrong {i}")
        } else {
            password.to_owned()
        };
        set.spawn(async move { form.login(Some(&client), &email, &password).await });
    }
    let mut out = Vec::new();
    while let Some(a) = set.join_next().await {
        out.push(a.unwrap());
    }
    out.sort();
    out
}

fn count(answers: &[Answer], a: Answer) -> usize {
    answers.iter().filter(|x| **x == a).count()
}

fn locked_mails(h: &TestServer, email: &str) -> usize {
    h.mail.to(email).into_iter().filter(|m| m.subject.contains("paused")).count()
}

async fn five_failing_users_do_not_lock_a_sixth(backend: Backend) {
    let h = trusting(backend, |_| {}).await;
    let nginx = Nginx::start(&h.issuer).await;
    let form = Form::get(&nginx.base).await;
    for i in 0..6 {
        h.user(&format!("u{i}@example.test"), PW).await;
    }
    // Five users, five addresses, one typo each; then the same five from one office address.
    for i in 0..5 {
        let me = format!("u{i}@example.test");
        assert_eq!(form.login(Some(&format!("203.0.113.{i}")), &me, "typo").await, Answer::Wrong);
        assert_eq!(form.login(Some("198.51.100.1"), &me, "typo").await, Answer::Wrong);
    }
    assert_eq!(form.login(Some("198.51.100.1"), "u5@example.test", PW).await, Answer::In);
    assert_eq!(form.login(Some("203.0.113.9"), "u5@example.test", PW).await, Answer::In);
    // Each of the five has two failures, not a lock: a right password still works.
    assert_eq!(form.login(Some("198.51.100.1"), "u0@example.test", PW).await, Answer::In);
    drop(nginx);
    h.finish().await;
}

async fn one_account_locks_alone(backend: Backend) {
    let h = trusting(backend, |_| {}).await;
    let nginx = Nginx::start(&h.issuer).await;
    let form = Form::get(&nginx.base).await;
    h.user("target@example.test", PW).await;
    h.user("other@example.test", PW).await;
    for i in 0..5 {
        let client = format!("203.0.113.{i}");
        assert_eq!(form.login(Some(&client), "target@example.test", "guess").await, Answer::Wrong);
    }
    // Locked for every address, with the right password too; the owner is told once.
    for client in ["203.0.113.0", "192.0.2.77"] {
        assert_eq!(form.login(Some(client), "target@example.test", PW).await, Answer::AccountLocked);
    }
    assert_eq!(locked_mails(&h, "target@example.test"), 1);
    // The other account logs in, from the attacker's address as well.
    assert_eq!(form.login(Some("203.0.113.0"), "other@example.test", PW).await, Answer::In);
    assert_eq!(locked_mails(&h, "other@example.test"), 0);
    drop(nginx);
    h.finish().await;
}

async fn address_throttle_holds_at_its_limit(backend: Backend) {
    let h = trusting(backend, |raw| raw.ip_failure_limit = Some(8)).await;
    let nginx = std::sync::Arc::new(Nginx::start(&h.issuer).await);
    let form = std::sync::Arc::new(Form::get(&nginx.base).await);
    h.user("victim@example.test", PW).await;
    // 12 wrong passwords at once from one address, each for another email: 8 are judged.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..12 {
        let form = form.clone();
        set.spawn(async move { form.login(Some("203.0.113.50"), &format!("n{i}@example.test"), "x").await });
    }
    let mut answers = Vec::new();
    while let Some(a) = set.join_next().await {
        answers.push(a.unwrap());
    }
    assert_eq!(count(&answers, Answer::Wrong), 8, "{answers:?}");
    assert_eq!(count(&answers, Answer::AddressLimited), 4, "{answers:?}");
    // The address is throttled for everyone, a right password included, and nobody is mailed;
    // other addresses are not.
    assert_eq!(
        form.login(Some("203.0.113.50"), "victim@example.test", PW).await,
        Answer::AddressLimited
    );
    assert_eq!(locked_mails(&h, "victim@example.test"), 0);
    assert_eq!(form.login(Some("203.0.113.51"), "victim@example.test", PW).await, Answer::In);
    // The throttle lifts after its window.
    h.clock.advance(h.state.config.limits.lockout + 1);
    assert_eq!(form.login(Some("203.0.113.50"), "victim@example.test", PW).await, Answer::In);
    drop(form);
    drop(nginx);
    h.finish().await;
}

async fn concurrent_right_passwords_all_succeed(backend: Backend) {
    let h = trusting(backend, |_| {}).await;
    let nginx = Nginx::start(&h.issuer).await;
    let form = std::sync::Arc::new(Form::get(&nginx.base).await);
    h.user("busy@example.test", PW).await;
    // Many-way: 32 at once from one address.
    let answers = parallel(&form, 32, "203.0.113.7", "busy@example.test", PW).await;
    assert_eq!(answers, vec![Answer::In; 32]);
    // Two-way, on the edge of the lock: with 4 failures recorded, two right passwords at once
    // both get in (the failures leave room for one check; the other waits for it).
    for trial in 0..6 {
        for _ in 0..4 {
            assert_eq!(
                form.login(Some("203.0.113.8"), "busy@example.test", "no").await,
                Answer::Wrong,
                "trial {trial}"
            );
        }
        let answers = parallel(&form, 2, "203.0.113.8", "busy@example.test", PW).await;
        assert_eq!(answers, [Answer::In, Answer::In], "trial {trial}");
    }
    drop(nginx);
    h.finish().await;
}

async fn parallel_wrong_passwords_get_exactly_five_tries(backend: Backend) {
    let h = trusting(backend, |_| {}).await;
    let nginx = Nginx::start(&h.issuer).await;
    let form = std::sync::Arc::new(Form::get(&nginx.base).await);
    // Six at once, as in the email suite; then 32 at once on another account.
    h.user("six@example.test", PW).await;
    let answers = parallel(&form, 6, "203.0.113.20", "six@example.test", "").await;
    assert_eq!(answers, [[Answer::Wrong; 5].as_slice(), &[Answer::AccountLocked]].concat());
    h.user("many@example.test", PW).await;
    let answers = parallel(&form, 32, "203.0.113.21", "many@example.test", "").await;
    assert_eq!(count(&answers, Answer::Wrong), 5, "{answers:?}");
    assert_eq!(count(&answers, Answer::AccountLocked), 27, "{answers:?}");
    assert_eq!(locked_mails(&h, "six@example.test"), 1);
    assert_eq!(locked_mails(&h, "many@example.test"), 1);
    // Two-way at the edge: with 4 failures, two wrong passwords at once get one judged try.
    for trial in 0..6 {
        let email = format!("edge{trial}@example.test");
        h.user(&email, PW).await;
        for _ in 0..4 {
            assert_eq!(form.login(Some("203.0.113.22"), &email, "no").await, Answer::Wrong);
        }
        let answers = parallel(&form, 2, "203.0.113.22", &email, "").await;
        assert_eq!(answers, [Answer::Wrong, Answer::AccountLocked], "trial {trial}");
    }
    drop(nginx);
    h.finish().await;
}

/// Without `trusted_proxies`, the header is the client's word and is ignored: every request
/// through nginx, whatever it claims, comes from nginx's address.
async fn spoofed_forwarded_for_is_ignored_without_trusted_proxies(backend: Backend) {
    let h = TestServer::start_with(backend, |raw| raw.ip_failure_limit = Some(3)).await;
    let nginx = Nginx::start(&h.issuer).await;
    let through = Form::get(&nginx.base).await;
    let direct = Form::get(&h.issuer).await;
    h.user("spoof@example.test", PW).await;
    for (i, form) in [&through, &direct, &through].into_iter().enumerate() {
        let email = format!("s{i}@example.test");
        assert_eq!(form.login(Some(&format!("203.0.113.{i}")), &email, "x").await, Answer::Wrong);
    }
    for (form, client) in [(&through, "192.0.2.1"), (&direct, "192.0.2.2, 192.0.2.3")] {
        assert_eq!(form.login(Some(client), "spoof@example.test", PW).await, Answer::AddressLimited);
    }
    drop(nginx);
    h.finish().await;
}

/// A trusted proxy's `X-Forwarded-Proto: https` adds `Secure` to cookies of an http issuer.
async fn forwarded_https_makes_cookies_secure(backend: Backend) {
    let h = trusting(backend, |_| {}).await;
    let cookie = |p: &crate::support::browser::Page| p.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    let plain = Browser::new(&h.issuer).get("/login").await;
    assert!(!cookie(&plain).contains("Secure"), "{}", cookie(&plain));
    let https = Browser::new(&h.issuer).get_with("/login", &[("x-forwarded-proto", "https")]).await;
    assert!(cookie(&https).ends_with("; Secure"), "{}", cookie(&https));
    h.finish().await;
    // Untrusted, the same header changes nothing.
    let h = TestServer::start(backend).await;
    let page = Browser::new(&h.issuer).get_with("/login", &[("x-forwarded-proto", "https")]).await;
    assert!(!cookie(&page).contains("Secure"));
    h.finish().await;
}

async fn long_emails_do_not_grow_limit_rows(backend: Backend) {
    let h = trusting(backend, |_| {}).await;
    let form = Form::get(&h.issuer).await;
    // As long as an address may be (RFC 5321: 254); longer ones are refused before any count.
    let long = format!("{}@example.test", "a".repeat(240));
    for i in 0..3 {
        assert_eq!(form.login(Some(&format!("203.0.113.{i}")), &long, "x").await, Answer::Wrong);
    }
    if backend == Backend::Sqlite {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&h.state.config.database_url).await.unwrap();
        let (longest, rows): (i64, i64) = sqlx::query_as("select max(length(bucket)), count(*) from rate_limits")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(rows >= 2);
        assert!(longest < 64, "bucket keys are fixed-length hashes, got {longest}");
        conn.close().await.unwrap();
    }
    h.finish().await;
}

/// One office address asks codes for many people: the address has its own, larger budget.
async fn code_sends_budget_per_address(backend: Backend) {
    let h = trusting(backend, |raw| raw.ip_code_send_limit = Some(6)).await;
    let nginx = Nginx::start(&h.issuer).await;
    let b = Browser::new(&nginx.base);
    let csrf = b.get("/login").await.input("csrf").unwrap();
    let send = |client: &'static str, email: String| {
        let (b, csrf) = (&b, csrf.clone());
        async move {
            let form = [("csrf", csrf.as_str()), ("email", email.as_str())];
            let page = b.post_with("/login/code", &form, &[("x-forwarded-for", client)]).await;
            page.status.as_u16()
        }
    };
    // Six people behind one address each get a code; the per-email limit (3) is not the bound.
    for i in 0..6 {
        assert_eq!(send("203.0.113.60", format!("p{i}@example.test")).await, 200);
    }
    assert_eq!(
        send("203.0.113.60", "p6@example.test".into()).await,
        429,
        "the address budget holds"
    );
    assert_eq!(
        send("203.0.113.61", "p6@example.test".into()).await,
        200,
        "another address is not limited"
    );
    // The per-email limit (3, the refused ask included) still holds across addresses.
    assert_eq!(send("192.0.2.1", "p6@example.test".into()).await, 200);
    assert_eq!(send("192.0.2.2", "p6@example.test".into()).await, 429);
    drop(nginx);
    h.finish().await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    In,
    Wrong,
    /// The back-off (or the per-minute limit): wait and try again.
    Wait,
    /// The hard limit of consecutive wrong codes.
    Locked,
}

/// Asks for a code for `email` and types `typed`, or the right one when `typed` is empty.
async fn try_code(h: &TestServer, email: &str, typed: &str) -> Code {
    let b = h.browser();
    let login = b.get("/login").await;
    let before = h.mail.to(email).len();
    let page = b
        .post("/login/code", &[("csrf", &login.input("csrf").unwrap()), ("email", email)])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let right = if typed.is_empty() {
        // The code mail goes out after the answer, and on a loaded host its first send may
        // fall back to the retry in the background: wait (bounded) for this code's own mail,
        // never read the one before it.
        let mut mails = h.mail.to(email);
        for _ in 0..150 {
            if mails.len() > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            mails = h.mail.to(email);
        }
        assert!(mails.len() > before, "no new code mail to {email}");
        mails.pop().unwrap().six_digit_code()
    } else {
        typed.to_owned()
    };
    let answer = b.submit(&page, &[("code", &right)]).await;
    match answer.status.as_u16() {
        303 => Code::In,
        200 if answer.body.contains("This code is not right") => Code::Wrong,
        429 if answer.body.contains("Logging in with emailed codes is paused") => Code::Locked,
        429 if answer.body.contains("Too many codes were tried") => Code::Wait,
        s => panic!("unexpected answer {s}: {}", answer.body),
    }
}

/// Wrong codes escalate per account across codes: back-off after five, a hard lock at the
/// limit with one mail to the owner, reset by a right code or a right password; an unknown
/// address goes through exactly the same answers.
async fn code_guesses_escalate_per_account(backend: Backend) {
    let h = TestServer::start_with(backend, |raw| raw.code_failure_limit = Some(8)).await;
    h.user("guessed@example.test", PW).await;
    // A right code resets the count: four wrong, one right, then five wrong are all free.
    for _ in 0..4 {
        assert_eq!(try_code(&h, "guessed@example.test", "000001").await, Code::Wrong);
        h.clock.advance(61);
    }
    assert_eq!(try_code(&h, "guessed@example.test", "").await, Code::In);
    let mut seen = Vec::new();
    for email in ["guessed@example.test", "nobody@example.test"] {
        let mut answers = Vec::new();
        // (seconds to wait first, expected answer): 60 s after the 5th failure, 120 s after
        // the 6th, 240 s after the 7th; the 8th locks.
        for (wait, want) in [
            (61, Code::Wrong),
            (61, Code::Wrong),
            (61, Code::Wrong),
            (61, Code::Wrong),
            (61, Code::Wrong),
            (0, Code::Wait),
            (61, Code::Wrong),
            (61, Code::Wait),
            (61, Code::Wrong),
            (241, Code::Wrong),
            (3600, Code::Locked),
        ] {
            h.clock.advance(wait);
            let got = try_code(&h, email, "000001").await;
            assert_eq!(got, want, "{email} after {answers:?}");
            answers.push(got);
        }
        // Locked: the right code is refused too (an unknown address has none to type).
        h.clock.advance(61);
        let right = try_code(&h, email, if email.starts_with("nobody") { "000001" } else { "" }).await;
        answers.push(right);
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1], "an unknown address answers like a known one");
    assert_eq!(seen[0].last(), Some(&Code::Locked));
    let told = h
        .mail
        .to("guessed@example.test")
        .into_iter()
        .filter(|m| m.subject.contains("emailed code paused"))
        .count();
    assert_eq!(told, 1, "the owner is told once");
    // A right password lifts the code lock.
    let form = Form::get(&h.issuer).await;
    assert_eq!(form.login(None, "guessed@example.test", PW).await, Answer::In);
    h.clock.advance(61);
    assert_eq!(try_code(&h, "guessed@example.test", "").await, Code::In);
    h.finish().await;
}

/// A login whose client hangs up mid-check gives its places back; places left by a crashed
/// instance (never settled, never dropped) lapse after a minute.
async fn abandoned_reservations_are_given_back(backend: Backend) {
    use clef::auth::limits::{Gate, password_gate};
    let h = TestServer::start(backend).await;
    let (db, l) = (&h.state.db, &h.state.config.limits);
    let probes = || async {
        let mut total = 0;
        for _ in 0..12 {
            // The release is spawned by Drop: give it a moment.
            let gate = password_gate(db, l, "probe@example.test", "192.0.2.9", h.clock.now())
                .await
                .unwrap();
            let Gate::Open(r) = gate else {
                panic!("the probe is never refused")
            };
            drop(r);
            total += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        total
    };
    // Had the dropped places stayed taken, the 6th probe would wait 30 s and be refused.
    assert_eq!(probes().await, 12);
    // A crash: five places taken and never settled or dropped.
    for _ in 0..5 {
        match password_gate(db, l, "crash@example.test", "192.0.2.10", h.clock.now())
            .await
            .unwrap()
        {
            Gate::Open(r) => std::mem::forget(r),
            _ => panic!("five places are free"),
        }
    }
    h.clock.advance(61);
    assert!(matches!(
        password_gate(db, l, "crash@example.test", "192.0.2.10", h.clock.now())
            .await
            .unwrap(),
        Gate::Open(_)
    ));
    h.finish().await;
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::Backend::Sqlite).await }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::Backend::Postgres).await }
        )* }
    };
}

both!(
    five_failing_users_do_not_lock_a_sixth,
    one_account_locks_alone,
    address_throttle_holds_at_its_limit,
    concurrent_right_passwords_all_succeed,
    parallel_wrong_passwords_get_exactly_five_tries,
    spoofed_forwarded_for_is_ignored_without_trusted_proxies,
    forwarded_https_makes_cookies_secure,
    long_emails_do_not_grow_limit_rows,
    code_guesses_escalate_per_account,
    code_sends_budget_per_address,
    abandoned_reservations_are_given_back,
);
