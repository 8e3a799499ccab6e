// The plan modules of the OpenID conformance suite, one check each, driven by panva's
// openid-client (a certified RP library) against a live `clef serve`. Each check is named after
// the suite module it mirrors (conformance/README.md lists the plans). A check for a feature the
// discovery document does not advertise is skipped with the reason, so it starts to run as soon
// as the feature lands.
//
// Run by conformance/offline/run, which starts clef and sets CLEF_ISSUER, CLEF_BIN, CONF_EMAIL,
// CONF_PASSWORD and the env clef's CLI needs.

import { execFileSync } from 'node:child_process';
import * as http from 'node:http';
import * as client from 'openid-client';
import * as jose from 'jose';

import { Browser, createClient, env, forms, jwtParts, sleep, unescapeHtml } from './lib.mjs';

const issuer = env.issuer;
const RP = 'http://127.0.0.1/rp';
const CB = `${RP}/cb`;
const LOGGED_OUT = `${RP}/logged-out`;

// ---- the harness -------------------------------------------------------------------------

class Skip extends Error {}
const results = [];
const only = process.env.CONF_ONLY ? new RegExp(process.env.CONF_ONLY) : null;

async function check(name, fn) {
  if (only && !only.test(name)) return;
  const t0 = performance.now();
  try {
    await fn();
    results.push({ name, status: 'passed' });
    console.log(`ok      ${name} (${Math.round(performance.now() - t0)} ms)`);
  } catch (e) {
    if (e instanceof Skip) {
      results.push({ name, status: 'skipped', reason: e.message });
      console.log(`skip    ${name}: ${e.message}`);
    } else {
      results.push({ name, status: 'failed', reason: e.message });
      const code = errorCode(e);
      const detail = code ? ` [${code}${e.error_description ? `: ${e.error_description}` : ''}]` : '';
      console.log(`FAILED  ${name}: ${e.message}${detail}`);
      if (process.env.CONF_VERBOSE) console.log(e.stack);
    }
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
function eq(actual, expected, what) {
  assert(actual === expected, `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}
/** Skips unless discovery advertises `field` (true, or containing `value`). */
function needs(meta, field, value) {
  const v = meta[field];
  const ok = value === undefined ? v === true || (typeof v === 'string' && v.length > 0) : Array.isArray(v) && v.includes(value);
  if (!ok) throw new Skip(`not advertised: ${field}${value === undefined ? '' : ` contains ${value}`}`);
}
/** The OAuth error code of a library error: a JSON body's, or a WWW-Authenticate challenge's. */
function errorCode(e) {
  return e.error ?? e.cause?.[0]?.parameters?.error ?? e.cause?.error;
}
async function rejects(promise, error, what) {
  try {
    await promise;
  } catch (e) {
    if (error === undefined || errorCode(e) === error) return e;
    throw new Error(`${what}: expected ${error}, got ${errorCode(e) ?? e.message}`);
  }
  throw new Error(`${what}: succeeded, expected ${error ?? 'an error'}`);
}

// ---- the relying party -------------------------------------------------------------------

const insecure = { execute: [client.allowInsecureRequests] };

async function rp(created, auth) {
  const secret = created.client_secret;
  const method = auth ?? (secret ? client.ClientSecretBasic(secret) : client.None());
  // A registration response (RFC 7591 §3.2.1) is the client's metadata as the library takes it
  // (userinfo_signed_response_alg, id_token_signed_response_alg, …); the CLI's has a few fields.
  const metadata = Object.fromEntries(Object.entries(created).filter(([k, v]) => v !== null && k !== 'client_id'));
  const config = await client.discovery(new URL(issuer), created.client_id, metadata, method, insecure);
  // OIDC Core §3.1.3.7 lets an RP skip the ID token signature over TLS; check it anyway.
  client.enableNonRepudiationChecks(config);
  return config;
}

/** Starts a code flow with PKCE, S256 (RFC 7636), and returns what the callback needs. */
async function start(config, extra = {}, { nonce = true } = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const p = {
    redirect_uri: CB,
    scope: 'openid',
    state: client.randomState(),
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...extra,
  };
  if (nonce && p.nonce === undefined) p.nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, Object.fromEntries(Object.entries(p).filter(([, v]) => v !== null)));
  return { url: url.href, verifier, state: p.state, nonce: p.nonce ?? undefined };
}

/** The callback: the library checks state, iss (RFC 9207), the code exchange and the ID token. */
async function finish(config, s, back, checks = {}) {
  let current;
  if (back.kind === 'redirect') current = new URL(back.url);
  else if (back.kind === 'form_post') {
    current = new Request(back.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(back.params),
    });
  } else throw new Error(`no answer for the client: ${back.page.status} page at ${back.page.url}`);
  return client.authorizationCodeGrant(config, current, {
    pkceCodeVerifier: s.verifier,
    expectedState: s.state,
    expectedNonce: s.nonce,
    idTokenExpected: true,
    ...checks,
  });
}

async function login(config, browser, extra = {}, opts = {}) {
  const s = await start(config, extra, opts);
  const back = await browser.authorize(s.url, { redirectPrefix: RP, ...opts });
  const tokens = await finish(config, s, back, opts.checks);
  return { s, back, tokens, claims: tokens.claims() };
}

async function userinfo(config, tokens) {
  return client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub);
}

// ---- setup -------------------------------------------------------------------------------

const meta = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const basic = createClient('conformance-basic', [
  '--redirect-uri', CB,
  '--post-logout-redirect-uri', LOGGED_OUT,
]);
const second = createClient('conformance-second', ['--redirect-uri', CB]);
const cfg = await rp(basic);

// One browser that keeps its session across the checks that need one (as the suite's does).
const browser = new Browser();
let first; // the first login: { s, tokens, claims }

// ---- Config OP ---------------------------------------------------------------------------

await check('oidcc-discovery-endpoint-verification (issuer)', async () => {
  // OIDC Discovery §4.3: the issuer in the document equals the one used to fetch it.
  eq(meta.issuer, issuer, 'issuer');
  const m = client.discovery(new URL(issuer), basic.client_id, basic.client_secret, undefined, insecure);
  await m; // the library refuses a mismatched issuer
});

await check('oidcc-discovery-endpoint-verification (required fields)', async () => {
  // OIDC Discovery §3: REQUIRED metadata, and what the Basic profile needs.
  for (const f of ['issuer', 'authorization_endpoint', 'token_endpoint', 'jwks_uri', 'response_types_supported',
    'subject_types_supported', 'id_token_signing_alg_values_supported', 'userinfo_endpoint']) {
    assert(meta[f] !== undefined, `${f} missing`);
  }
  assert(meta.response_types_supported.includes('code'), 'response_types_supported lacks code');
  assert(meta.id_token_signing_alg_values_supported.includes('RS256'), 'RS256 is required (OIDC Core §15.1)');
  assert(Array.isArray(meta.claims_supported) && meta.claims_supported.includes('sub'), 'claims_supported lacks sub');
  for (const f of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint']) {
    assert(meta[f].startsWith(`${issuer}/`), `${f} is not under the issuer`);
  }
});

await check('oidcc-discovery-endpoint-verification (scopes_supported)', async () => {
  assert(meta.scopes_supported.includes('openid'), 'scopes_supported lacks openid');
  for (const s of ['profile', 'email', 'address', 'phone']) assert(meta.scopes_supported.includes(s), `lacks ${s}`);
});

await check('oidcc-discovery-endpoint-verification (jwks_uri)', async () => {
  const resp = await fetch(meta.jwks_uri);
  eq(resp.status, 200, 'status');
  const jwks = await resp.json();
  assert(jwks.keys.length > 0, 'no keys');
  for (const k of jwks.keys) {
    assert(k.kid && k.kty, 'a key without kid or kty');
    for (const p of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) assert(!(p in k), `private member ${p} published`);
    await jose.importJWK(k, k.alg ?? (k.kty === 'RSA' ? 'RS256' : 'ES256'));
  }
  assert(jwks.keys.some((k) => k.kty === 'RSA'), 'no RSA key for RS256');
});

// ---- Basic OP ----------------------------------------------------------------------------

await check('oidcc-server', async () => {
  first = await login(cfg, browser, { scope: 'openid email profile' });
  assert(first.back.sawLogin, 'no login page was shown');
  const c = first.claims;
  eq(c.iss, issuer, 'iss');
  eq(c.aud === basic.client_id || (Array.isArray(c.aud) && c.aud.includes(basic.client_id)), true, 'aud has client_id');
  assert(typeof c.sub === 'string' && c.sub.length > 0, 'sub');
  assert(typeof c.auth_time === 'number', 'auth_time');
  eq(first.back.params.iss, issuer, 'RFC 9207 iss on the redirect');
  eq(first.tokens.token_type.toLowerCase(), 'bearer', 'token_type');
});

// The checks below reuse that login's session; under CONF_ONLY it may not have run.
if (!first) first = await login(cfg, browser, { scope: 'openid email profile' }).catch(() => undefined);

await check('oidcc-idtoken-signature', async () => {
  const { header } = jwtParts(first.tokens.id_token);
  assert(header.kid, 'ID token without kid');
  const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  await jose.jwtVerify(first.tokens.id_token, jwks, { issuer, audience: basic.client_id });
});

await check('oidcc-idtoken-unsigned', async () => {
  needs(meta, 'id_token_signing_alg_values_supported', 'none');
  throw new Error('alg none is advertised; clef signs every ID token (write this check with the client setting)');
});

await check('oidcc-response-type-missing', async () => {
  const s = await start(cfg, { response_type: null });
  const u = new URL(s.url);
  u.searchParams.delete('response_type');
  const back = await new Browser().authorize(u.href, { redirectPrefix: RP });
  eq(back.kind, 'redirect', 'answer');
  eq(back.params.error, 'invalid_request', 'error');
  eq(back.params.state, s.state, 'state');
});

await check('oidcc-userinfo-get', async () => {
  const info = await userinfo(cfg, first.tokens);
  eq(info.sub, first.claims.sub, 'sub');
});

await check('oidcc-userinfo-post-header', async () => {
  const resp = await client.fetchProtectedResource(cfg, first.tokens.access_token, new URL(meta.userinfo_endpoint), 'POST');
  eq(resp.status, 200, 'status');
  eq((await resp.json()).sub, first.claims.sub, 'sub');
});

await check('oidcc-userinfo-post-body', async () => {
  // RFC 6750 §2.2: the token in a form body.
  const resp = await fetch(meta.userinfo_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ access_token: first.tokens.access_token }),
  });
  eq(resp.status, 200, 'status');
  eq((await resp.json()).sub, first.claims.sub, 'sub');
});

await check('oidcc-ensure-request-without-nonce-succeeds-for-code-flow', async () => {
  const r = await login(cfg, browser, {}, { nonce: false });
  eq(r.claims.nonce, undefined, 'nonce');
});

for (const [scope, claim] of [['profile', 'name'], ['email', 'email'], ['address', 'address'], ['phone', 'phone_number']]) {
  await check(`oidcc-scope-${scope}`, async () => {
    const r = await login(cfg, browser, { scope: `openid ${scope}` });
    assert(r.tokens.scope.split(' ').includes(scope), `granted scope lacks ${scope}`);
    const info = await userinfo(cfg, r.tokens);
    assert(info[claim] !== undefined, `userinfo lacks ${claim}`);
  });
}

await check('oidcc-scope-all', async () => {
  const r = await login(cfg, browser, { scope: 'openid profile email address phone' });
  const info = await userinfo(cfg, r.tokens);
  for (const c of ['name', 'email', 'email_verified', 'address', 'phone_number']) assert(info[c] !== undefined, `lacks ${c}`);
});

await check('oidcc-ensure-other-scope-order-succeeds', async () => {
  const r = await login(cfg, browser, { scope: 'email openid' });
  assert(r.tokens.scope.split(' ').includes('email'), 'email not granted');
});

for (const display of ['page', 'popup']) {
  await check(`oidcc-display-${display}`, async () => {
    await login(cfg, browser, { display });
  });
}

await check('oidcc-prompt-login', async () => {
  await sleep(1100); // auth_time has a one-second grain
  const r = await login(cfg, browser, { prompt: 'login' });
  assert(r.back.sawLogin, 'prompt=login did not show the login page');
  assert(r.claims.auth_time > first.claims.auth_time, 'auth_time did not move on');
  first = { ...first, claims: r.claims, tokens: r.tokens };
});

await check('oidcc-prompt-none-not-logged-in', async () => {
  const s = await start(cfg, { prompt: 'none' });
  const back = await new Browser().authorize(s.url, { redirectPrefix: RP, login: false });
  eq(back.kind, 'redirect', 'answer');
  eq(back.params.error, 'login_required', 'error');
  eq(back.params.state, s.state, 'state');
});

await check('oidcc-prompt-none-logged-in', async () => {
  const r = await login(cfg, browser, { prompt: 'none' }, { login: false, consent: null });
  assert(!r.back.sawLogin && !r.back.sawConsent, 'a page was shown under prompt=none');
  eq(r.claims.sub, first.claims.sub, 'sub');
});

await check('oidcc-max-age-1', async () => {
  // As the suite does: auth_time has a one-second grain and the elapsed time must be
  // greater than max_age (OIDC Core §3.1.2.1), so 2 s.
  await sleep(2000);
  const r = await login(cfg, browser, { max_age: '1' }, { checks: { maxAge: 1 } });
  assert(r.back.sawLogin, 'max_age=1 after 2 s did not ask for a login');
  assert(r.claims.auth_time > first.claims.auth_time, 'auth_time is not fresh');
  first = { ...first, claims: r.claims, tokens: r.tokens };
});

await check('oidcc-max-age-10000', async () => {
  const r = await login(cfg, browser, { max_age: '10000' }, { checks: { maxAge: 10000 } });
  assert(!r.back.sawLogin, 'max_age=10000 asked for a login');
  eq(r.claims.auth_time, first.claims.auth_time, 'auth_time');
});

await check('oidcc-ensure-request-with-unknown-parameter-succeeds', async () => {
  await login(cfg, browser, { extra_param: 'foobar' });
});

await check('oidcc-id-token-hint', async () => {
  const r = await login(cfg, browser, { prompt: 'none', id_token_hint: first.tokens.id_token }, { login: false, consent: null });
  eq(r.claims.sub, first.claims.sub, 'sub');
});

await check('oidcc-login-hint', async () => {
  const b = new Browser();
  const s = await start(cfg, { login_hint: env.email });
  const back = await b.authorize(s.url, { redirectPrefix: RP });
  const f = forms(back.loginPage.body).find((x) => x.fields.some(([n]) => n === 'email'));
  eq(f.fields.find(([n]) => n === 'email')[1], env.email, 'the email field is filled from login_hint');
  await finish(cfg, s, back);
});

await check('oidcc-ui-locales', async () => {
  const b = new Browser();
  const s = await start(cfg, { ui_locales: 'fr-CA fr en' });
  const back = await b.authorize(s.url, { redirectPrefix: RP });
  assert(/<html[^>]*\blang="fr"/.test(back.loginPage.body), 'the login page is not in French');
  await finish(cfg, s, back);
});

await check('oidcc-claims-locales', async () => {
  const r = await login(cfg, browser, { claims_locales: 'fr en', scope: 'openid profile' });
  await userinfo(cfg, r.tokens);
});

await check('oidcc-ensure-request-with-acr-values-succeeds', async () => {
  // The suite sends values of its own; OIDC Core §3.1.2.1 makes acr_values voluntary.
  const r = await login(cfg, browser, { acr_values: '1 2' });
  assert(typeof r.claims.acr === 'string', 'ID token without acr');
  const supported = meta.acr_values_supported ?? [];
  if (supported.length) {
    const r2 = await login(cfg, browser, { acr_values: supported[0] });
    eq(r2.claims.acr, supported[0], 'acr for a supported value');
  }
});

await check('oidcc-codereuse', async () => {
  const s = await start(cfg);
  const back = await browser.authorize(s.url, { redirectPrefix: RP });
  await finish(cfg, s, back);
  await rejects(finish(cfg, s, back), 'invalid_grant', 'second use of the code');
});

await check('oidcc-codereuse-30seconds', async () => {
  // The suite waits 30 s; what it checks is that the reuse revokes what the code gave
  // (RFC 6749 §4.1.2: SHOULD revoke), so the wait is left out.
  const s = await start(cfg, { scope: 'openid email' });
  const back = await browser.authorize(s.url, { redirectPrefix: RP });
  const tokens = await finish(cfg, s, back);
  await rejects(finish(cfg, s, back), 'invalid_grant', 'second use of the code');
  await rejects(client.fetchUserInfo(cfg, tokens.access_token, tokens.claims().sub), 'invalid_token', 'access token after reuse');
  if (tokens.refresh_token) {
    await rejects(client.refreshTokenGrant(cfg, tokens.refresh_token), 'invalid_grant', 'refresh token after reuse');
  }
});

await check('oidcc-ensure-registered-redirect-uri', async () => {
  const s = await start(cfg, { redirect_uri: 'http://127.0.0.1/not-registered/cb' });
  const back = await new Browser().authorize(s.url, { redirectPrefix: 'http://127.0.0.1/not-registered' });
  eq(back.kind, 'page', 'answer (RFC 6749 §4.1.2.1: no redirect to an unregistered URI)');
  assert(back.page.status >= 400, `status ${back.page.status}`);
});

await check('oidcc-ensure-redirect-uri-in-authorization-request', async () => {
  const s = await start(cfg);
  const u = new URL(s.url);
  u.searchParams.delete('redirect_uri');
  const back = await new Browser().authorize(u.href, { redirectPrefix: RP });
  eq(back.kind, 'page', 'answer (OIDC Core §3.1.2.1: redirect_uri is required)');
  assert(back.page.status >= 400, `status ${back.page.status}`);
});

await check('oidcc-ensure-post-request-succeeds', async () => {
  // OIDC Core §3.1.2.1: the authorization endpoint takes POST too.
  const s = await start(cfg);
  const u = new URL(s.url);
  const b = new Browser();
  const first = await b.post(meta.authorization_endpoint, [...u.searchParams]);
  assert(first.status >= 300 && first.status < 400, `POST /authorize answered ${first.status}`);
  const back = await b.authorize(b.abs(first.location), { redirectPrefix: RP });
  await finish(cfg, s, back);
});

await check('oidcc-ensure-request-with-valid-pkce-succeeds', async () => {
  const r = await login(cfg, browser);
  assert(r.tokens.access_token, 'no access token');
  // And a wrong verifier is refused (RFC 7636 §4.6).
  const s = await start(cfg);
  const back = await browser.authorize(s.url, { redirectPrefix: RP });
  await rejects(finish(cfg, { ...s, verifier: client.randomPKCECodeVerifier() }, back), 'invalid_grant', 'wrong code_verifier');
});

await check('oidcc-server-client-secret-post', async () => {
  const post = createClient('conformance-post', ['--redirect-uri', CB]);
  const c = await rp(post, client.ClientSecretPost(post.client_secret));
  await login(c, browser);
});

await check('oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported', async () => {
  const s = await start(cfg);
  const u = new URL(s.url);
  const claims = Object.fromEntries(u.searchParams);
  const ro = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ ...claims, iss: basic.client_id, aud: issuer })).toString('base64url')}.`;
  const q = new URLSearchParams({ client_id: basic.client_id, response_type: 'code', scope: 'openid', redirect_uri: CB, state: s.state, request: ro });
  const back = await browser.authorize(`${meta.authorization_endpoint}?${q}`, { redirectPrefix: RP });
  if (meta.request_parameter_supported === true) {
    await finish(cfg, s, back);
  } else {
    // OIDC Core §6.1: an OP that does not support request objects answers request_not_supported.
    eq(back.kind, 'redirect', 'answer');
    eq(back.params.error, 'request_not_supported', 'error');
    eq(back.params.state, s.state, 'state');
  }
});

await check('oidcc-request-uri-unsigned-supported-correctly-or-rejected-as-unsupported', async () => {
  const s = await start(cfg);
  const q = new URLSearchParams({ client_id: basic.client_id, response_type: 'code', scope: 'openid', redirect_uri: CB, state: s.state, request_uri: 'http://127.0.0.1/rp/request.jwt' });
  const back = await browser.authorize(`${meta.authorization_endpoint}?${q}`, { redirectPrefix: RP });
  if (meta.request_uri_parameter_supported !== true) {
    eq(back.kind, 'redirect', 'answer');
    eq(back.params.error, 'request_uri_not_supported', 'error');
    return;
  }
  // OIDC Core §6.2: an unsigned object served by the RP (a loopback listener, on the host of
  // the redirect URI as clef requires), fetched by clef, and the flow completes.
  const u = new URL(s.url);
  const ro = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(Object.fromEntries(u.searchParams))).toString('base64url')}.`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/oauth-authz-req+jwt' });
    res.end(ro);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  try {
    const ref = new URLSearchParams({ client_id: basic.client_id, response_type: 'code', scope: 'openid', request_uri: `http://127.0.0.1:${server.address().port}/request.jwt` });
    const back2 = await browser.authorize(`${meta.authorization_endpoint}?${ref}`, { redirectPrefix: RP });
    await finish(cfg, s, back2);
  } finally {
    server.close();
  }
});

