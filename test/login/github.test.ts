// GitHub login against a fake GitHub (node:http, in this process) that implements the OAuth web
// flow with PKCE and the REST endpoints the login reads (user, emails, orgs, teams), injected
// through LoginOptions.github. Then a `github-organization` policy through login and proxy, and
// the hostile GitHubs: unverified email, oversized and slow answers, replayed codes.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser } from '../support/browser.ts';
import { freePort } from '../support/ports.ts';
import {
  accessLog,
  appSession,
  createSelfHostedApp,
  type LoginHarness,
  routeHost,
  startLoginHarness,
  verifyHandOff,
} from './support.ts';

interface FakeUser {
  login: string;
  name: string;
  emails: { email: string; primary: boolean; verified: boolean }[];
  orgs: string[];
  teams: { slug: string; name: string; org: string }[];
  /** Misbehaviour on one endpoint. */
  hostile?: { path: string; kind: 'huge' | 'slow' };
}

const CLIENT_ID = 'Iv1.gatehouse';
const CLIENT_SECRET = 'github-client-secret';
const users = new Map<string, FakeUser>();
/** The GitHub account the next authorize request logs in as. */
let nextLogin = '';
const codes = new Map<string, { login: string; challenge: string; redirectUri: string }>();
const tokens = new Map<string, string>();
const hanging: http.ServerResponse[] = [];

function fakeGitHub(): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://github.invalid');
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/login/oauth/authorize') {
      const params = url.searchParams;
      if (params.get('client_id') !== CLIENT_ID || params.get('code_challenge_method') !== 'S256')
        return json(400, { error: 'bad_request' });
      const code = randomBytes(10).toString('hex');
      codes.set(code, {
        login: nextLogin,
        challenge: params.get('code_challenge')!,
        redirectUri: params.get('redirect_uri')!,
      });
      const back = new URL(params.get('redirect_uri')!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', params.get('state')!);
      res.writeHead(302, { location: back.href });
      return res.end();
    }
    if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
      let body = '';
      req.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const grant = codes.get(form.get('code') ?? '');
        codes.delete(form.get('code') ?? '');
        const verifier = form.get('code_verifier') ?? '';
        const ok =
          grant !== undefined &&
          form.get('client_id') === CLIENT_ID &&
          form.get('client_secret') === CLIENT_SECRET &&
          form.get('redirect_uri') === grant.redirectUri &&
          createHash('sha256').update(verifier).digest('base64url') === grant.challenge;
        // GitHub answers 200 with an error member for a bad code.
        if (!ok) return json(200, { error: 'bad_verification_code' });
        const token = `gho_${randomBytes(12).toString('hex')}`;
        tokens.set(token, grant.login);
        json(200, { access_token: token, token_type: 'bearer', scope: 'read:user,user:email,read:org' });
      });
      return;
    }
    const login = tokens.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
    const user = login ? users.get(login) : undefined;
    if (!user) return json(401, { message: 'Bad credentials' });
    if (user.hostile?.path === url.pathname) {
      if (user.hostile.kind === 'slow') {
        hanging.push(res);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      // Two megabytes of a JSON array, sent without a Content-Length.
      res.write('[');
      for (let i = 0; i < 2048; i++) res.write(`${i ? ',' : ''}"${'x'.repeat(1020)}"`);
      return res.end(']');
    }
    switch (url.pathname) {
      case '/user':
        return json(200, { login: user.login, id: 1, name: user.name });
      case '/user/emails':
        return json(200, user.emails);
      case '/user/orgs':
        return json(
          200,
          user.orgs.map((org) => ({ login: org })),
        );
      case '/user/teams':
        return json(
          200,
          user.teams.map((team) => ({ slug: team.slug, name: team.name, organization: { login: team.org } })),
        );
      default:
        return json(404, { message: 'Not Found' });
    }
  });
}

let h: LoginHarness;
let github: http.Server;
let origin: http.Server;
let githubIdp: string;
let aud: string;
let host: string;
const originSaw: string[] = [];

