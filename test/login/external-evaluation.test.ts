// `external_evaluation` where Cloudflare runs it: when the login mints an app token (here the
// silent mint of a live organisation session). A real endpoint on loopback verifies Gatehouse's
// request token against the team domain's certs, as Cloudflare's example worker verifies Access,
// and answers per scenario; only a verified, fresh, same-nonce `success: true` lets the user in.
// The access-request log keeps the decision's explanation, and the client's country from the
// trusted proxy header.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, exportJWK, generateKeyPair, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { saasApp } from '../api/support.ts';
import {
  connectWithOAuth,
  loopbackFetch,
  type McpFixture,
  REDIRECT_URI,
  scriptedBrowser,
  startMcpFixture,
} from '../managed-oauth/support.ts';
import { authorize, discover } from '../oidc/support.ts';
import { Browser } from '../support/browser.ts';
import { databaseKinds } from '../support/databases.ts';
import { TestOAuthProvider } from '../support/oauth-provider.ts';
import { formField, type LoginHarness, routeHost, startLoginHarness } from './support.ts';

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

const SCENARIOS = ['allow', 'deny', 'bad-signature', 'wrong-nonce', 'slow', 'error'] as const;
type Scenario = (typeof SCENARIOS)[number];

let h: LoginHarness;
let endpoint: http.Server;
let base: string;
let origin: http.Server;
let pinIdp: string;
const hits = new Map<string, number>();
const received: JWTPayload[] = [];
const appIds = new Map<Scenario, string>();

/** An Allow policy whose only rule is the endpoint answering as `scenario`. */
function externalPolicy(scenario: Scenario) {
  return {
    name: `endpoint ${scenario}`,
    decision: 'allow',
    include: [
      { external_evaluation: { evaluate_url: `${base}/evaluate/${scenario}`, keys_url: `${base}/keys` } },
    ],
  };
}

async function answer(scenario: Scenario, claims: JWTPayload, keys: { good: KeyPair; rogue: KeyPair }) {
  const now = Math.floor(Date.now() / 1000);
  const ok = { success: true, nonce: claims.nonce, iat: now, exp: now + 60 };
  const signed = (payload: JWTPayload, key: KeyPair) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: 'eval' }).sign(key.privateKey);
  switch (scenario) {
    case 'allow':
      return { status: 200, token: await signed(ok, keys.good) };
    case 'deny':
      return { status: 200, token: await signed({ ...ok, success: false }, keys.good) };
    case 'bad-signature':
      return { status: 200, token: await signed(ok, keys.rogue) };
    case 'wrong-nonce':
      return { status: 200, token: await signed({ ...ok, nonce: 'an-earlier-nonce' }, keys.good) };
    case 'slow':
      await new Promise((resolve) => setTimeout(resolve, 2500));
      return { status: 200, token: await signed(ok, keys.good) };
    case 'error':
      return { status: 500, token: null };
  }
}