await check('oidcc-ensure-request-object-with-redirect-uri', async () => {
  needs(meta, 'request_parameter_supported');
  // OIDC Core §6.3.1: the request object's values win over the query's.
  const s = await start(cfg);
  const u = new URL(s.url);
  const claims = { ...Object.fromEntries(u.searchParams), iss: basic.client_id, aud: issuer };
  const ro = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
  const q = new URLSearchParams({ client_id: basic.client_id, response_type: 'code', scope: 'openid', redirect_uri: 'http://127.0.0.1/elsewhere', request: ro });
  const back = await browser.authorize(`${meta.authorization_endpoint}?${q}`, { redirectPrefix: RP });
  await finish(cfg, s, back);
});

await check('oidcc-claims-essential', async () => {
  needs(meta, 'claims_parameter_supported');
  const r = await login(cfg, browser, { claims: JSON.stringify({ userinfo: { name: { essential: true } } }) });
  const info = await userinfo(cfg, r.tokens);
  assert(typeof info.name === 'string', 'userinfo lacks the essential name claim');
});

await check('oidcc-refresh-token', async () => {
  const r = await login(cfg, browser, { scope: 'openid email' });
  assert(r.tokens.refresh_token, 'no refresh token');
  const next = await client.refreshTokenGrant(cfg, r.tokens.refresh_token);
  assert(next.access_token && next.access_token !== r.tokens.access_token, 'no new access token');
  if (next.id_token) eq(next.claims().sub, r.claims.sub, 'sub of the refreshed ID token');
  await client.fetchUserInfo(cfg, next.access_token, r.claims.sub);
  assert(next.refresh_token && next.refresh_token !== r.tokens.refresh_token, 'the refresh token was not rotated');
  // RFC 9700 §4.14.2: a rotated token used again revokes the family.
  await sleep(Number(process.env.CONF_REFRESH_GRACE_MS ?? 0));
  await rejects(client.refreshTokenGrant(cfg, r.tokens.refresh_token), 'invalid_grant', 'reuse of the old refresh token');
  await rejects(client.refreshTokenGrant(cfg, next.refresh_token), 'invalid_grant', 'its successor after the reuse');
  // A refresh token is bound to its client (RFC 6749 §6).
  const r2 = await login(cfg, browser);
  const other = await rp(second);
  await rejects(client.refreshTokenGrant(other, r2.tokens.refresh_token), 'invalid_grant', 'another client\'s refresh token');
});

