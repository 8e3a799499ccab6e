#!/usr/bin/env python3
"""clef benchmark: start-up, idle memory, and discovery / JWKS / userinfo / introspection / code
exchange / refresh (rotating each time) under load on loopback, measured with wrk. Reports requests/s, p50/p99 latency and the server's CPU
time per request (from /proc/PID/stat), the figure that holds on a noisy shared machine.
A last phase runs concurrent password logins (argon2) and reports the server's peak resident
memory during it and its resident memory 10 s after.

Usage: python3 scripts/bench.py [--duration 10] [--connections 32] [--skip-build] [--binary PATH]
                                [--only discovery,jwks,userinfo,introspection,code,refresh,logins]
Only 127.0.0.1 is ever contacted; every load run is bounded by --duration.
"""
import argparse
import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    print("== installing wrk from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh(["apt-get", "update", "-qq"], env=env)
    sh(["apt-get", "install", "-y", "-qq", "wrk"], env=env, stdout=subprocess.DEVNULL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def status_mib(pid, field):
    """VmRSS (now) or VmHWM (peak so far) from /proc/PID/status, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def password_logins(port, client_id, redirect_uri, pid, total, concurrency, time_limit):
    """`total` full password logins, `concurrency` at a time, stopped after `time_limit` s.
    Polls the server's resident memory meanwhile; returns (logins done, peak RSS MiB, seconds)."""
    import threading
    lock = threading.Lock()
    state = {"left": total, "done": 0, "failed": 0}
    deadline = time.perf_counter() + time_limit

    def run():
        while time.perf_counter() < deadline:
            with lock:
                if state["left"] == 0:
                    return
                state["left"] -= 1
            try:
                cookie = login_session(port, client_id, redirect_uri, "bench@example.test", "bench password 123")
                ok = "clef_session" in cookie
            except (OSError, AttributeError, http.client.HTTPException):
                ok = False
            with lock:
                state["done" if ok else "failed"] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for t in threads:
        t.start()
    peak = status_mib(pid, "VmRSS")
    while any(t.is_alive() for t in threads):
        peak = max(peak, status_mib(pid, "VmRSS"))
        time.sleep(0.02)
    for t in threads:
        t.join()
    return state["done"], state["failed"], peak, time.perf_counter() - t0


def rss_mib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class Server:
    def __init__(self, binary, env):
        self.binary, self.env, self.proc = binary, env, None

    def start(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stderr=subprocess.DEVNULL)
        port = int(self.env["CLEF_LISTEN"].rsplit(":", 1)[1])
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/.well-known/openid-configuration")
                if c.getresponse().status == 200:
                    return (time.perf_counter() - t0) * 1000
            except OSError:
                pass
            if self.proc.poll() is not None:
                sys.exit("clef serve exited during start-up")
            if time.perf_counter() - t0 > 10:
                sys.exit("clef serve did not answer within 10 s")
            time.sleep(0.0005)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def run_cli(binary, env, *args, stdin=None):
    return subprocess.run([binary, *args], env=env, input=stdin, capture_output=True, text=True, check=True).stdout


def form(pairs):
    return urllib.parse.urlencode(pairs)


def login_session(port, client_id, redirect_uri, email, password):
    """Logs in through the hosted page once; returns the session cookie header."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    q = form({"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": "openid email profile roles"})
    c.request("GET", f"/authorize?{q}")
    r = c.getresponse(); r.read()
    login = r.getheader("location")
    c.request("GET", login)
    r = c.getresponse(); body = r.read().decode()
    cookies = {}
    for h, v in r.getheaders():
        if h.lower() == "set-cookie":
            k, val = v.split(";", 1)[0].split("=", 1)
            cookies[k] = val
    csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
    req = re.search(r'name="req" value="([^"]+)"', body).group(1)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    c.request("POST", "/login", form({"csrf": csrf, "req": req, "email": email, "password": password}),
              {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    r = c.getresponse(); r.read()
    for h, v in r.getheaders():
        if h.lower() == "set-cookie":
            k, val = v.split(";", 1)[0].split("=", 1)
            cookies[k] = val
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def codes(port, cookie, client_id, redirect_uri, n):
    """With a live session and a first-party client, each /authorize answers with a code."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    q = form({"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": "openid email profile roles"})
    out = []
    for _ in range(n):
        c.request("GET", f"/authorize?{q}", headers={"Cookie": cookie})
        r = c.getresponse(); r.read()
        loc = r.getheader("location") or ""
        code = urllib.parse.parse_qs(urllib.parse.urlparse(loc).query).get("code")
        if not code:
            sys.exit(f"no code in {loc!r}")
        out.append(code[0])
    return out


WRK_LUA_CODES = r"""
local codes = {}
for line in io.lines(os.getenv("CLEF_BENCH_CODES")) do codes[#codes + 1] = line end
local counter, threads = 0, {}
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
function init(args)
  i = id
  step = tonumber(os.getenv("CLEF_BENCH_THREADS"))
  auth = os.getenv("CLEF_BENCH_AUTH")
  redirect = os.getenv("CLEF_BENCH_REDIRECT")
end
function request()
  local c = codes[i] or "exhausted"
  i = i + step
  return wrk.format("POST", "/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = "Basic " .. auth },
    "grant_type=authorization_code&code=" .. c .. "&redirect_uri=" .. redirect)
end
"""


# A refresh token is single-use: each thread keeps a queue of live tokens, one per grant
# ("family"), sends the newest, and queues the successor the answer carries. With more families
# than the thread's connections, a request never waits for a token; a failed answer loses its
# family, and once the queue is dry the requests fail and count as errors.
WRK_LUA_REFRESH = r"""
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  local step, n = tonumber(os.getenv("CLEF_BENCH_THREADS")), 0
  queue = {}
  for line in io.lines(os.getenv("CLEF_BENCH_REFRESH")) do
    n = n + 1
    if (n - id) % step == 0 then queue[#queue + 1] = line end
  end
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
              ["Authorization"] = "Basic " .. os.getenv("CLEF_BENCH_AUTH") }
end
function request()
  local t = table.remove(queue, 1) or "exhausted"
  return wrk.format("POST", "/token", headers, "grant_type=refresh_token&refresh_token=" .. t)
end
function response(status, hdrs, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then queue[#queue + 1] = t end
end
"""

# The same form posted on every request (introspection, client_credentials).
WRK_LUA_STATIC_POST = r"""
wrk.method = "POST"
wrk.body = os.getenv("CLEF_BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("CLEF_BENCH_AUTH")
"""


def wrk(url, pid, duration, connections, threads, headers=(), script=None, env=None):
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    before = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    cpu = cpu_seconds(pid) - before
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "cpu_ms_per_req": cpu * 1000 / max(total, 1),
            "requests": total, "errors": int(bad.group(1)) if bad else 0}


PHASES = ["discovery", "jwks", "userinfo", "introspection", "code", "refresh", "refresh-es256", "client-credentials", "logins"]


class Bench:
    """One running server and what the phases share: the client, a session, the wrk settings."""

    def __init__(self, args, binary, env, port, pid, work, client, redirect):
        self.args, self.binary, self.env, self.port, self.pid, self.work = args, binary, env, port, pid, work
        self.client, self.redirect = client, redirect
        self.base = f"http://127.0.0.1:{port}"
        self.common = dict(pid=pid, duration=args.duration, connections=args.connections, threads=args.threads)
        self._cookie = None

    def cookie(self):
        if self._cookie is None:
            self._cookie = login_session(self.port, self.client["client_id"], self.redirect, "bench@example.test",
                                         "bench password 123")
        return self._cookie

    def auth(self, client=None):
        c = client or self.client
        return base64.b64encode(f"{c['client_id']}:{c['client_secret']}".encode()).decode()

    def post_token(self, pairs, client=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port)
        c.request("POST", "/token", form(pairs),
                  {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {self.auth(client)}"})
        r = c.getresponse()
        body = json.loads(r.read())
        if r.status != 200:
            sys.exit(f"/token answered {r.status}: {body}")
        return body

    def exchange(self, client=None):
        """A fresh code exchanged once: the tokens of a new grant."""
        c = client or self.client
        [code] = codes(self.port, self.cookie(), c["client_id"], self.redirect, 1)
        return self.post_token({"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect}, c)

    def script(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def static_post(self, path, body, client=None, **kw):
        """wrk posting the same form each time, authenticated as the client."""
        wenv = dict(os.environ, CLEF_BENCH_BODY=body, CLEF_BENCH_AUTH=self.auth(client))
        return wrk(f"{self.base}{path}", script=self.script("static.lua", WRK_LUA_STATIC_POST), env=wenv,
                   **dict(self.common, **kw))

    def refresh(self, client=None):
        """The refresh grant, rotating each time; `client` decides the signing algorithm."""
        families = 2 * self.args.connections + 8
        tokens = [self.exchange(client)["refresh_token"] for _ in range(families)]
        path = os.path.join(self.work, "refresh.txt")
        with open(path, "w") as f:
            f.write("\n".join(tokens) + "\n")
        wenv = dict(os.environ, CLEF_BENCH_REFRESH=path, CLEF_BENCH_THREADS=str(self.args.threads),
                    CLEF_BENCH_AUTH=self.auth(client))
        return wrk(f"{self.base}/token", script=self.script("refresh.lua", WRK_LUA_REFRESH), env=wenv, **self.common)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--database-url", help="default: a fresh SQLite file")
    ap.add_argument("--binary", help="a clef binary to measure instead of the release build (implies --skip-build)")
    ap.add_argument("--logins", type=int, default=400, help="password logins in the memory phase")
    ap.add_argument("--login-concurrency", type=int, default=20)
    ap.add_argument("--only", help=f"comma-separated phases to run, of: {', '.join(PHASES)} (start-up and idle RSS always)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(PHASES)
    if only - set(PHASES):
        sys.exit(f"--only: unknown phase(s) {', '.join(sorted(only - set(PHASES)))}; known: {', '.join(PHASES)}")

    ensure_wrk()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if not args.skip_build and not args.binary:
        sh(["cargo", "build", "--release", "--locked"], cwd=ROOT)
    binary = args.binary or os.path.join(target, "release", "clef")

    work = tempfile.mkdtemp(prefix="clef-bench-")
    port = free_port()
    env = dict(os.environ, CLEF_LISTEN=f"127.0.0.1:{port}", CLEF_ISSUER=f"http://127.0.0.1:{port}",
               CLEF_DATABASE_URL=args.database_url or f"sqlite://{work}/clef.db", CLEF_KEYS_DIR=f"{work}/keys",
               CLEF_LOG="warn", CLEF_ACCESS_TOKEN_TTL="3600", CLEF_CODE_TTL="600")
    run_cli(binary, env, "migrate")
    redirect = "http://127.0.0.1/bench/cb"
    client = json.loads(run_cli(binary, env, "clients", "create", "--name", "bench", "--redirect-uri", redirect,
                                "--skip-consent", "--json"))
    # The same code-flow client with ES256 access and ID tokens, and a service client.
    client_es = json.loads(run_cli(binary, env, "clients", "create", "--name", "bench-es256", "--redirect-uri",
                                   redirect, "--skip-consent", "--token-alg", "ES256", "--json"))
    service = json.loads(run_cli(binary, env, "clients", "create", "--name", "bench-svc", "--grant-type",
                                 "client_credentials", "--scope", "bench", "--json"))
    run_cli(binary, env, "users", "create", "--email", "bench@example.test", "--role", "CLIENT", "--verified",
            stdin="bench password 123\n")

    server = Server(binary, env)
    server.start()  # first start generates the keys
    server.stop()
    startups = []
    for _ in range(5):
        startups.append(server.start())
        server.stop()
    startup_ms = sorted(startups)[len(startups) // 2]

    server.start()
    pid = server.proc.pid
    time.sleep(1.0)
    idle_rss = rss_mib(pid)
    results = {}
    loaded_rss = None
    logins = None
    try:
        b = Bench(args, binary, env, port, pid, work, client, redirect)
        if "discovery" in only:
            results["discovery"] = wrk(f"{b.base}/.well-known/openid-configuration", **b.common)
        if "jwks" in only:
            results["jwks"] = wrk(f"{b.base}/jwks", **b.common)
        if only & {"userinfo", "introspection"}:
            access_token = b.exchange()["access_token"]
            if "userinfo" in only:
                results["userinfo"] = wrk(f"{b.base}/userinfo", headers=[f"Authorization: Bearer {access_token}"],
                                          **b.common)
            if "introspection" in only:
                c = http.client.HTTPConnection("127.0.0.1", port)
                c.request("POST", "/introspect", form({"token": access_token}),
                          {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {b.auth()}"})
                if not json.loads(c.getresponse().read()).get("active"):
                    sys.exit("introspection does not find the access token active")
                results["introspection"] = b.static_post("/introspect", form({"token": access_token}))

        if "code" in only:
            # Each code is single-use: mint more than the run can spend, then post each once.
            n = int(os.environ.get("CLEF_BENCH_CODES_N", "20000"))
            code_list = codes(port, b.cookie(), client["client_id"], redirect, n)
            codes_file = os.path.join(work, "codes.txt")
            with open(codes_file, "w") as f:
                f.write("\n".join(code_list) + "\n")
            wenv = dict(os.environ, CLEF_BENCH_CODES=codes_file, CLEF_BENCH_THREADS=str(args.threads),
                        CLEF_BENCH_AUTH=b.auth(), CLEF_BENCH_REDIRECT=urllib.parse.quote(redirect, safe=""))
            results["token (code exchange)"] = wrk(f"{b.base}/token", script=b.script("codes.lua", WRK_LUA_CODES),
                                                   env=wenv, **dict(b.common, duration=min(args.duration, 5)))
        if "refresh" in only:
            results["token (refresh, RS256)"] = b.refresh()
        if "refresh-es256" in only:
            results["token (refresh, ES256)"] = b.refresh(client_es)
        if "client-credentials" in only:
            b.post_token({"grant_type": "client_credentials"}, service)
            results["token (client_credentials)"] = b.static_post(
                "/token", form({"grant_type": "client_credentials", "scope": "bench"}), service)
        loaded_rss = rss_mib(pid)

        if "logins" in only:
            # Password logins last: argon2 is what grows memory, and the peak is this phase's.
            before_logins = status_mib(pid, "VmRSS")
            done, failed, login_peak, login_secs = password_logins(
                port, client["client_id"], redirect, pid, args.logins, args.login_concurrency, time_limit=120)
            time.sleep(10)
            logins = {"ok": done, "failed": failed, "seconds": login_secs, "rss_before_mib": before_logins,
                      "rss_peak_mib": login_peak, "vm_hwm_mib": status_mib(pid, "VmHWM"),
                      "rss_10s_after_mib": status_mib(pid, "VmRSS")}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nclef benchmark — {os.cpu_count()} cores, {args.connections} connections, wrk {args.threads} threads, "
          f"{'SQLite' if not args.database_url else args.database_url.split(':')[0]}")
    print(f"start-up to first answered request (existing keys, median of 5): {startup_ms:.1f} ms")
    print(f"idle RSS: {idle_rss:.1f} MiB; RSS after the load runs: {loaded_rss:.1f} MiB")
    if logins:
        print(f"password logins: {logins['ok']} ok, {logins['failed']} failed in {logins['seconds']:.1f} s at "
              f"{args.login_concurrency} at a time; RSS before {logins['rss_before_mib']:.1f} MiB, peak "
              f"{logins['rss_peak_mib']:.1f} MiB (VmHWM {logins['vm_hwm_mib']:.1f}), 10 s after "
              f"{logins['rss_10s_after_mib']:.1f} MiB")
    print(f"{'endpoint':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<24}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['cpu_ms_per_req']:>12.4f}{r['errors']:>8}")
    print(json.dumps({"startup_ms": startup_ms, "idle_rss_mib": idle_rss, "loaded_rss_mib": loaded_rss,
                      "logins": logins, **results}))


if __name__ == "__main__":
    main()
