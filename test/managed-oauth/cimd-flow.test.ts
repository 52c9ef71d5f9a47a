// Client ID metadata documents through the gateway: the MCP SDK client names itself with an https
// URL (served here with a certificate made in the test, for a name only the gateway's resolver
// knows) and completes managed OAuth without registering; documents that are too large, slow,
// redirecting, private-addressed, for another client_id or with redirect URIs outside the app's
// allow-list are refused at the authorization endpoint, before any login.
import { createHash, randomBytes } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPinIdp, createSelfHostedApp, type LoginHarness, startLoginHarness } from '../login/support.ts';
import { Browser } from '../support/browser.ts';
import { TestOAuthProvider } from '../support/oauth-provider.ts';
import {
  connectWithOAuth,
  loopbackFetch,
  type McpFixture,
  REDIRECT_URI,
  scriptedBrowser,
  startMcpFixture,
} from './support.ts';
import { selfSignedCertificate } from './tls.ts';

const kind = process.env.GATEHOUSE_TEST_DATABASE_URL ? 'postgres' : 'sqlite';

let h: LoginHarness;
let fixture: McpFixture;
let documents: https.Server;
let docPort: number;
let idp: string;
let mcpAud: string;
let mcpHost: string;
let local: ReturnType<typeof loopbackFetch>;
const hits = new Map<string, number>();

const docUrl = (path: string, host = 'client.example') => `https://${host}:${docPort}${path}`;
const documentFor = (id: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ client_id: id, client_name: 'CIMD client', redirect_uris: [REDIRECT_URI], ...extra });

beforeAll(async () => {
  const certificate = await selfSignedCertificate({ dns: ['client.example', 'internal.example'] });
  documents = https.createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    const path = req.url ?? '';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const json = (body: string, headers: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(body);
    };
    if (path === '/client.json') return json(documentFor(docUrl(path)), { 'cache-control': 'max-age=300' });
    if (path === '/large.json') return json(documentFor(docUrl(path), { pad: 'x'.repeat(6000) }));
    if (path === '/other-id.json') return json(documentFor(docUrl('/client.json')));
    if (path === '/evil-redirect.json')
      return json(documentFor(docUrl(path), { redirect_uris: ['https://evil.example/cb'] }));
    if (path === '/redirect.json') {
      res.writeHead(302, { location: docUrl('/client.json') }).end();
      return;
    }
    if (path === '/slow.json') {
      const timer = setTimeout(() => json(documentFor(docUrl(path))), 3000);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => documents.listen(0, '127.0.0.1', resolve));
  docPort = (documents.address() as AddressInfo).port;
  h = await startLoginHarness({
    server: {
      kind,
      server: {
        managedOAuth: {
          clientMetadata: {
            // The documents are on loopback here; internal.example stands for an internal host.
            allowLoopback: true,
            ca: [certificate.cert],
            timeoutMs: 500,
            resolve: async (name) => {
              if (name === 'client.example') return [{ address: '127.0.0.1', family: 4 }];
              if (name === 'internal.example') return [{ address: '10.0.0.7', family: 4 }];
              throw new Error('ENOTFOUND');
            },
          },
        },
      },
    },
  });
  mcpHost = `mcp.localhost:${h.port}`;
  local = loopbackFetch();
  fixture = await startMcpFixture(h.url, () => mcpAud);
  idp = await createPinIdp(h);
  const mcp = await createSelfHostedApp(h, 'mcp.localhost', {
    name: 'MCP server',
    policies: [{ name: 'alice', decision: 'allow', include: [{ email: { email: 'alice@example.com' } }] }],
    // Registration off: documents are the only way in, with the app's redirect allow-list.
    oauth_configuration: {
      enabled: true,
      dynamic_client_registration: { enabled: false, allow_any_on_loopback: true },
    },
  });
  mcpAud = mcp.aud;
  await h.gateway.gateway.repos.ingress.replace(h.gateway.gateway.account.accountId, [
    { hostname: 'mcp.localhost', service: `http://127.0.0.1:${fixture.port}` },
    { service: 'http_status:404' },
  ]);
  await h.gateway.gateway.snapshot.refresh();
});

afterAll(async () => {
  await local?.close();
  await fixture?.close();
  await h?.close();
  documents?.closeAllConnections();
  await new Promise((resolve) => documents?.close(resolve));
});

describe('client ID metadata documents through the gateway', () => {
  it('the MCP SDK client uses its document URL as client_id and calls a tool', async () => {
    const issuer = `http://${mcpHost}/cdn-cgi/access/oauth`;
    const response = await local.fetch(`http://${mcpHost}/.well-known/oauth-authorization-server`);
    const metadata = (await response.json()) as Record<string, unknown>;
    expect(metadata.registration_endpoint).toBeUndefined();
    const provider = new TestOAuthProvider({
      browse: scriptedBrowser(h, idp, 'alice@example.com'),
      redirectUris: [REDIRECT_URI],
      clientMetadataUrl: docUrl('/client.json'),
    });
    const client = await connectWithOAuth(new URL(`http://${mcpHost}/mcp`), provider, local.fetch);
    expect(provider.client?.client_id).toBe(docUrl('/client.json'));
    expect(provider.callback?.searchParams.get('iss')).toBe(issuer);
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    expect(result.content).toEqual([{ type: 'text', text: 'alice@example.com' }]);
    await client.close();
    // Fetched once for the authorization and the token exchange: max-age=300 is honoured.
    expect(hits.get('/client.json')).toBe(1);
  });

  it('refuses documents that are too large, slow, redirecting, private-addressed or not the client', async () => {
    const attempt = async (clientId: string) => {
      const verifier = randomBytes(32).toString('base64url');
      const url = new URL(`http://${mcpHost}/cdn-cgi/access/oauth/authorization`);
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: REDIRECT_URI,
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
        state: 's',
      }).toString();
      return new Browser(h.port).request(url.href);
    };
    for (const path of [
      '/large.json',
      '/slow.json',
      '/redirect.json',
      '/other-id.json',
      '/evil-redirect.json',
    ]) {
      const answer = await attempt(docUrl(path));
      // An unknown client cannot be redirected to: the error is shown, never sent to redirect_uri.
      expect(answer.status, path).toBe(400);
      expect(answer.location, path).toBeNull();
      expect(answer.text, path).toContain('invalid_client');
    }
    const before = hits.size;
    const internal = await attempt(docUrl('/client.json', 'internal.example'));
    expect(internal.status).toBe(400);
    expect(internal.text).toContain('invalid_client');
    expect(hits.size).toBe(before);
    // The redirect was not followed.
    expect(hits.get('/client.json')).toBe(1);
  });
});
