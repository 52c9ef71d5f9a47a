// Login through a real upstream OpenID Provider (panva's oidc-provider, in this process):
// PKCE, state and nonce; then the attacks on the callback, each refused.

import http from 'node:http';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyJwt } from '../../src/keys/jwt.ts';
import { freePort } from '../support/ports.ts';
import { Browser, formField, type LoginHarness, startLoginHarness } from './support.ts';

let h: LoginHarness;
let idpServer: http.Server;
let issuer: string;
let aud: string;
let host: string;
const verified = new Map<string, boolean>([
  ['olivia', true],
  ['unverified', false],
]);

beforeAll(async () => {
  h = await startLoginHarness();
  host = `wiki.localhost:${h.port}`;
  const port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gatehouse',
        client_secret: 'upstream-secret',
        redirect_uris: [`${h.url}/cdn-cgi/access/callback`],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    pkce: { required: () => true },
    // Cloudflare reads the email from the ID token (`email_claim_name`), not from userinfo.
    conformIdTokenClaims: false,
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    findAccount: async (_ctx: unknown, id: string) => ({
      accountId: id,
      claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: verified.get(id) ?? true }),
    }),
  });
  idpServer = http.createServer(provider.callback());
  await new Promise<void>((resolve) => idpServer.listen(port, '127.0.0.1', resolve));
  const idp = await h.api('POST', '/identity_providers', {
    name: 'Corporate SSO',
    type: 'oidc',
    config: {
      client_id: 'gatehouse',
      client_secret: 'upstream-secret',
      auth_url: `${issuer}/auth`,
      token_url: `${issuer}/token`,
      certs_url: `${issuer}/jwks`,
      scopes: ['openid', 'email'],
      pkce_enabled: true,
    },
  });
  expect(idp.status).toBe(201);
  const app = await h.api('POST', '/apps', {
    type: 'self_hosted',
    name: 'Wiki',
    domain: 'wiki.localhost',
    auto_redirect_to_identity: true,
    allowed_idps: [idp.body.result.id],
    policies: [{ name: 'staff', decision: 'allow', include: [{ email_domain: { domain: 'example.com' } }] }],
  });
  expect(app.status).toBe(201);
  aud = app.body.result.aud;
  await h.gateway.gateway.snapshot.refresh();
});
afterAll(async () => {
  await h.close();
  await new Promise((resolve) => idpServer.close(resolve));
});

/** Drives oidc-provider's development login and consent pages; returns the callback URL. */
async function upstreamLogin(browser: Browser, account: string): Promise<string> {
  const start = await browser.request(
    `${h.url}/cdn-cgi/access/login/${host}?kid=${aud}&redirect_url=%2Fpage`,
  );
  expect(start.status).toBe(302);
  const authorize = new URL(start.location!);
  expect(authorize.origin).toBe(issuer);
  expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
  expect(authorize.searchParams.get('nonce')).toBeTruthy();
  let location = start.location!;
  for (let step = 0; step < 12; step++) {
    if (location.startsWith(`${h.url}/cdn-cgi/access/callback`)) return location;
    const url = new URL(location, issuer);
    let page = await browser.request(url.href);
    if (page.status === 200 && page.text.includes('name="login"')) {
      page = await browser.request(new URL(/action="([^"]+)"/.exec(page.text)![1]!, issuer).href, {
        form: { prompt: 'login', login: account, password: 'x' },
      });
    } else if (page.status === 200 && page.text.includes('name="prompt" value="consent"')) {
      page = await browser.request(new URL(/action="([^"]+)"/.exec(page.text)![1]!, issuer).href, {
        form: { prompt: 'consent' },
      });
    }
    if (!page.location) throw new Error(`upstream step ${step}: ${page.status} ${page.text.slice(0, 600)}`);
    location = new URL(page.location, url).href;
  }
  throw new Error('the upstream login did not come back');
}

describe('OIDC upstream login', () => {
  it('logs in with PKCE, state and nonce and hands an app token to the app host', async () => {
    const browser = new Browser(h.port);
    const callback = await upstreamLogin(browser, 'olivia');
    const done = await browser.request(callback);
    expect(done.status).toBe(302);
    const handOff = new URL(done.location!);
    expect(handOff.host).toBe(host);
    const { payload } = await verifyJwt(h.gateway.gateway.keys, handOff.searchParams.get('token')!, {
      issuer: h.url,
      audience: aud,
    });
    expect(payload).toMatchObject({ email: 'olivia@example.com', type: 'app' });
  });

  it('refuses a replayed callback (code and state used once)', async () => {
    const browser = new Browser(h.port);
    const callback = await upstreamLogin(browser, 'olivia');
    expect((await browser.request(callback)).status).toBe(302);
    const replay = await browser.request(callback);
    expect(replay.status).toBe(400);
    expect(replay.location).toBeNull();
  });

  it('refuses a callback in another browser (login CSRF) and a forged state', async () => {
    const victim = new Browser(h.port);
    const attacker = new Browser(h.port);
    const callback = await upstreamLogin(attacker, 'olivia');
    expect((await victim.request(callback)).status).toBe(400);
    const forged = new URL(callback);
    forged.searchParams.set('state', 'A'.repeat(43));
    expect((await attacker.request(forged.href)).status).toBe(400);
    expect((await attacker.request(callback)).status).toBe(302);
  });

  it('refuses email_verified: false and records the failure', async () => {
    const browser = new Browser(h.port);
    const callback = await upstreamLogin(browser, 'unverified');
    const refused = await browser.request(callback);
    expect(refused.status).toBe(401);
    expect(refused.location).toBeNull();
  });
});

describe('login page', () => {
  it('skips the picker with auto_redirect_to_identity and one IdP', async () => {
    const browser = new Browser(h.port);
    const start = await browser.request(`${h.url}/cdn-cgi/access/login/${host}?kid=${aud}`);
    expect(start.status).toBe(302);
    expect(() => formField(start.text, 'flow')).toThrow();
  });
});