await check('oidcc-refresh-token-rp-key-rotation', async () => {
  needs(meta, 'token_endpoint_auth_methods_supported', 'private_key_jwt');
  needs(meta, 'registration_endpoint');
  throw new Skip('n/a offline: the suite rotates the keys at the RP\'s hosted jwks_uri between two refreshes');
});

// ---- Form Post OP ------------------------------------------------------------------------

await check('oidcc-server (response_mode=form_post)', async () => {
  const s = await start(cfg, { response_mode: 'form_post' });
  const back = await browser.authorize(s.url, { redirectPrefix: RP });
  eq(back.kind, 'form_post', 'answer (OAuth 2.0 Form Post Response Mode §2)');
  eq(back.url, CB, 'the form posts to the redirect_uri');
  eq(back.params.state, s.state, 'state');
  const tokens = await finish(cfg, s, back);
  eq(tokens.claims().nonce, s.nonce, 'nonce');
});

await check('oidcc-prompt-none-not-logged-in (response_mode=form_post)', async () => {
  const s = await start(cfg, { response_mode: 'form_post', prompt: 'none' });
  const back = await new Browser().authorize(s.url, { redirectPrefix: RP, login: false });
  eq(back.kind, 'form_post', 'answer');
  eq(back.params.error, 'login_required', 'error');
  eq(back.params.state, s.state, 'state');
});

