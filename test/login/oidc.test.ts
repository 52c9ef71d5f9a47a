// Login through a real upstream OpenID Provider (panva's oidc-provider, in this process):
// PKCE, state and nonce; then the attacks on the callback, each refused.

import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser } from '../support/browser.ts';
import { freePort } from '../support/ports.ts';
import {
  appSession,
  createSelfHostedApp,
  driveUpstream,
  formField,
  type LoginHarness,
  routeHost,
  startLoginHarness,
  upstreamProvider,
  verifyHandOff,
} from './support.ts';

let h: LoginHarness;
let idpServer: http.Server;
let issuer: string;
let aud: string;
let host: string;
let idpId: string;
let buildAud: string;
let origin: http.Server;
const originSaw: string[] = [];
const verified = new Map<string, boolean>([
  ['olivia', true],
  ['unverified', false],
]);

beforeAll(async () => {
  h = await startLoginHarness();
  host = `wiki.localhost:${h.port}`;
  const port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  const provider = upstreamProvider(h, issuer, {
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    claimsOf: (id) => ({
      email_verified: verified.get(id) ?? true,
      groups: id === 'olivia' ? ['staff', 'eng'] : ['staff'],
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
      scopes: ['openid', 'email', 'groups'],
      claims: ['groups'],
      pkce_enabled: true,
    },
  });
  expect(idp.status).toBe(201);
  idpId = idp.body.result.id;
  aud = (
    await createSelfHostedApp(h, 'wiki.localhost', {
      name: 'Wiki',
      auto_redirect_to_identity: true,
      allowed_idps: [idpId],
    })
  ).aud;
  const engineers = {
    name: 'engineers',
    decision: 'allow',
    include: [{ oidc: { claim_name: 'groups', claim_value: 'eng', identity_provider_id: idpId } }],
  };
  buildAud = (
    await createSelfHostedApp(h, 'build.localhost', {
      name: 'Build',
      auto_redirect_to_identity: true,
      allowed_idps: [idpId],
      policies: [engineers],
    })
  ).aud;
  origin = http.createServer((req, res) => {
    originSaw.push(String(req.headers['cf-access-authenticated-user-email']));
    res.end('build');
  });
  const originPort = await freePort();
  await new Promise<void>((resolve) => origin.listen(originPort, '127.0.0.1', resolve));
  await routeHost(h, 'build.localhost', `http://127.0.0.1:${originPort}`);
});
afterAll(async () => {
  await h.close();
  await new Promise((resolve) => idpServer.close(resolve));
  await new Promise((resolve) => origin.close(resolve));
});

/** Starts the login for an app and logs `account` in at the upstream; returns the callback URL. */
async function upstreamLogin(browser: Browser, account: string, appHost = host, kid = aud): Promise<string> {
  const start = await browser.request(
    `${h.url}/cdn-cgi/access/login/${appHost}?kid=${kid}&redirect_url=%2Fpage&meta=${appSession(browser, appHost)}`,
  );
  expect(start.status).toBe(302);
  const authorize = new URL(start.location!);
  expect(authorize.origin).toBe(issuer);
  expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
  expect(authorize.searchParams.get('nonce')).toBeTruthy();
  return driveUpstream(browser, start.location!, h.url, account);
}

describe('OIDC upstream login', () => {
  it('logs in with PKCE, state and nonce and hands an app token to the app host', async () => {
    const browser = new Browser(h.port);
    const callback = await upstreamLogin(browser, 'olivia');
    const done = await browser.request(callback);
    expect(done.status).toBe(302);
    const handOff = new URL(done.location!);
    expect(handOff.host).toBe(host);
    const { payload } = await verifyHandOff(h, handOff, aud);
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
    const start = await browser.request(
      `${h.url}/cdn-cgi/access/login/${host}?kid=${aud}&meta=${appSession(browser, host)}`,
    );
    expect(start.status).toBe(302);
    expect(new URL(start.location!).origin).toBe(issuer);
    expect(() => formField(start.text, 'flow')).toThrow();
  });
});

describe('an OIDC-claim policy through login and proxy', () => {
  it('lets a member of the claimed group through the proxy and blocks the others at login', async () => {
    const buildHost = `build.localhost:${h.port}`;
    const member = new Browser(h.port);
    const done = await member.request(await upstreamLogin(member, 'olivia', buildHost, buildAud));
    expect(done.status).toBe(302);
    const handOff = new URL(done.location!);
    expect(handOff.host).toBe(buildHost);
    expect((await member.request(handOff.href)).status).toBe(302);
    const page = await member.request(`http://${buildHost}/page`);
    expect(page.status).toBe(200);
    expect(originSaw.at(-1)).toBe('olivia@example.com');
    const identity = JSON.parse((await member.request(`${h.url}/cdn-cgi/access/get-identity`)).text);
    expect(identity.oidc_fields).toEqual({ groups: ['staff', 'eng'] });

    const other = new Browser(h.port);
    const blocked = await other.request(await upstreamLogin(other, 'oscar', buildHost, buildAud));
    expect(blocked.status).toBe(403);
    expect(blocked.location).toBeNull();
  });
});
