"""An independent second relying party: authlib against a live `clef serve`.

Discovery, the code flow with PKCE (S256), ID token validation by authlib (signature against
the JWKS, iss, aud, exp, iat, nonce, at_hash), userinfo, refresh (with rotation) and
RP-initiated logout, each named after the conformance-suite module it mirrors. The login and
consent forms are filled over HTTP with a cookie jar, as a browser posts them.

Run by conformance/offline/run (CLEF_ISSUER, CLEF_BIN, CONF_EMAIL, CONF_PASSWORD).
"""

import html
import json
import os
import re
import subprocess
import sys
import time
import traceback
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import BaseApp, OAuth2Mixin, OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session

ISSUER = os.environ["CLEF_ISSUER"]
CLEF = os.environ["CLEF_BIN"]
EMAIL = os.environ["CONF_EMAIL"]
PASSWORD = os.environ["CONF_PASSWORD"]
RP = "http://127.0.0.1/authlib"
CB = RP + "/cb"
LOGGED_OUT = RP + "/logged-out"
ONLY = re.compile(os.environ["CONF_ONLY"]) if os.environ.get("CONF_ONLY") else None

results = []


class Skip(Exception):
    pass


def check(name):
    def run(fn):
        if ONLY and not ONLY.search(name):
            return fn
        t0 = time.monotonic()
        try:
            fn()
            results.append({"name": name, "status": "passed"})
            print(f"ok      authlib: {name} ({round((time.monotonic() - t0) * 1000)} ms)", flush=True)
        except Skip as e:
            results.append({"name": name, "status": "skipped", "reason": str(e)})
            print(f"skip    authlib: {name}: {e}", flush=True)
        except Exception as e:  # a failed check must not stop the others
            results.append({"name": name, "status": "failed", "reason": str(e)})
            print(f"FAILED  authlib: {name}: {type(e).__name__}: {e}", flush=True)
            if os.environ.get("CONF_VERBOSE"):
                traceback.print_exc()
        return fn

    return run


class _NoFramework:
    """authlib's integrations keep tokens in a web framework; this RP keeps them itself."""

    def update_token(self, *args, **kwargs):
        pass


class RelyingParty(OpenIDMixin, OAuth2Mixin, BaseApp):
    """authlib's own OpenID client (discovery, PKCE, ID token checks) on requests."""

    client_cls = OAuth2Session