await check('oidcc-response-type-missing (response_mode=form_post)', async () => {
  const s = await start(cfg, { response_mode: 'form_post' });
  const u = new URL(s.url);
  u.searchParams.delete('response_type');
  const back = await new Browser().authorize(u.href, { redirectPrefix: RP });
  eq(back.kind, 'form_post', 'answer');
  eq(back.params.error, 'invalid_request', 'error');
});

// ---- RP-Initiated Logout OP --------------------------------------------------------------

/** A fresh browser with a session at clef and the ID token of that login. */
async function loggedIn(config = cfg) {
  const b = new Browser();
  const r = await login(config, b);
  return { b, ...r };
}
async function stillLoggedIn(b) {
  const s = await start(cfg, { prompt: 'none' });
  const back = await b.authorize(s.url, { redirectPrefix: RP, login: false, consent: null });
  return back.kind === 'redirect' && back.params.code !== undefined;
}

await check('oidcc-rp-initiated-logout-discovery-endpoint-verification', async () => {
  assert(meta.end_session_endpoint?.startsWith(`${issuer}/`), 'end_session_endpoint');
});

await check('oidcc-rp-initiated-logout', async () => {
  const { b, tokens } = await loggedIn();
  const state = client.randomState();
  const url = client.buildEndSessionUrl(cfg, { id_token_hint: tokens.id_token, post_logout_redirect_uri: LOGGED_OUT, state });
  const out = await b.logout(url.href);
  eq(out.kind, 'redirect', 'answer');
  const u = new URL(out.url);
  eq(`${u.origin}${u.pathname}`, LOGGED_OUT, 'post_logout_redirect_uri');
  eq(u.searchParams.get('state'), state, 'state');
  assert(!(await stillLoggedIn(b)), 'the session survived the logout');
});

