#!/usr/bin/env python3
"""clef under load and faults (issue 11): two release instances on one PostgreSQL database
behind nginx (round robin), then one SQLite instance.

Phases:
  load    --duration s of full logins (authorize, login page, password, code, token) each
          followed by --refreshes refresh rotations, through nginx, --concurrency at a time.
          Reports throughput, p50/p99 per step, errors, PostgreSQL connections used, each
          instance's idle / peak / 10-s-after RSS, and discovery p99 measured meanwhile.
  kill    the same load; kill -9 of instance A a third of the way in, restart it at two
          thirds. Every code is posted to both instances at once and every refresh token too:
          at most one may succeed. Afterwards no grant may hold two live refresh tokens.
  sqlite  one SQLite instance under the same load, kill -9 mid-run, restart: PRAGMA
          integrity_check, and every login whose token response arrived still works.

Usage: python3 scripts/multi_load.py [--duration 60] [--concurrency 8] [--skip-build] [--binary PATH]
       [--pg-url postgres://postgres@127.0.0.1:5432/postgres] [--phases load,kill,sqlite]
Only 127.0.0.1 is contacted; every phase is bounded by --duration and by --max-logins.
"""
import argparse
import base64
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "load password 123"
REDIRECT = "http://127.0.0.1/load/cb"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_mib(pid, field):
    """VmRSS (now) or VmHWM (peak so far) from /proc/PID/status, in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def form(pairs):
    return urllib.parse.urlencode(pairs)


class Instance:
    """One `clef serve` process."""

    def __init__(self, name, binary, env, work):
        self.name, self.binary, self.work = name, binary, work
        self.port = free_port()
        self.env = dict(env, CLEF_LISTEN=f"127.0.0.1:{self.port}")
        self.proc = None
        self.log = open(os.path.join(work, f"{name}.log"), "ab")

    def start(self, timeout=20):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=self.log, stderr=self.log)
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name}: clef serve exited during start-up (see {self.log.name})")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.02)
        sys.exit(f"{self.name}: not ready within {timeout} s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self):
        return self.proc.pid


class Nginx:
    def __init__(self, port, ports, work):
        self.port = port
        d = os.path.join(work, "nginx")
        os.makedirs(d, exist_ok=True)
        servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n" for p in ports)
        conf = f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream clef {{
{servers}    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://clef;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Host $http_host;
    }}
  }}
}}
"""
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-p", d, "-c", path, "-e", os.path.join(d, "early.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("nginx did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_cli(binary, env, *args, stdin=None):
    return subprocess.run([binary, *args], env=env, input=stdin, capture_output=True, text=True, check=True).stdout


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {}
        self.errors = {}
        self.logins = 0
        self.requests = 0
        self.timeline = []  # (t, ok) per full login

    def add(self, step, seconds):
        with self.lock:
            self.lat.setdefault(step, []).append(seconds * 1000)
            self.requests += 1

    def error(self, what):
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def cookies_of(resp, jar):
    for h, v in resp.getheaders():
        if h.lower() == "set-cookie":
            k, val = v.split(";", 1)[0].split("=", 1)
            jar[k] = val


def timed(stats, step, conn, method, path, body=None, headers=None):
    t0 = time.perf_counter()
    conn.request(method, path, body, headers or {})
    r = conn.getresponse()
    data = r.read()
    stats.add(step, time.perf_counter() - t0)
    return r, data


def full_login(port, client, email, stats, direct=None, double=False, refreshes=2):
    """One login through the hosted pages, the code exchange and `refreshes` refresh rotations.
    With `double`, each code and each refresh token is posted to both `direct` ports at once.
    Returns the token response of the exchange (or None) and the number of double-spends seen."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    jar = {}
    q = form({"client_id": client["client_id"], "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "openid email"})
    r, _ = timed(stats, "authorize", c, "GET", f"/authorize?{q}")
    loc = r.getheader("location")
    if r.status != 303 or not loc:
        raise RuntimeError(f"authorize {r.status}")
    r, body = timed(stats, "login page", c, "GET", loc)
    cookies_of(r, jar)
    body = body.decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', body)
    req = re.search(r'name="req" value="([^"]+)"', body)
    if r.status != 200 or not csrf or not req:
        raise RuntimeError(f"login page {r.status}")
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    r, _ = timed(stats, "password", c, "POST", "/login",
                 form({"csrf": csrf.group(1), "req": req.group(1), "email": email, "password": PASSWORD}),
                 {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    cookies_of(r, jar)
    loc = r.getheader("location") or ""
    if r.status != 303:
        raise RuntimeError(f"password {r.status}")
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    code = None
    for _ in range(4):
        parsed = urllib.parse.urlparse(loc)
        code = urllib.parse.parse_qs(parsed.query).get("code") if loc.startswith(REDIRECT) else None
        if code:
            break
        r, _ = timed(stats, "resume", c, "GET", loc, headers={"Cookie": cookie})
        loc = r.getheader("location") or ""
    if not code:
        raise RuntimeError(f"no code ({loc[:60]!r})")
    code = code[0]
    auth = "Basic " + base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    hdr = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": auth}
    spends = 0

    def post(params, step):
        r, data = timed(stats, step, c, "POST", "/token", form(params), hdr)
        return r.status, data

    def post_both(params, step):
        """The same single-use value to both instances at once: at most one may accept it."""
        results = [(0, b""), (0, b"")]

        def one(i, p):
            try:
                cc = http.client.HTTPConnection("127.0.0.1", p, timeout=10)
                rr, dd = timed(stats, step, cc, "POST", "/token", form(params), hdr)
                results[i] = (rr.status, dd)
            except (OSError, http.client.HTTPException):
                pass
        ts = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(direct)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wins = [x for x in results if x[0] == 200]
        if not wins and not any(x[0] == 400 for x in results):
            raise RuntimeError(f"double post: {[x[0] for x in results]}")
        return len(wins)

    code_params = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if double and secrets.randbelow(2) == 0:
        # The loser's replay revokes the grant (RFC 6749 §4.1.2), so this login ends here.
        wins = post_both(code_params, "token (code, both)")
        return {"double": True}, int(wins > 1)
    status, data = post(code_params, "token (code)")
    if status != 200:
        raise RuntimeError(f"token {status}")
    tokens = json.loads(data)
    rt = tokens.get("refresh_token")
    for _ in range(refreshes if rt else 0):
        status, data = post({"grant_type": "refresh_token", "refresh_token": rt}, "token (refresh)")
        if status != 200:
            raise RuntimeError(f"refresh {status}")
        rt = json.loads(data)["refresh_token"]
    if double and rt:
        # Two rotations of one token at once: a fork unless one of them is refused.
        spends += int(post_both({"grant_type": "refresh_token", "refresh_token": rt}, "token (refresh, both)") > 1)
    tokens["last_refresh_token"] = rt
    return tokens, spends


def drive(port, client, users, stats, duration, concurrency, max_logins, direct=None, double=False, refreshes=2,
          on_tick=None, keep=None):
    """Full logins from `concurrency` threads until `duration` s or `max_logins`."""
    lock = threading.Lock()
    left = [max_logins]
    t_start = time.perf_counter()
    deadline = t_start + duration
    spends = [0]

    def worker(i):
        n = 0
        while time.perf_counter() < deadline:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            email = users[(i + n * concurrency) % len(users)]
            n += 1
            t0 = time.perf_counter()
            try:
                tokens, s = full_login(port, client, email, stats, direct, double, refreshes)
                with stats.lock:
                    stats.logins += 1
                    stats.timeline.append((t0 - t_start, True))
                    spends[0] += s
                if keep is not None:
                    with lock:
                        keep.append(tokens)
            except (OSError, RuntimeError, http.client.HTTPException, ValueError) as e:
                stats.error(str(e).split(" (")[0][:40])
                with stats.lock:
                    stats.timeline.append((t0 - t_start, False))
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if on_tick:
            on_tick(time.perf_counter() - t_start)
        time.sleep(0.1)
    for t in threads:
        t.join()
    return time.perf_counter() - t_start, spends[0]


def probe_discovery(ports, stop, out):
    """One request at a time to each instance in turn, while the load runs."""
    conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=5) for p in ports}
    i = 0
    while not stop.is_set():
        p = ports[i % len(ports)]
        i += 1
        t0 = time.perf_counter()
        try:
            conns[p].request("GET", "/.well-known/openid-configuration")
            r = conns[p].getresponse()
            r.read()
            if r.status == 200:
                out.append((time.perf_counter() - t0) * 1000)
        except (OSError, http.client.HTTPException):
            conns[p] = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        time.sleep(0.01)


def psql(url, sql):
    return subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True, check=True).stdout.strip()


def report(title, stats, secs, extra):
    print(f"\n== {title}")
    print(f"full logins: {stats.logins} in {secs:.1f} s = {stats.logins / secs:.1f}/s; "
          f"HTTP requests {stats.requests} = {stats.requests / secs:.0f}/s; errors {sum(stats.errors.values())} {stats.errors}")
    print(f"{'step':<18}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}")
    for step, v in stats.lat.items():
        print(f"{step:<18}{len(v):>7}{pct(v, 50):>9.2f}{pct(v, 99):>9.2f}")
    for k, v in extra.items():
        print(f"{k}: {v}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-logins", type=int, default=20000)
    ap.add_argument("--refreshes", type=int, default=2)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--binary")
    ap.add_argument("--pg-url", default=os.environ.get("CLEF_LOAD_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--phases", default="load,kill,sqlite")
    args = ap.parse_args()
    phases = args.phases.split(",")
    if not os.path.exists("/usr/sbin/nginx"):
        sys.exit("nginx is missing: apt-get install nginx-light (scripts/test does)")

    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if not args.skip_build and not args.binary:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    binary = args.binary or os.path.join(target, "release", "clef")
    work = tempfile.mkdtemp(prefix="clef-multi-load-")
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()}; work dir {work}")
    summary = {}
    try:
        if "load" in phases or "kill" in phases:
            summary.update(postgres_phases(args, binary, work, phases))
        if "sqlite" in phases:
            summary["sqlite"] = sqlite_phase(args, binary, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + json.dumps(summary))


def setup(binary, env, n_users):
    run_cli(binary, env, "migrate")
    client = json.loads(run_cli(binary, env, "clients", "create", "--name", "load", "--redirect-uri", REDIRECT,
                                "--skip-consent", "--json"))
    users = [f"load{i}@example.test" for i in range(n_users)]
    for u in users:
        run_cli(binary, env, "users", "create", "--email", u, "--verified", stdin=PASSWORD + "\n")
    return client, users


def postgres_phases(args, binary, work, phases):
    name = f"clef_load_{secrets.token_hex(4)}"
    psql(args.pg_url, f"create database {name}")
    db_url = args.pg_url.rsplit("/", 1)[0] + "/" + name
    out = {}
    instances, nginx = [], None
    try:
        env = dict(os.environ, CLEF_DATABASE_URL=db_url, CLEF_KEYS_DIR=os.path.join(work, "keys"),
                   CLEF_OUTBOX_DIR=os.path.join(work, "outbox"), CLEF_LOG="warn", CLEF_TRUSTED_PROXIES="127.0.0.1",
                   # The double posts below must count a replay as theft at once, not as a retry.
                   CLEF_REFRESH_GRACE="0")
        env.pop("CLEF_SECRET_KEY", None)
        a = Instance("a", binary, env, work)
        b = Instance("b", binary, env, work)
        nginx_port = free_port()
        for i in (a, b):
            i.env["CLEF_ISSUER"] = f"http://127.0.0.1:{nginx_port}"
        client, users = setup(binary, a.env, args.users)
        a.start()
        b.start()
        instances = [a, b]
        nginx = Nginx(nginx_port, [a.port, b.port], work)
        time.sleep(2)
        idle = {i.name: status_mib(i.pid, "VmRSS") for i in instances}

        if "load" in phases:
            stats = Stats()
            disc, stop = [], threading.Event()
            conns = [0]

            def tick(_t):
                try:
                    conns[0] = max(conns[0], int(psql(args.pg_url, f"select count(*) from pg_stat_activity where datname = '{name}'")))
                except subprocess.CalledProcessError:
                    pass

            prober = threading.Thread(target=probe_discovery, args=([a.port, b.port], stop, disc))
            prober.start()
            peaks = {i.name: 0.0 for i in instances}

            def tick_all(t):
                for i in instances:
                    peaks[i.name] = max(peaks[i.name], status_mib(i.pid, "VmRSS"))
                if int(t * 10) % 5 == 0:
                    tick(t)

            secs, _ = drive(nginx.port, client, users, stats, args.duration, args.concurrency, args.max_logins,
                            refreshes=args.refreshes, on_tick=tick_all)
            stop.set()
            prober.join()
            time.sleep(10)
            after = {i.name: status_mib(i.pid, "VmRSS") for i in instances}
            hwm = {i.name: status_mib(i.pid, "VmHWM") for i in instances}
            extra = {
                "PostgreSQL connections used (max seen, both instances)": conns[0],
                "RSS idle MiB": fmt(idle), "RSS peak MiB (sampled)": fmt(peaks), "VmHWM MiB": fmt(hwm),
                "RSS 10 s after MiB": fmt(after),
                "discovery while loaded": f"n={len(disc)} p50 {pct(disc, 50):.2f} ms p99 {pct(disc, 99):.2f} ms",
                "load average after": os.getloadavg(),
            }
            report(f"load: 2 instances + nginx, PostgreSQL, {args.concurrency} at a time", stats, secs, extra)
            out["load"] = {"logins": stats.logins, "seconds": secs, "requests": stats.requests,
                           "errors": stats.errors, "p50_ms": {k: pct(v, 50) for k, v in stats.lat.items()},
                           "p99_ms": {k: pct(v, 99) for k, v in stats.lat.items()}, "pg_connections": conns[0],
                           "rss_idle": idle, "rss_peak": peaks, "vm_hwm": hwm, "rss_after_10s": after,
                           "discovery_p99_ms": pct(disc, 99), "discovery_p50_ms": pct(disc, 50)}

        if "kill" in phases:
            stats = Stats()
            events = {}
            dur = max(args.duration // 2, 15)

            def chaos(t):
                if "killed" not in events and t > dur / 3:
                    a.kill9()
                    events["killed"] = t
                elif "killed" in events and "restarted" not in events and t > 2 * dur / 3:
                    events["restart_s"] = a.start()
                    events["restarted"] = t

            secs, spends = drive(nginx.port, client, users, stats, dur, args.concurrency, args.max_logins,
                                 direct=[a.port, b.port], double=True, refreshes=args.refreshes, on_tick=chaos)
            k, r = events.get("killed", 0), events.get("restarted", secs)
            during = [ok for t, ok in stats.timeline if k + 1 < t < r]
            # A revoked family's tokens are deleted; a live one has exactly one unused token.
            forks = psql(db_url, "select count(*) from (select grant_id from refresh_tokens where used = 0 "
                                 "group by grant_id having count(*) > 1) f")
            extra = {
                "kill -9 of A at": f"{k:.1f} s; restarted at {r:.1f} s, ready in {events.get('restart_s', float('nan')):.2f} s",
                "logins while A was down (after 1 s)": f"{sum(during)} ok, {len(during) - sum(during)} failed",
                "codes or refresh tokens accepted twice (posted to both at once)": spends,
                "grants with two live refresh tokens (forks)": forks,
                "A's log after restart": tail(a.log.name),
            }
            report("kill: kill -9 of instance A mid-run, then restart", stats, secs, extra)
            out["kill"] = {"logins": stats.logins, "errors": stats.errors, "double_spends": spends, "forks": int(forks),
                           "down_ok": sum(during), "down_failed": len(during) - sum(during), "events": events}
    finally:
        if nginx:
            nginx.stop()
        for i in instances:
            i.stop()
        try:
            psql(args.pg_url, f"drop database if exists {name} with (force)")
        except subprocess.CalledProcessError:
            pass
    return out


def fmt(d):
    return ", ".join(f"{k} {v:.1f}" for k, v in d.items())


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
        return " | ".join(lines[-n:]) or "(empty)"
    except OSError:
        return "(none)"


def sqlite_phase(args, binary, work):
    d = os.path.join(work, "sqlite")
    os.makedirs(d)
    db_file = os.path.join(d, "clef.db")
    port_env = dict(os.environ, CLEF_DATABASE_URL=f"sqlite://{db_file}", CLEF_KEYS_DIR=os.path.join(d, "keys"),
                    CLEF_OUTBOX_DIR=os.path.join(d, "outbox"), CLEF_LOG="warn")
    port_env.pop("CLEF_SECRET_KEY", None)
    inst = Instance("sqlite", binary, port_env, d)
    inst.env["CLEF_ISSUER"] = f"http://127.0.0.1:{inst.port}"
    client, users = setup(binary, inst.env, args.users)
    inst.start()
    stats = Stats()
    kept = []
    dur = max(args.duration // 3, 10)
    killed = {}

    def chaos(t):
        if "at" not in killed and t > dur / 2:
            inst.kill9()
            killed["at"] = t
            # The file as the crash left it (opening it replays the WAL, as the next start would).
            con = sqlite3.connect(db_file)
            killed["integrity"] = con.execute("pragma integrity_check").fetchone()[0]
            con.close()
            killed["restart"] = inst.start()
            killed["back"] = time.perf_counter()

    secs, _ = drive(inst.port, client, users, stats, dur, args.concurrency, args.max_logins, refreshes=1,
                    on_tick=chaos, keep=kept)
    restart = killed.get("restart", float("nan"))
    integrity = killed.get("integrity", "not run")
    # Every login whose token response arrived was committed: its latest refresh token works.
    lost = 0
    c = http.client.HTTPConnection("127.0.0.1", inst.port, timeout=10)
    auth = "Basic " + base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    for tokens in kept:
        c.request("POST", "/token", form({"grant_type": "refresh_token", "refresh_token": tokens["last_refresh_token"]}),
                  {"Content-Type": "application/x-www-form-urlencoded", "Authorization": auth})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            lost += 1
    inst.stop()
    extra = {"kill -9 at": f"{killed.get('at', 0):.1f} s; restart ready in {restart:.2f} s",
             "PRAGMA integrity_check": integrity,
             "completed logins checked after restart": f"{len(kept)}, lost {lost}"}
    report("sqlite: one instance, kill -9 mid-run", stats, secs, extra)
    return {"logins": stats.logins, "errors": stats.errors, "integrity": integrity, "checked": len(kept), "lost": lost}


if __name__ == "__main__":
    main()