describe.each(databaseKinds)('%s', (kind) => {
  beforeAll(async () => {
    hits.clear();
    received.length = 0;
    const keys = { good: await generateKeyPair('RS256'), rogue: await generateKeyPair('RS256') };
    const jwks = {
      keys: [{ ...(await exportJWK(keys.good.publicKey)), kid: 'eval', alg: 'RS256', use: 'sig' }],
    };
    let teamCerts: ReturnType<typeof createRemoteJWKSet> | null = null;
    endpoint = http.createServer(async (req, res) => {
      const url = req.url ?? '/';
      hits.set(url, (hits.get(url) ?? 0) + 1);
      if (url === '/keys')
        return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
      try {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const { token } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { token: string };
        // As Cloudflare's example worker: only requests signed by the Access account's key count.
        teamCerts ??= createRemoteJWKSet(new URL(`${h.url}/cdn-cgi/access/certs`));
        const { payload } = await jwtVerify(token, teamCerts, { issuer: h.url, algorithms: ['RS256'] });
        received.push(payload);
        const reply = await answer(url.replace('/evaluate/', '') as Scenario, payload, keys);
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        res.end(reply.token === null ? 'internal error' : JSON.stringify({ token: reply.token }));
      } catch {
        if (!res.headersSent) res.writeHead(403).end();
      }
    });
    endpoint.listen(0, '127.0.0.1');
    await once(endpoint, 'listening');
    base = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;

    origin = http.createServer((_req, res) => res.end('origin'));
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    const originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;

    h = await startLoginHarness({
      server: {
        kind,
        settings: { trustedProxies: '127.0.0.1/32', countryHeader: 'CF-IPCountry' },
        server: { externalEvaluation: { timeoutMs: 1000 } },
      },
    });
    pinIdp = (await h.api('POST', '/identity_providers', { name: 'PIN', type: 'onetimepin', config: {} }))
      .body.result.id;
    const home = await h.api('POST', '/apps', {
      type: 'self_hosted',
      name: 'Home',
      domain: 'home.localhost',
      policies: [
        { name: 'staff', decision: 'allow', include: [{ email_domain: { domain: 'example.com' } }] },
      ],
    });
    expect(home.status).toBe(201);
    await routeHost(h, 'home.localhost', originUrl);
    for (const scenario of SCENARIOS) {
      const created = await h.api('POST', '/apps', {
        type: 'self_hosted',
        name: scenario,
        domain: `${scenario}.localhost`,
        policies: [externalPolicy(scenario)],
      });
      // The API accepts the selector: the login now calls the endpoint.
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      appIds.set(scenario, created.body.result.id);
      await routeHost(h, `${scenario}.localhost`, originUrl);
    }
  });

  afterAll(async () => {
    await h?.close();
    endpoint?.closeAllConnections();
    endpoint?.close();
    origin?.closeAllConnections();
    origin?.close();
  });

  describe('external evaluation at app-token mint', () => {
    let browser: Browser;

    /** A full one-time-PIN login to Home: the browser then has a live organisation session. */
    beforeAll(async () => {
      browser = new Browser(h.port);
      const start = await browser.request(`http://home.localhost:${h.port}/`);
      const picker = await browser.request(start.location!);
      const flow = formField(picker.text, 'flow');
      await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
      const pin = h.mailbox.nextPin('alice@example.com');
      await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email: 'alice@example.com' } });
      const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
        form: { flow, pin: await pin },
      });
      expect(new URL(done.location!).pathname).toBe('/cdn-cgi/access/authorized');
    });

    /** From the app host to the team domain's silent mint; returns the mint's answer. */
    async function visit(scenario: Scenario) {
      const start = await browser.request(`http://${scenario}.localhost:${h.port}/`);
      expect(start.status).toBe(302);
      return browser.request(start.location!, { headers: { 'CF-IPCountry': 'DE' } });
    }

    /** The newest access-request row of the app, as the management API returns it. */
    async function loggedDecision(scenario: Scenario) {
      const accountId = h.gateway.gateway.account.accountId;
      const { secret } = await createApiToken(h.gateway.gateway.repos.apiTokens, {
        accountId,
        name: 'logs',
        permissions: ['Access: Audit Logs Read'],
      });
      const response = await fetch(
        `${h.url}/client/v4/accounts/${accountId}/access/logs/access_requests?app_uid=${appIds.get(scenario)}`,
        { headers: { authorization: `Bearer ${secret}` } },
      );
      expect(response.status).toBe(200);
      const body = (await response.json()) as { success: boolean; result: Record<string, unknown>[] };
      expect(body.success).toBe(true);
      // biome-ignore lint/suspicious/noExplicitAny: the test reads the row's fields.
      return body.result[0] as any;
    }

    it('mints the token when the endpoint answers a signed success with the same nonce', async () => {
      const minted = await visit('allow');
      expect(minted.status).toBe(302);
      const handOff = new URL(minted.location!);
      expect(handOff.pathname).toBe('/cdn-cgi/access/authorized');
      // The endpoint got a token it verified against the team domain's certs, naming the user.
      const request = received.at(-1)!;
      expect(request).toMatchObject({
        aud: `${base}/evaluate/allow`,
        identity: { email: 'alice@example.com' },
      });
      expect(request.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect((request.identity as { user_uuid?: string }).user_uuid).toMatch(/^[0-9a-f-]{36}$/);
      // The app token carries the trusted proxy's country; the request is let through.
      const token = handOff.searchParams.get('token')!;
      expect(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).country).toBe('DE');
      await browser.request(handOff.href);
      const page = await browser.request(`http://allow.localhost:${h.port}/`);
      expect(page.status).toBe(200);
      expect(page.text).toBe('origin');
      const row = await loggedDecision('allow');
      expect(row).toMatchObject({ allowed: true, country: 'DE', action: 'login' });
      expect(row.policy_trace).toMatchObject({
        decision: 'allow',
        steps: [{ name: 'endpoint allow', matched: true, rule: 'include[0]' }],
      });
    });

    it('asks the endpoint once per user within the cache time, also for a re-mint', async () => {
      const before = hits.get('/evaluate/allow');
      expect(before).toBe(1);
      // A second app token for the same user (the browser lost the app cookie).
      browser.jar.get(`allow.localhost:${h.port}`)?.delete('CF_Authorization');
      expect((await visit('allow')).status).toBe(302);
      expect(hits.get('/evaluate/allow')).toBe(before);
    });

    it('asks the endpoint at SaaS OIDC authorizations too, and fails closed there', async () => {
      const cases = [
        ['allow', /^https:\/\/mcp\.example\.com\/callback\?code=/],
        ['deny', /^https:\/\/mcp\.example\.com\/callback\?error=access_denied/],
      ] as const;
      for (const [scenario, expected] of cases) {
        const created = await h.api('POST', '/apps', {
          ...saasApp(`saas ${scenario}`),
          policies: [externalPolicy(scenario)],
        });
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        await h.gateway.gateway.snapshot.refresh();
        const config = await discover(h, created.body.result.saas_app.client_id);
        const url = oidc.buildAuthorizationUrl(config, {
          redirect_uri: 'https://mcp.example.com/callback',
          scope: 'openid email',
          code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
          code_challenge_method: 'S256',
          state: oidc.randomState(),
        });
        // The browser's organisation session signs the user in; the app's policy then decides.
        const result = await authorize(h, browser, url.href, 'alice@example.com');
        expect(result.location, `${scenario}: ${result.status} ${result.text.slice(0, 300)}`).toMatch(
          expected,
        );
      }
      // One client serves the login and the SaaS issuers: allow's verdict came from its cache.
      expect(hits.get('/evaluate/allow')).toBe(1);
      expect(hits.get('/evaluate/deny')).toBe(1);
    });

    const refused: [Scenario, RegExp][] = [
      ['deny', /did not answer success: answered success: false/],
      ['bad-signature', /did not answer success: failed: ERR_JWS_SIGNATURE_VERIFICATION_FAILED/],
      ['wrong-nonce', /nonce does not match the request/],
      ['slow', /no answer within 1000 ms/],
      ['error', /answered HTTP 500/],
    ];
    for (const [scenario, why] of refused) {
      it(`fails closed when the endpoint ${scenario === 'deny' ? 'says no' : `gives ${scenario}`}`, async () => {
        const startedAt = Date.now();
        const minted = await visit(scenario);
        expect(minted.status).toBe(403);
        expect(minted.location).toBeNull();
        expect(hits.get(`/evaluate/${scenario}`)).toBe(1);
        // The 5 s default deadline is 1 s here: the slow endpoint is not waited for.
        if (scenario === 'slow') expect(Date.now() - startedAt).toBeLessThan(2400);
        const row = await loggedDecision(scenario);
        expect(row).toMatchObject({ allowed: false, country: 'DE' });
        expect(row.policy_trace).toMatchObject({ decision: 'deny', policy_id: null });
        expect(row.policy_trace.steps[0]).toMatchObject({ matched: false, rule: 'include' });
        expect(JSON.stringify(row.policy_trace)).not.toContain('"token"');
        expect(row.policy_trace.steps[0].reason).toMatch(
          /^no include rule matched; include\[0\] external_evaluation: /,
        );
        expect(row.policy_trace.steps[0].reason).toMatch(why);
      });
    }
  });

  describe('external evaluation at managed OAuth authorizations', () => {
    let fixture: McpFixture;
    let local: ReturnType<typeof loopbackFetch>;
    const auds = new Map<string, string>();
    afterAll(async () => {
      await fixture?.close();
      await local?.close();
    });

    it('asks the endpoint when an MCP client is authorized, and fails closed there', async () => {
      local = loopbackFetch();
      let host = '';
      fixture = await startMcpFixture(h.url, () => auds.get(host)!);
      for (const scenario of ['allow', 'deny'] as const) {
        host = `ext-${scenario}.localhost`;
        const created = await h.api('POST', '/apps', {
          type: 'self_hosted',
          name: `managed ${scenario}`,
          domain: host,
          oauth_configuration: {
            enabled: true,
            dynamic_client_registration: { enabled: true, allow_any_on_loopback: true },
          },
          policies: [externalPolicy(scenario)],
        });
        // Accepted: managed OAuth authorizations and refreshes call the endpoint too.
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        auds.set(host, created.body.result.aud);
        await routeHost(h, host, `http://127.0.0.1:${fixture.port}`);
        const provider = new TestOAuthProvider({
          browse: scriptedBrowser(h, pinIdp, 'alice@example.com'),
          redirectUris: [REDIRECT_URI],
        });
        const url = new URL(`http://${host}:${h.port}/mcp`);
        if (scenario === 'deny') {
          await expect(connectWithOAuth(url, provider, local.fetch)).rejects.toThrow(/access_denied/);
          expect(provider.callback?.searchParams.get('error')).toBe('access_denied');
          continue;
        }
        // The only rule is the endpoint's: a token means its signed success was checked.
        const client = await connectWithOAuth(url, provider, local.fetch);
        const whoami = await client.callTool({ name: 'whoami', arguments: {} });
        expect(whoami.content).toEqual([{ type: 'text', text: 'alice@example.com' }]);
        await client.close();
      }
    });
  });
});