await check('oidcc-rp-initiated-logout-bad-post-logout-redirect-uri', async () => {
  const { b, tokens } = await loggedIn();
  const url = client.buildEndSessionUrl(cfg, { id_token_hint: tokens.id_token, post_logout_redirect_uri: `${RP}/not-registered` });
  const out = await b.logout(url.href);
  eq(out.kind, 'page', 'answer (no redirect to an unregistered URI)');
  assert(out.page.status >= 400, `status ${out.page.status}`);
});

await check('oidcc-rp-initiated-logout-query-added-to-post-logout-redirect-uri', async () => {
  const { b, tokens } = await loggedIn();
  const url = client.buildEndSessionUrl(cfg, { id_token_hint: tokens.id_token, post_logout_redirect_uri: `${LOGGED_OUT}?foo=bar` });
  const out = await b.logout(url.href);
  eq(out.kind, 'page', 'answer (exact match, OIDC RP-Initiated Logout §3)');
  assert(out.page.status >= 400, `status ${out.page.status}`);
});

await check('oidcc-rp-initiated-logout-modified-id-token-hint', async () => {
  const { b, tokens } = await loggedIn();
  const [h, p, sig] = tokens.id_token.split('.');
  const flipped = sig.slice(0, -2) + (sig.at(-2) === 'A' ? 'B' : 'A') + sig.at(-1);
  const url = client.buildEndSessionUrl(cfg, { id_token_hint: `${h}.${p}.${flipped}`, post_logout_redirect_uri: LOGGED_OUT });
  const out = await b.logout(url.href);
  eq(out.kind, 'page', 'answer');
  assert(out.page.status >= 400, `status ${out.page.status}`);
  assert(await stillLoggedIn(b), 'a forged hint logged the user out');
});

await check('oidcc-rp-initiated-logout-bad-id-token-hint', async () => {
  // An ID token of another client, with this client's client_id (RP-Initiated Logout §2).
  const { b } = await loggedIn();
  const other = await rp(second);
  const r2 = await login(other, b);
  const q = new URLSearchParams({ id_token_hint: r2.tokens.id_token, client_id: basic.client_id, post_logout_redirect_uri: LOGGED_OUT });
  const out = await b.logout(`${meta.end_session_endpoint}?${q}`);
  eq(out.kind, 'page', 'answer');
  assert(out.page.status >= 400, `status ${out.page.status}`);
});

