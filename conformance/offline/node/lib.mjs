// The browser half of the relying party: a cookie jar and the hosted forms filled over HTTP,
// as a person's browser would post them. Only this file knows clef's page markup (the field
// names of templates/pages/login.html and consent.html).

import { execFileSync } from 'node:child_process';

export const env = {
  issuer: process.env.CLEF_ISSUER,
  clef: process.env.CLEF_BIN,
  email: process.env.CONF_EMAIL,
  password: process.env.CONF_PASSWORD,
};

/** `clef clients create … --json`, against the running server's database (same env). */
export function createClient(name, args) {
  const out = execFileSync(env.clef, ['clients', 'create', '--name', name, ...args, '--json'], {
    env: process.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 20_000,
  });
  return JSON.parse(out);
}

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", '#39': "'", '#x27': "'", '#47': '/', '#x2F': '/' };
export function unescapeHtml(s) {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (m, e) => {
    if (e in ENTITIES) return ENTITIES[e];
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return m;
  });
}

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`));
  return m ? unescapeHtml(m[1]) : undefined;
}

/** Every form of a page: action, method and the named inputs with their values. */
export function forms(html) {
  const out = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)) {
    const fields = [];
    for (const i of m[2].matchAll(/<input\b[^>]*>/g)) {
      const name = attr(i[0], 'name');
      if (name !== undefined) fields.push([name, attr(i[0], 'value') ?? '']);
    }
    const buttons = [...m[2].matchAll(/<button\b[^>]*>/g)].map((b) => ({
      name: attr(b[0], 'name'),
      value: attr(b[0], 'value'),
      formaction: attr(b[0], 'formaction'),
    }));
    out.push({ action: attr(`<form ${m[1]}>`, 'action'), id: attr(`<form ${m[1]}>`, 'id'), fields, buttons });
  }
  return out;
}

export class Browser {
  constructor(base = env.issuer) {
    this.base = base;
    this.jar = new Map();
  }

  abs(url) {
    return new URL(url, this.base).href;
  }

  store(resp) {
    for (const line of resp.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (gone) this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }

  headers(extra = {}) {
    const h = { 'user-agent': 'clef-conformance-offline (openid-client)', 'accept-language': 'en', ...extra };
    if (this.jar.size) h.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    return h;
  }

  async request(method, url, form) {
    const target = this.abs(url);
    const init = { method, redirect: 'manual', headers: this.headers() };
    if (form) {
      init.body = new URLSearchParams(form).toString();
      init.headers['content-type'] = 'application/x-www-form-urlencoded';
      // What a browser adds to a same-origin form post (Fetch Metadata, Origin).
      if (target.startsWith(this.base)) {
        init.headers.origin = new URL(this.base).origin;
        init.headers['sec-fetch-site'] = 'same-origin';
      }
    }
    const resp = await fetch(target, init);
    this.store(resp);
    const body = await resp.text();
    return { url: target, status: resp.status, location: resp.headers.get('location'), headers: resp.headers, body };
  }

  get(url) {
    return this.request('GET', url);
  }

  post(url, form) {
    return this.request('POST', url, form);
  }

  /**
   * Runs an authorization request the way a person would: follows clef's redirects, fills the
   * login form (email, password) and allows consent, until the answer leaves clef for
   * `redirectPrefix` (a redirect or a form_post page), or a page stops the flow.
   * Returns { kind: 'redirect'|'form_post'|'page', url, params, page, sawLogin, sawConsent }.
   */
  async authorize(url, { redirectPrefix, email = env.email, password = env.password, consent = 'allow', login = true } = {}) {
    let page = await this.get(url);
    let sawLogin = false;
    let sawConsent = false;
    let loginPage;
    for (let step = 0; step < 15; step++) {
      if (page.status >= 300 && page.status < 400 && page.location) {
        const next = this.abs(page.location);
        if (redirectPrefix && next.startsWith(redirectPrefix)) {
          const u = new URL(next);
          return { kind: 'redirect', url: next, params: Object.fromEntries(u.searchParams), sawLogin, sawConsent, loginPage };
        }
        if (!next.startsWith(this.base)) return { kind: 'redirect', url: next, params: {}, sawLogin, sawConsent, loginPage };
        page = await this.get(next);
        continue;
      }
      const fs = forms(page.body);
      const fp = fs.find((f) => f.id === 'form_post');
      if (fp) {
        return { kind: 'form_post', url: fp.action, params: Object.fromEntries(fp.fields), page, sawLogin, sawConsent, loginPage };
      }
      const loginForm = fs.find((f) => f.fields.some(([n]) => n === 'password') && f.fields.some(([n]) => n === 'email'));
      if (loginForm && login && !sawLogin) {
        sawLogin = true;
        loginPage = page;
        const fields = loginForm.fields.map(([n, v]) => [n, n === 'email' ? email : n === 'password' ? password : v]);
        page = await this.post(loginForm.action, fields);
        continue;
      }
      const consentForm = fs.find((f) => f.buttons.some((b) => b.name === 'decision' && b.value === 'allow'));
      if (consentForm && consent && !sawConsent) {
        sawConsent = true;
        page = await this.post(consentForm.action, [...consentForm.fields, ['decision', consent]]);
        continue;
      }
      return { kind: 'page', url: page.url, params: {}, page, sawLogin, sawConsent, loginPage };
    }
    throw new Error('authorization did not finish within 15 steps');
  }

  /** RP-initiated logout: opens the end-session URL and confirms on clef's page. */
  async logout(url) {
    let page = await this.get(url);
    for (let step = 0; step < 5; step++) {
      if (page.status >= 300 && page.status < 400 && page.location) {
        const next = this.abs(page.location);
        if (!next.startsWith(this.base)) return { kind: 'redirect', url: next, page };
        page = await this.get(next);
        continue;
      }
      const f = forms(page.body).find((x) => x.buttons.some((b) => b.name === 'decision' && b.value === 'logout'));
      if (!f) return { kind: 'page', page };
      page = await this.post(f.action, [...f.fields, ['decision', 'logout']]);
      if (!(page.status >= 300 && page.status < 400)) return { kind: 'page', page, confirmed: true };
    }
    throw new Error('logout did not finish within 5 steps');
  }
}

export function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

export function jwtParts(jwt) {
  const [h, p] = jwt.split('.');
  return { header: b64urlJson(h), payload: b64urlJson(p) };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
