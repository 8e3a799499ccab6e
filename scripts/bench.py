#!/usr/bin/env python3
"""clef benchmark: start-up, idle memory, and discovery / JWKS / userinfo / code exchange under
load on loopback, measured with wrk. Reports requests/s, p50/p99 latency and the server's CPU
time per request (from /proc/PID/stat), the figure that holds on a noisy shared machine.
A last phase runs concurrent password logins (argon2) and reports the server's peak resident
memory during it and its resident memory 10 s after.

Usage: python3 scripts/bench.py [--duration 10] [--connections 32] [--skip-build] [--binary PATH]
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
    args = ap.parse_args()

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
    try:
        base = f"http://127.0.0.1:{port}"
        common = dict(pid=pid, duration=args.duration, connections=args.connections, threads=args.threads)
        results["discovery"] = wrk(f"{base}/.well-known/openid-configuration", **common)
        results["jwks"] = wrk(f"{base}/jwks", **common)

        cookie = login_session(port, client["client_id"], redirect, "bench@example.test", "bench password 123")
        [code] = codes(port, cookie, client["client_id"], redirect, 1)
        auth = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", "/token", form({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}),
                  {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {auth}"})
        access_token = json.loads(c.getresponse().read())["access_token"]
        results["userinfo"] = wrk(f"{base}/userinfo", headers=[f"Authorization: Bearer {access_token}"], **common)

        # Each code is single-use: mint more than the run can spend, then post each once.
        n = int(os.environ.get("CLEF_BENCH_CODES_N", "20000"))
        code_list = codes(port, cookie, client["client_id"], redirect, n)
        codes_file = os.path.join(work, "codes.txt")
        with open(codes_file, "w") as f:
            f.write("\n".join(code_list) + "\n")
        script = os.path.join(work, "codes.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA_CODES)
        wenv = dict(os.environ, CLEF_BENCH_CODES=codes_file, CLEF_BENCH_THREADS=str(args.threads), CLEF_BENCH_AUTH=auth,
                    CLEF_BENCH_REDIRECT=urllib.parse.quote(redirect, safe=""))
        results["token (code exchange)"] = wrk(f"{base}/token", script=script, env=wenv,
                                               **dict(common, duration=min(args.duration, 5)))
        loaded_rss = rss_mib(pid)

        # Password logins last: argon2 is what grows memory, and the peak is this phase's.
        before_logins = status_mib(pid, "VmRSS")
        done, failed, login_peak, login_secs = password_logins(
            port, client["client_id"], redirect, pid, args.logins, args.login_concurrency, time_limit=120)
        time.sleep(10)
        after_logins = status_mib(pid, "VmRSS")
        hwm = status_mib(pid, "VmHWM")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nclef benchmark — {os.cpu_count()} cores, {args.connections} connections, wrk {args.threads} threads, "
          f"{'SQLite' if not args.database_url else args.database_url.split(':')[0]}")
    print(f"start-up to first answered request (existing keys, median of 5): {startup_ms:.1f} ms")
    print(f"idle RSS: {idle_rss:.1f} MiB; RSS after the load runs: {loaded_rss:.1f} MiB")
    print(f"password logins: {done} ok, {failed} failed in {login_secs:.1f} s at {args.login_concurrency} at a time; "
          f"RSS before {before_logins:.1f} MiB, peak {login_peak:.1f} MiB (VmHWM {hwm:.1f}), 10 s after {after_logins:.1f} MiB")
    print(f"{'endpoint':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<24}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['cpu_ms_per_req']:>12.4f}{r['errors']:>8}")
    print(json.dumps({"startup_ms": startup_ms, "idle_rss_mib": idle_rss, "loaded_rss_mib": loaded_rss,
                      "logins": {"ok": done, "failed": failed, "seconds": login_secs, "rss_before_mib": before_logins,
                                 "rss_peak_mib": login_peak, "vm_hwm_mib": hwm, "rss_10s_after_mib": after_logins},
                      **results}))


if __name__ == "__main__":
    main()