await check('oidcc-rp-initiated-logout-no-id-token-hint', async () => {
  const { b } = await loggedIn();
  const q = new URLSearchParams({ post_logout_redirect_uri: LOGGED_OUT, state: 'xyz' });
  const out = await b.logout(`${meta.end_session_endpoint}?${q}`);
  eq(out.kind, 'page', 'answer (the OP must not redirect without an id_token_hint)');
});

await check('oidcc-rp-initiated-logout-no-params', async () => {
  const { b } = await loggedIn();
  const out = await b.logout(meta.end_session_endpoint);
  eq(out.kind, 'page', 'answer');
  eq(out.page.status, 200, 'status');
  assert(out.confirmed, 'no confirmation form');
  assert(!(await stillLoggedIn(b)), 'the session survived the logout');
});

await check('oidcc-rp-initiated-logout-no-post-logout-redirect-uri', async () => {
  const { b, tokens } = await loggedIn();
  const url = client.buildEndSessionUrl(cfg, { id_token_hint: tokens.id_token });
  const out = await b.logout(url.href);
  eq(out.kind, 'page', 'answer');
  eq(out.page.status, 200, 'status');
  assert(!(await stillLoggedIn(b)), 'the session survived the logout');
});

await check('oidcc-rp-initiated-logout-no-state', async () => {
  const { b, tokens } = await loggedIn();
  const url = client.buildEndSessionUrl(cfg, { id_token_hint: tokens.id_token, post_logout_redirect_uri: LOGGED_OUT });
  const out = await b.logout(url.href);
  eq(out.kind, 'redirect', 'answer');
  eq(new URL(out.url).searchParams.get('state'), null, 'state');
});

await check('oidcc-rp-initiated-logout-only-state', async () => {
  const { b, tokens } = await loggedIn();
  const url = client.buildEndSessionUrl(cfg, { id_token_hint: tokens.id_token, state: 'only-state' });
  const out = await b.logout(url.href);
  eq(out.kind, 'page', 'answer (nowhere to send state without post_logout_redirect_uri)');
  assert(!(await stillLoggedIn(b)), 'the session survived the logout');
});

// ---- Back-Channel Logout OP --------------------------------------------------------------

/** A loopback listener for logout tokens (OIDC Back-Channel Logout 1.0 §2.5). */
async function logoutListener() {
  const received = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, type: req.headers['content-type'], body });
      res.writeHead(200, { 'cache-control': 'no-store' }).end();
      waiters.splice(0).forEach((w) => w());
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/backchannel-logout`;
  const next = async (ms) => {
    const until = Date.now() + ms;
    while (!received.length && Date.now() < until) {
      await Promise.race([new Promise((r) => waiters.push(r)), sleep(Math.max(0, until - Date.now()))]);
    }
    return received.shift();
  };
  return { url, next, close: () => server.close() };
}

await check('oidcc-backchannel-logout-discovery-endpoint-verification', async () => {
  needs(meta, 'backchannel_logout_supported');
  assert(typeof meta.backchannel_logout_session_supported === 'boolean', 'backchannel_logout_session_supported');
});

await check('oidcc-backchannel-rp-initiated-logout', async () => {
  needs(meta, 'backchannel_logout_supported');
  const listener = await logoutListener();
  try {
    // Back-Channel Logout §2.2: the client registers where its logout tokens go, by the CLI,
    // or by registration metadata when the CLI has no such flag.
    let bcl;
    try {
      bcl = createClient('conformance-bcl', [
        '--redirect-uri', CB,
        '--post-logout-redirect-uri', LOGGED_OUT,
        '--backchannel-logout-uri', listener.url,
      ]);
    } catch (e) {
      if (!meta.registration_endpoint) throw new Error(`clients create --backchannel-logout-uri failed: ${e.stderr ?? e.message}`);
      const r = await register({ post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: listener.url, backchannel_logout_session_required: true });
      eq(r.status, 201, 'registration with backchannel_logout_uri');
      bcl = r.body;
    }
    const c = await rp(bcl);
    const { b, tokens, claims } = await loggedIn(c);
    if (meta.backchannel_logout_session_supported) assert(claims.sid, 'ID token without sid (Back-Channel Logout §2.1)');
    const state = client.randomState();
    const out = await b.logout(client.buildEndSessionUrl(c, { id_token_hint: tokens.id_token, post_logout_redirect_uri: LOGGED_OUT, state }).href);
    eq(out.kind, 'redirect', 'answer');
    eq(new URL(out.url).searchParams.get('state'), state, 'state on the post-logout redirect');
    const got = await listener.next(15_000);
    assert(got, 'no logout token within 15 s');
    eq(got.method, 'POST', 'method');
    assert(got.type?.startsWith('application/x-www-form-urlencoded'), `content-type ${got.type}`);
    const token = new URLSearchParams(got.body).get('logout_token');
    assert(token, 'no logout_token in the body');
    const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, { issuer, audience: bcl.client_id, typ: 'logout+jwt' });
    // Back-Channel Logout §2.4 and §2.6.
    assert(payload.iat && payload.jti, 'iat and jti');
    assert(payload.events?.['http://schemas.openid.net/event/backchannel-logout'] !== undefined, 'events');
    assert(payload.sub || payload.sid, 'sub or sid');
    assert(!('nonce' in payload), 'a logout token carries no nonce');
    if (payload.sid && claims.sid) eq(payload.sid, claims.sid, 'sid');
    if (payload.sub) eq(payload.sub, claims.sub, 'sub');
    assert(protectedHeader.alg !== 'none', 'alg');
    // And the session is gone, as the suite checks with prompt=none.
    assert(!(await stillLoggedIn(b)), 'the session survived the logout');
  } finally {
    listener.close();
  }
});

// ---- Dynamic OP --------------------------------------------------------------------------

// The redirect_uri query modules need a client registered with a query; the CLI makes one.
const QUERY_CB = `${CB}?foo=bar`;
const withQuery = createClient('conformance-query', ['--redirect-uri', QUERY_CB]);
const queryCfg = await rp(withQuery);

await check('oidcc-redirect-uri-query-ok', async () => {
  // RFC 6749 §3.1.2: the registered query is kept and the response's parameters added to it.
  const s = await start(queryCfg, { redirect_uri: QUERY_CB });
  const back = await browser.authorize(s.url, { redirectPrefix: RP });
  eq(back.kind, 'redirect', 'answer');
  eq(back.params.foo, 'bar', 'the registered query');
  eq(back.params.state, s.state, 'state');
  // openid-client sends the callback URL less its whole query as redirect_uri, so this one
  // exchange is made by hand, with the registered URI (RFC 6749 §4.1.3).
  const resp = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${withQuery.client_id}:${withQuery.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: back.params.code, redirect_uri: QUERY_CB, code_verifier: s.verifier }),
  });
  eq(resp.status, 200, 'token endpoint status');
  const tokens = await resp.json();
  const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  const { payload } = await jose.jwtVerify(tokens.id_token, jwks, { issuer, audience: withQuery.client_id });
  eq(payload.nonce, s.nonce, 'nonce');
});

await check('oidcc-redirect-uri-query-mismatch', async () => {
  const s = await start(queryCfg, { redirect_uri: `${CB}?foo=zot` });
  const back = await new Browser().authorize(s.url, { redirectPrefix: RP });
  eq(back.kind, 'page', 'answer (exact match, OIDC Core §3.1.2.1)');
  assert(back.page.status >= 400, `status ${back.page.status}`);
});

await check('oidcc-redirect-uri-query-added', async () => {
  const s = await start(cfg, { redirect_uri: `${CB}?foo=bar` });
  const back = await new Browser().authorize(s.url, { redirectPrefix: RP });
  eq(back.kind, 'page', 'answer (exact match)');
  assert(back.page.status >= 400, `status ${back.page.status}`);
});

async function register(metadata) {
  const resp = await fetch(meta.registration_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(process.env.CONF_REGISTRATION_TOKEN ? { authorization: `Bearer ${process.env.CONF_REGISTRATION_TOKEN}` } : {}) },
    body: JSON.stringify({ redirect_uris: [CB], ...metadata }),
  });
  return { status: resp.status, body: await resp.json() };
}

await check('oidcc-registration (oidcc-server, dynamic_client)', async () => {
  needs(meta, 'registration_endpoint');
  const r = await register({ client_name: 'conformance-dynamic', token_endpoint_auth_method: 'client_secret_basic' });
  eq(r.status, 201, 'status (RFC 7591 §3.2.1)');
  const c = await rp(r.body);
  await login(c, new Browser());
});

for (const [module, field] of [['oidcc-registration-logo-uri', 'logo_uri'], ['oidcc-registration-policy-uri', 'policy_uri'], ['oidcc-registration-tos-uri', 'tos_uri']]) {
  await check(module, async () => {
    needs(meta, 'registration_endpoint');
    const value = `https://rp.example.test/${field}`;
    const r = await register({ client_name: `conformance-${field}`, [field]: value });
    eq(r.status, 201, 'status');
    const c = await rp(r.body);
    const s = await start(c);
    const back = await new Browser().authorize(s.url, { redirectPrefix: RP, login: false });
    // The page escapes '/' (minijinja), so compare with the text the browser shows.
    assert(unescapeHtml(back.page.body).includes(value), `the login page does not show ${field}`);
  });
}