beforeAll(async () => {
  github = fakeGitHub();
  const githubPort = await freePort();
  await new Promise<void>((resolve) => github.listen(githubPort, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${githubPort}`;
  h = await startLoginHarness({
    login: {
      github: { web: base, api: base },
      upstreamLimits: { timeoutMs: 1500, maxBodyBytes: 256 * 1024 },
    },
  });
  host = `code.localhost:${h.port}`;
  origin = http.createServer((req, res) => {
    originSaw.push(String(req.headers['cf-access-authenticated-user-email']));
    res.end('origin');
  });
  const originPort = await freePort();
  await new Promise<void>((resolve) => origin.listen(originPort, '127.0.0.1', resolve));

  const idp = await h.api('POST', '/identity_providers', {
    name: 'GitHub',
    type: 'github',
    config: { client_id: CLIENT_ID, client_secret: CLIENT_SECRET },
  });
  expect(idp.status).toBe(201);
  githubIdp = idp.body.result.id;
  const platformTeam = {
    name: 'acme platform team',
    decision: 'allow',
    include: [{ 'github-organization': { name: 'acme', team: 'platform', identity_provider_id: githubIdp } }],
  };
  aud = (
    await createSelfHostedApp(h, 'code.localhost', {
      name: 'Code',
      allowed_idps: [githubIdp],
      auto_redirect_to_identity: true,
      policies: [platformTeam],
    })
  ).aud;
  await routeHost(h, 'code.localhost', `http://127.0.0.1:${originPort}`);

  const primary = (email: string, verified = true) => [
    { email: `${email.split('@')[0]}@users.noreply.github.com`, primary: false, verified: true },
    { email, primary: true, verified },
  ];
  for (const user of [
    {
      login: 'octo',
      name: 'Octo Cat',
      emails: primary('Octo@Example.com'),
      orgs: ['acme', 'other'],
      teams: [{ slug: 'platform', name: 'Platform', org: 'acme' }],
    },
    { login: 'outsider', name: 'Out Sider', emails: primary('out@example.com'), orgs: ['other'], teams: [] },
    { login: 'unverified', name: 'U', emails: primary('u@example.com', false), orgs: ['acme'], teams: [] },
    {
      login: 'huge',
      name: 'H',
      emails: primary('h@example.com'),
      orgs: ['acme'],
      teams: [],
      hostile: { path: '/user/orgs', kind: 'huge' },
    },
    {
      login: 'slow',
      name: 'S',
      emails: primary('s@example.com'),
      orgs: ['acme'],
      teams: [],
      hostile: { path: '/user', kind: 'slow' },
    },
  ] satisfies FakeUser[]) {
    users.set(user.login, user);
  }
});

afterAll(async () => {
  for (const res of hanging) res.destroy();
  await h.close();
  await new Promise((resolve) => github.close(resolve));
  await new Promise((resolve) => origin.close(resolve));
});

/** Starts at the login (auto-redirected to GitHub), logs in as `login`, returns the callback. */
async function githubLogin(login: string, browser = new Browser(h.port)) {
  nextLogin = login;
  const start = await browser.request(
    `${h.url}/cdn-cgi/access/login/${host}?kid=${aud}&redirect_url=%2Frepo&meta=${appSession(browser, host)}`,
  );
  expect(start.status).toBe(302);
  const authorize = new URL(start.location!);
  expect(authorize.pathname).toBe('/login/oauth/authorize');
  expect(authorize.searchParams.get('scope')).toContain('read:org');
  const back = await browser.request(authorize.href);
  expect(back.status).toBe(302);
  expect(back.location!.startsWith(`${h.url}/cdn-cgi/access/callback?`)).toBe(true);
  return { browser, callback: back.location! };
}

const failures = (email: string) =>
  h.gateway.gateway.store.db
    .selectFrom('access_requests')
    .selectAll()
    .where('user_email', 'is', email === '' ? null : email)
    .where('allowed', '=', 0)
    .where('connection', '=', 'github')
    .execute();

describe('GitHub login', () => {
  it('logs in with the verified primary email and org teams, and the org policy lets the user through the proxy', async () => {
    const { browser, callback } = await githubLogin('octo');
    const done = await browser.request(callback);
    expect(done.status).toBe(302);
    const handOff = new URL(done.location!);
    expect(handOff.host).toBe(host);
    const { payload } = await verifyHandOff(h, handOff, aud);
    expect(payload.email).toBe('octo@example.com');
    const identity = JSON.parse((await browser.request(`${h.url}/cdn-cgi/access/get-identity`)).text);
    expect(identity).toMatchObject({
      email: 'octo@example.com',
      name: 'Octo Cat',
      idp: { id: githubIdp, type: 'github' },
      github: {
        orgs: expect.arrayContaining([{ name: 'acme', teams: expect.arrayContaining(['platform']) }]),
      },
    });
    // Through the proxy with the app cookie: the origin sees the user.
    expect((await browser.request(handOff.href)).status).toBe(302);
    const page = await browser.request(`http://${host}/repo`);
    expect(page.status).toBe(200);
    expect(originSaw.at(-1)).toBe('octo@example.com');
  });

  it('blocks a GitHub user outside the organisation', async () => {
    const { browser, callback } = await githubLogin('outsider');
    const blocked = await browser.request(callback);
    expect(blocked.status).toBe(403);
    expect(blocked.location).toBeNull();
    const rows = await accessLog(h, 'out@example.com');
    expect(rows).toMatchObject([{ action: 'login', allowed: 0, connection: 'github', idp_id: githubIdp }]);
  });

  it('refuses an unverified primary email', async () => {
    const { browser, callback } = await githubLogin('unverified');
    const refused = await browser.request(callback);
    expect(refused.status).toBe(401);
    expect(refused.text).toContain('no verified primary email');
  });

  it('refuses an oversized answer and a GitHub that does not answer, within the limits', async () => {
    const before = (await failures('')).length;
    const huge = await githubLogin('huge');
    const tooLarge = await huge.browser.request(huge.callback);
    expect(tooLarge.status).toBe(401);
    expect(tooLarge.text).toContain('too large');
    const slow = await githubLogin('slow');
    const started = Date.now();
    const timedOut = await slow.browser.request(slow.callback);
    expect(timedOut.status).toBe(401);
    expect(timedOut.text).toContain('did not answer in time');
    expect(Date.now() - started).toBeLessThan(5_000);
    // Both failures are in the access log.
    expect((await failures('')).length).toBe(before + 2);
  });

  it('refuses a replayed callback and a code redeemed in another browser', async () => {
    const { browser, callback } = await githubLogin('octo');
    expect((await new Browser(h.port).request(callback)).status).toBe(400);
    expect((await browser.request(callback)).status).toBe(302);
    expect((await browser.request(callback)).status).toBe(400);
  });
});