def create_client(name, *args):
    out = subprocess.run(
        [CLEF, "clients", "create", "--name", name, *args, "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=20,
    )
    return json.loads(out.stdout)


def forms(page):
    found = []
    for m in re.finditer(r"<form\b([^>]*)>(.*?)</form>", page, re.S):
        action = re.search(r'\saction="([^"]*)"', " " + m.group(1))
        form_id = re.search(r'\sid="([^"]*)"', " " + m.group(1))
        fields = []
        for i in re.finditer(r"<input\b[^>]*>", m.group(2)):
            n = re.search(r'\sname="([^"]*)"', i.group(0))
            v = re.search(r'\svalue="([^"]*)"', i.group(0))
            if n:
                fields.append((html.unescape(n.group(1)), html.unescape(v.group(1)) if v else ""))
        buttons = re.findall(r'<button\b[^>]*name="decision"[^>]*value="([^"]*)"', m.group(2))
        found.append({
            "action": html.unescape(action.group(1)) if action else None,
            "id": form_id.group(1) if form_id else None,
            "fields": fields,
            "decisions": buttons,
        })
    return found


class Browser:
    """A cookie jar and clef's hosted forms, posted as a browser posts them."""

    def __init__(self):
        self.s = requests.Session()
        self.s.headers["User-Agent"] = "clef-conformance-offline (authlib)"

    def request(self, method, url, data=None):
        url = urljoin(ISSUER + "/", url)
        headers = {}
        if data is not None and url.startswith(ISSUER):
            headers = {"Origin": ISSUER, "Sec-Fetch-Site": "same-origin"}
        return self.s.request(method, url, data=data, headers=headers, allow_redirects=False, timeout=15)

    def authorize(self, url, redirect_prefix=RP):
        """Follows the flow to the client; returns the callback URL, or for a form_post
        answer (OAuth 2.0 Form Post Response Mode §2) the URL the form posts to, with the
        posted fields as its query."""
        resp = self.request("GET", url)
        logged_in = consented = False
        for _ in range(15):
            if resp.is_redirect:
                nxt = urljoin(resp.url, resp.headers["Location"])
                if nxt.startswith(redirect_prefix):
                    return nxt
                resp = self.request("GET", nxt)
                continue
            fs = forms(resp.text)
            posted = next((f for f in fs if f["id"] == "form_post"), None)
            if posted:
                assert posted["action"].startswith(redirect_prefix), posted["action"]
                return posted["action"] + "?" + urlencode(posted["fields"])
            login = next((f for f in fs if any(n == "password" for n, _ in f["fields"])), None)
            if login and not logged_in:
                logged_in = True
                fields = [(n, EMAIL if n == "email" else PASSWORD if n == "password" else v) for n, v in login["fields"]]
                resp = self.request("POST", login["action"], fields)
                continue
            consent = next((f for f in fs if "allow" in f["decisions"]), None)
            if consent and not consented:
                consented = True
                resp = self.request("POST", consent["action"], consent["fields"] + [("decision", "allow")])
                continue
            raise AssertionError(f"the flow stopped on a {resp.status_code} page at {resp.url}")
        raise AssertionError("the flow did not finish within 15 steps")

    def logout(self, url):
        """Opens the end-session URL, confirms, and returns where clef sent the browser."""
        resp = self.request("GET", url)
        f = next((f for f in forms(resp.text) if "logout" in f["decisions"]), None)
        assert f, f"no logout confirmation ({resp.status_code})"
        resp = self.request("POST", f["action"], f["fields"] + [("decision", "logout")])
        return urljoin(resp.url, resp.headers["Location"]) if resp.is_redirect else None


def relying_party(created, scope="openid email profile"):
    return RelyingParty(
        _NoFramework(),
        name="clef",
        client_id=created["client_id"],
        client_secret=created.get("client_secret"),
        server_metadata_url=ISSUER + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": scope,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )


def code_flow(rp, browser, **params):
    """authlib builds the request (state, nonce, PKCE), exchanges the code, checks the ID token."""
    started = rp.create_authorization_url(CB, **params)
    back = browser.authorize(started["url"])
    q = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    assert q.get("state") == started["state"], "state"
    assert q.get("iss") == ISSUER, "RFC 9207 iss"
    assert "code" in q, f"no code: {q}"
    token = rp.fetch_access_token(CB, code=q["code"], code_verifier=started["code_verifier"])
    claims = rp.parse_id_token(token, nonce=started["nonce"])
    return token, claims, started, q


created = create_client("conformance-authlib", "--redirect-uri", CB, "--post-logout-redirect-uri", LOGGED_OUT)
rp = relying_party(created)
browser = Browser()
state = {}


def logged_in():
    """The first round's tokens; made here when CONF_ONLY left that round out."""
    if "token" not in state:
        token, claims, _s, _q = code_flow(rp, browser)
        state.update(token=token, claims=claims)


@check("oidcc-discovery-endpoint-verification")
def _():
    meta = rp.load_server_metadata()
    assert meta["issuer"] == ISSUER, "issuer"
    for f in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
        assert meta[f].startswith(ISSUER + "/"), f
    assert "S256" in meta["code_challenge_methods_supported"], "S256"
    assert rp.fetch_jwk_set()["keys"], "JWKS"


@check("oidcc-server")
def _():
    token, claims, started, _q = code_flow(rp, browser)
    assert claims["iss"] == ISSUER and claims["aud"] == created["client_id"], "iss/aud"
    assert claims["nonce"] == started["nonce"], "nonce"
    assert "at_hash" in claims, "at_hash (OIDC Core §3.1.3.6)"
    assert claims.get("email") == EMAIL, "email"
    state.update(token=token, claims=claims)


@check("oidcc-server (response_mode=form_post)")
def _():
    logged_in()
    token, claims, _s, _q = code_flow(rp, browser, response_mode="form_post")
    assert claims["sub"] == state["claims"]["sub"], "sub"


@check("oidcc-prompt-none-not-logged-in")
def _():
    started = rp.create_authorization_url(CB, prompt="none")
    q = parse_qs(urlsplit(Browser().authorize(started["url"])).query)
    assert q.get("error") == ["login_required"], q
    assert q.get("state") == [started["state"]], "state"


@check("oidcc-userinfo-get")
def _():
    logged_in()
    info = rp.userinfo(token=state["token"])
    assert info["sub"] == state["claims"]["sub"], "sub"
    assert info["email"] == EMAIL and info["name"] == "Ana Conformance", "claims"


@check("oidcc-refresh-token")
def _():
    logged_in()
    meta = rp.load_server_metadata()
    old = state["token"]
    with rp._get_oauth_client(**meta) as session:
        new = session.refresh_token(meta["token_endpoint"], refresh_token=old["refresh_token"])
    assert new["access_token"] != old["access_token"], "a new access token"
    assert new.get("refresh_token") and new["refresh_token"] != old["refresh_token"], "rotation"
    if "id_token" in new:
        # OIDC Core §12.2: the refreshed ID token SHOULD NOT carry a nonce, and one it
        # carries must be the original's; sub, aud and auth_time stay the same.
        claims = rp.parse_id_token(new, nonce=None)
        assert claims.get("nonce") in (None, state["claims"]["nonce"]), "nonce"
        for c in ("sub", "aud", "auth_time"):
            assert claims.get(c) == state["claims"].get(c), c
    info = rp.userinfo(token=new)
    assert info["sub"] == state["claims"]["sub"], "sub"
    state["token"] = new
    time.sleep(int(os.environ.get("CONF_REFRESH_GRACE_MS", "0")) / 1000)
    # RFC 9700 §4.14.2: the rotated token replayed revokes the family.
    with rp._get_oauth_client(**meta) as session:
        r = session.post(
            meta["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": old["refresh_token"]},
            auth=(created["client_id"], created["client_secret"]),
            withhold_token=True,
        )
    # Only the status and the error code: the body of a success holds live tokens.
    err = r.json().get("error") if r.headers.get("content-type", "").startswith("application/json") else None
    assert r.status_code == 400 and err == "invalid_grant", f"replay answered {r.status_code} {err or ''}"


@check("oidcc-codereuse")
def _():
    started = rp.create_authorization_url(CB)
    q = {k: v[0] for k, v in parse_qs(urlsplit(browser.authorize(started["url"])).query).items()}
    rp.fetch_access_token(CB, code=q["code"], code_verifier=started["code_verifier"])
    try:
        rp.fetch_access_token(CB, code=q["code"], code_verifier=started["code_verifier"])
    except Exception as e:  # authlib raises OAuthError with the RFC 6749 §5.2 code
        assert getattr(e, "error", None) == "invalid_grant", f"expected invalid_grant, got {e!r}"
        return
    raise AssertionError("the code worked twice")


@check("oidcc-rp-initiated-logout")
def _():
    token, _claims, _s, _q = code_flow(rp, browser)
    out = rp.create_logout_url(post_logout_redirect_uri=LOGGED_OUT, id_token_hint=token["id_token"])
    landed = browser.logout(out["url"])
    assert landed, "no redirect after logout"
    u = urlsplit(landed)
    assert f"{u.scheme}://{u.netloc}{u.path}" == LOGGED_OUT, landed
    assert parse_qs(u.query).get("state") == [out["state"]], "state"
    # The session is gone: prompt=none now answers login_required (OIDC Core §3.1.2.6).
    started = rp.create_authorization_url(CB, prompt="none")
    back = browser.authorize(started["url"])
    assert parse_qs(urlsplit(back).query).get("error") == ["login_required"], back


n = {s: sum(r["status"] == s for r in results) for s in ("passed", "failed", "skipped")}
print(f"authlib: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped")
if os.environ.get("CONF_RESULTS"):
    with open(os.environ["CONF_RESULTS"], "a") as f:
        for r in results:
            f.write(json.dumps({"part": "authlib", **r}) + "\n")
sys.exit(1 if n["failed"] else 0)