await check('oidcc-redirect-uri-regfrag', async () => {
  needs(meta, 'registration_endpoint');
  const r = await register({ redirect_uris: [`${CB}#frag`] });
  eq(r.status, 400, 'status');
  eq(r.body.error, 'invalid_redirect_uri', 'error (RFC 7591 §3.2.2)');
});

/** Serves a sector_identifier_uri document (OIDC Registration §5) on loopback. */
async function sectorDocument(uris) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(uris));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { uri: `http://127.0.0.1:${server.address().port}/sector.json`, close: () => server.close() };
}

await check('oidcc-registration-sector-bad', async () => {
  needs(meta, 'subject_types_supported', 'pairwise');
  needs(meta, 'registration_endpoint');
  // OIDC Registration §5: every redirect URI must be in the sector document; this one lacks CB.
  const doc = await sectorDocument(['http://127.0.0.1/somewhere-else/cb']);
  try {
    const r = await register({ subject_type: 'pairwise', sector_identifier_uri: doc.uri });
    eq(r.status, 400, 'status');
    eq(r.body.error, 'invalid_client_metadata', 'error');
  } finally {
    doc.close();
  }
});

/** Registers a pairwise client and returns the sub it sees for the test user. */
async function pairwiseSub(redirects, extra = {}) {
  const r = await register({ redirect_uris: redirects, subject_type: 'pairwise', ...extra });
  eq(r.status, 201, `registration of a pairwise client (${r.body.error_description ?? ''})`);
  const c = await rp(r.body);
  const s = await start(c, { redirect_uri: redirects[0] });
  const back = await browser.authorize(s.url, { redirectPrefix: redirects[0] });
  return (await finish(c, s, back)).claims().sub;
}

await check('oidcc-registration-pairwise (sectors of the redirect hosts)', async () => {
  needs(meta, 'subject_types_supported', 'pairwise');
  needs(meta, 'registration_endpoint');
  // OIDC Core §8.1: without a sector_identifier_uri the sector is the redirect URI's host, so
  // two clients on one host see one sub and a client on another host another.
  const a = await pairwiseSub(['http://127.0.0.1/pairwise-a/cb']);
  const a2 = await pairwiseSub(['http://127.0.0.1/pairwise-a2/cb']);
  const b = await pairwiseSub(['http://localhost/pairwise-b/cb']);
  eq(a2, a, 'sub within one sector');
  assert(a !== b, 'the same sub in two sectors');
  assert(a !== first.claims.sub, 'a pairwise sub equal to the public one');
});

await check('oidcc-registration-sector-uri', async () => {
  needs(meta, 'subject_types_supported', 'pairwise');
  needs(meta, 'registration_endpoint');
  // Redirect URIs on two hosts, one sector: the sector_identifier_uri's host (OIDC Core §8.1),
  // here 127.0.0.1, so the sub is the one a pairwise client on 127.0.0.1 sees. clef fetches a
  // plain-http sector document only on loopback, when it runs on loopback itself.
  const redirects = ['http://localhost/sector-c/cb', 'http://127.0.0.1/sector-c/cb'];
  const doc = await sectorDocument(redirects);
  try {
    const viaSector = await pairwiseSub(redirects, { sector_identifier_uri: doc.uri });
    const onHost = await pairwiseSub(['http://127.0.0.1/pairwise-d/cb']);
    eq(viaSector, onHost, "sub of the sector_identifier_uri's host");
  } finally {
    doc.close();
  }
});

/** An RSA key for private_key_jwt (RFC 7523 §2.2), its public JWKS, and a loopback jwks_uri. */
async function clientKeys() {
  const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), alg: 'RS256', use: 'sig', kid: 'conformance-1' };
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { privateKey, jwks: { keys: [jwk] }, uri: `http://127.0.0.1:${server.address().port}/jwks`, close: () => server.close() };
}

await check('oidcc-registration-jwks (private_key_jwt)', async () => {
  needs(meta, 'token_endpoint_auth_methods_supported', 'private_key_jwt');
  needs(meta, 'registration_endpoint');
  const keys = await clientKeys();
  try {
    const r = await register({ token_endpoint_auth_method: 'private_key_jwt', jwks: keys.jwks, grant_types: ['authorization_code', 'refresh_token'] });
    eq(r.status, 201, 'status');
    const c = await rp(r.body, client.PrivateKeyJwt({ key: keys.privateKey, kid: 'conformance-1' }));
    const { tokens } = await login(c, new Browser());
    await client.refreshTokenGrant(c, tokens.refresh_token);
  } finally {
    keys.close();
  }
});

await check('oidcc-registration-jwks-uri', async () => {
  needs(meta, 'token_endpoint_auth_methods_supported', 'private_key_jwt');
  needs(meta, 'registration_endpoint');
  const keys = await clientKeys();
  try {
    const r = await register({ token_endpoint_auth_method: 'private_key_jwt', jwks_uri: keys.uri });
    eq(r.status, 201, 'status');
    const c = await rp(r.body, client.PrivateKeyJwt({ key: keys.privateKey, kid: 'conformance-1' }));
    await login(c, new Browser());
  } finally {
    keys.close();
  }
});

await check('oidcc-userinfo-rs256', async () => {
  needs(meta, 'userinfo_signing_alg_values_supported', 'RS256');
  needs(meta, 'registration_endpoint');
  const r = await register({ userinfo_signed_response_alg: 'RS256' });
  eq(r.status, 201, 'status');
  const c = await rp(r.body);
  const { tokens, claims } = await login(c, new Browser());
  const info = await client.fetchUserInfo(c, tokens.access_token, claims.sub);
  eq(info.sub, claims.sub, 'sub of the signed userinfo');
});

await check('oidcc-idtoken-rs256', async () => {
  needs(meta, 'registration_endpoint');
  const r = await register({ id_token_signed_response_alg: 'RS256' });
  eq(r.status, 201, 'status');
  const c = await rp(r.body);
  const { tokens } = await login(c, new Browser());
  eq(jwtParts(tokens.id_token).header.alg, 'RS256', 'alg');
});

// ---- slow modules (CONF_SLOW=1), last: they rotate keys and wait -------------------------

const slow = () => {
  if (!process.env.CONF_SLOW) throw new Skip('slow (30 s): set CONF_SLOW=1 to run it');
};

await check('oidcc-codereuse-30seconds (with the wait)', async () => {
  slow();
  const s = await start(cfg, { scope: 'openid email' });
  const back = await browser.authorize(s.url, { redirectPrefix: RP });
  const tokens = await finish(cfg, s, back);
  await sleep(30_000);
  await rejects(finish(cfg, s, back), 'invalid_grant', 'second use of the code after 30 s');
  await rejects(client.fetchUserInfo(cfg, tokens.access_token, tokens.claims().sub), 'invalid_token', 'access token after reuse');
});

await check('oidcc-server-rotate-keys', async () => {
  slow();
  // The operator rotates (README "Commands"); running servers switch within 30 s. The RP
  // finds the new kid by fetching the JWKS again (OIDC Core §10.1.1).
  const before = jwtParts((await login(cfg, browser)).tokens.id_token).header.kid;
  execFileSync(env.clef, ['keys', 'rotate'], { env: process.env, stdio: 'ignore', timeout: 20_000 });
  let kid = before;
  for (let i = 0; i < 20 && kid === before; i++) {
    await sleep(2000);
    // A fresh RP each time: openid-client re-fetches a JWKS for an unknown kid only after a
    // cool-down, and what is checked here is the server's switch.
    kid = jwtParts((await login(await rp(basic), browser)).tokens.id_token).header.kid;
  }
  assert(kid !== before, 'the ID tokens are still signed with the old key after 40 s');
  const jwks = await (await fetch(meta.jwks_uri)).json();
  assert(jwks.keys.some((k) => k.kid === before), 'the old key left the JWKS while its tokens live');
});

// ---- the tally ---------------------------------------------------------------------------

const n = (st) => results.filter((r) => r.status === st).length;
console.log(`openid-client: ${n('passed')} passed, ${n('failed')} failed, ${n('skipped')} skipped`);
if (process.env.CONF_RESULTS) {
  const fs = await import('node:fs');
  fs.appendFileSync(process.env.CONF_RESULTS, results.map((r) => JSON.stringify({ part: 'openid-client', ...r })).join('\n') + '\n');
}
process.exit(n('failed') ? 1 : 0);
