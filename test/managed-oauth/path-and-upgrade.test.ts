// Managed OAuth for path-scoped apps and WebSocket upgrades, over real HTTP (issue 8).
// - Two managed apps share `tools.localhost` at `/mcp` and `/other`: each has its metadata at the
//   path-inserted well-known URLs and its own issuer under its path; the MCP SDK client completes
//   the flow at `/mcp` and calls a tool; one app's token is refused at its sibling.
// - A managed app `ws.localhost/live` in front of a WebSocket origin: a handshake without a token
//   gets 401 with the path-inserted `resource_metadata`, a foreign token `invalid_token`, and the
//   app's own token (obtained by the SDK's `auth()`) goes through with the normal assertion.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoginHarness, startLoginHarness } from '../login/support.ts';
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

const kind = process.env.GATEHOUSE_TEST_DATABASE_URL ? 'postgres' : 'sqlite';

let h: LoginHarness;
let fixture: McpFixture;
let socketOrigin: http.Server;
let idp: string;
let mcpApp: { id: string; aud: string };
let liveApp: { id: string; aud: string };
let toolsHost: string;
let wsHost: string;
let local: ReturnType<typeof loopbackFetch>;
/** What the WebSocket origin saw per handshake: the verified email, and any Authorization. */
const handshakes: { email: string | null; authorization: string | null }[] = [];

const managed = {
  enabled: true,
  dynamic_client_registration: { enabled: true, allow_any_on_loopback: true },
};
const alice = { name: 'alice only', decision: 'allow', include: [{ email: { email: 'alice@example.com' } }] };

async function createApp(name: string, domain: string) {
  const created = await h.api('POST', '/apps', {
    type: 'self_hosted',
    name,
    domain,
    policies: [alice],
    oauth_configuration: managed,
  });
  expect(created.status).toBe(201);
  return { id: created.body.result.id as string, aud: created.body.result.aud as string };
}

/** A WebSocket origin (RFC 6455 handshake only) that trusts a verified assertion for `live`. */
async function startSocketOrigin(): Promise<http.Server> {
  const jwks = createRemoteJWKSet(new URL(`${h.url}/cdn-cgi/access/certs`));
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', async (req, socket) => {
    let email: string | null = null;
    try {
      const assertion = String(req.headers['cf-access-jwt-assertion']);
      const { payload } = await jwtVerify(assertion, jwks, { issuer: h.url, audience: liveApp.aud });
      email = String(payload.email);
    } catch {
      // Recorded as null: the test fails if a handshake gets here without a valid assertion.
    }
    handshakes.push({ email, authorization: req.headers.authorization ?? null });
    const accept = createHash('sha1')
      .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.end(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

beforeAll(async () => {
  h = await startLoginHarness({ server: { kind } });
  toolsHost = `tools.localhost:${h.port}`;
  wsHost = `ws.localhost:${h.port}`;
  local = loopbackFetch();
  fixture = await startMcpFixture(h.url, () => mcpApp.aud);
  socketOrigin = await startSocketOrigin();
  const pin = await h.api('POST', '/identity_providers', { name: 'PIN', type: 'onetimepin', config: {} });
  idp = pin.body.result.id;
  mcpApp = await createApp('MCP at a path', 'tools.localhost/mcp');
  await createApp('Sibling at a path', 'tools.localhost/other');
  liveApp = await createApp('Live feed', 'ws.localhost/live');
  await h.gateway.gateway.repos.ingress.replace(h.gateway.gateway.account.accountId, [
    { hostname: 'tools.localhost', service: `http://127.0.0.1:${fixture.port}` },
    { hostname: 'ws.localhost', service: `http://127.0.0.1:${(socketOrigin.address() as AddressInfo).port}` },
    { service: 'http_status:404' },
  ]);
  await h.gateway.gateway.snapshot.refresh();
});

afterAll(async () => {
  await local?.close();
  await fixture?.close();
  socketOrigin?.closeAllConnections();
  await new Promise((resolve) => socketOrigin?.close(resolve));
  await h?.close();
});

const issuer = (host: string, path: string) => `http://${host}${path}/cdn-cgi/access/oauth`;

async function json(url: string, init: RequestInit = {}) {
  const response = await local.fetch(url, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
}

/** The SDK client's OAuth state, its browser signing alice in with a PIN. */
function aliceProvider() {
  return new TestOAuthProvider({
    redirectUris: [REDIRECT_URI],
    browse: scriptedBrowser(h, idp, 'alice@example.com'),
  });
}

function mcpPost(path: string, token?: string) {
  return local.fetch(`http://${toolsHost}${path}`, {
    method: 'POST',
    headers: {
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      ...(token && { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
}

/** A WebSocket handshake on the wire; resolves with the response head. */
function handshake(path: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(h.port, '127.0.0.1');
    let head = '';
    socket.on('data', (chunk) => {
      head += chunk.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        socket.destroy();
        resolve(head.slice(0, head.indexOf('\r\n\r\n')));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(head));
    const extra = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    socket.write(
      `GET ${path} HTTP/1.1\r\nhost: ${wsHost}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${randomBytes(16).toString('base64')}\r\n${extra}\r\n`,
    );
  });
}

function headerOf(head: string, name: string): string | undefined {
  const line = head.split('\r\n').find((one) => one.toLowerCase().startsWith(`${name}:`));
  return line?.slice(name.length + 1).trim();
}

describe('a path-scoped app', () => {
  it('challenges with its path-inserted metadata, which names its own issuer under its path', async () => {
    const refused = await mcpPost('/mcp');
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="http://${toolsHost}/.well-known/oauth-protected-resource/mcp", scope="access"`,
    );
    for (const [path, name] of [
      ['/mcp', 'MCP at a path'],
      ['/other', 'Sibling at a path'],
    ] as const) {
      const prm = await json(`http://${toolsHost}/.well-known/oauth-protected-resource${path}`);
      expect(prm.status, path).toBe(200);
      expect(prm.body).toMatchObject({
        resource: `http://${toolsHost}${path}`,
        authorization_servers: [issuer(toolsHost, path)],
        resource_name: name,
      });
      const as = await json(
        `http://${toolsHost}/.well-known/oauth-authorization-server${path}/cdn-cgi/access/oauth`,
      );
      expect(as.status, path).toBe(200);
      expect(as.body).toMatchObject({
        issuer: issuer(toolsHost, path),
        token_endpoint: `${issuer(toolsHost, path)}/token`,
        registration_endpoint: `${issuer(toolsHost, path)}/reg`,
      });
      // oidc-provider's own discovery at the issuer agrees (the SDK's last fallback).
      const discovery = await json(`${issuer(toolsHost, path)}/.well-known/openid-configuration`);
      expect(discovery.body.issuer).toBe(issuer(toolsHost, path));
    }
    expect(fixture.seen).toHaveLength(0);
  });

  it('lets the MCP SDK client authorize at the path and call a tool; the token stays at its app', async () => {
    const provider = aliceProvider();
    const client = await connectWithOAuth(new URL(`http://${toolsHost}/mcp`), provider, local.fetch);
    expect(provider.authorizationUrls[0]!.searchParams.get('resource')).toBe(`http://${toolsHost}/mcp`);
    expect(provider.callback?.searchParams.get('iss')).toBe(issuer(toolsHost, '/mcp'));
    const token = provider.saved!.access_token;
    expect(decodeJwt(token)).toMatchObject({ iss: issuer(toolsHost, '/mcp'), aud: mcpApp.aud });
    // The issuer's JWKS holds only the public half of the signing key, which verifies the token.
    const jwks = await json(`${issuer(toolsHost, '/mcp')}/jwks`);
    expect(jwks.body.keys.map((key: Record<string, unknown>) => Object.keys(key).sort())).toEqual([
      ['alg', 'e', 'kid', 'kty', 'n', 'use'],
    ]);
    await jwtVerify(token, createLocalJWKSet(jwks.body), {
      issuer: issuer(toolsHost, '/mcp'),
      typ: 'at+jwt',
    });
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    expect(result.content).toEqual([{ type: 'text', text: 'alice@example.com' }]);
    await client.close();
    expect(fixture.seen.every((request) => request.authorization === null)).toBe(true);

    // The sibling app on the same host has another issuer and AUD: invalid_token there.
    const seen = fixture.seen.length;
    const sibling = await mcpPost('/other', token);
    expect(sibling.status).toBe(401);
    expect(sibling.headers.get('www-authenticate')).toBe(
      `Bearer error="invalid_token", resource_metadata="http://${toolsHost}/.well-known/oauth-protected-resource/other", scope="access"`,
    );
    expect(fixture.seen.length).toBe(seen);
  });

  it("refuses a team-domain hand-back to a path that is not the app's", async () => {
    const browser = new Browser(h.port);
    const uid = 'u'.repeat(20);
    for (const path of ['/other', '/evil', '/mcp/../other', '//evil.example']) {
      const query = new URLSearchParams({ app: mcpApp.id, host: toolsHost, path, uid });
      const page = await browser.request(`${h.url}/cdn-cgi/access/oauth/authorize?${query}`);
      expect(page.status, path).toBe(400);
    }
  });
});

describe('WebSocket upgrades to a managed app', () => {
  it('answers 401 with the challenge, refuses a foreign token, and admits its own token', async () => {
    const missing = await handshake('/live/feed');
    expect(missing).toMatch(/^HTTP\/1.1 401/);
    expect(headerOf(missing, 'www-authenticate')).toBe(
      `Bearer resource_metadata="http://${wsHost}/.well-known/oauth-protected-resource/live/feed", scope="access"`,
    );

    // The SDK's auth(): discovery from the path-inserted metadata, registration, authorization.
    const provider = aliceProvider();
    const serverUrl = `http://${wsHost}/live`;
    expect(await auth(provider, { serverUrl, fetchFn: local.fetch })).toBe('REDIRECT');
    const code = provider.callback?.searchParams.get('code');
    expect(code).toBeTruthy();
    expect(await auth(provider, { serverUrl, authorizationCode: code!, fetchFn: local.fetch })).toBe(
      'AUTHORIZED',
    );
    const token = provider.saved!.access_token;
    expect(decodeJwt(token)).toMatchObject({ iss: issuer(wsHost, '/live'), aud: liveApp.aud });

    // A token of another app's issuer (forged onto this host's issuer, so unsigned for it).
    const [header, , signature] = token.split('.');
    const foreign = `${header}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), aud: mcpApp.aud })).toString('base64url')}.${signature}`;
    const bad = await handshake('/live/feed', { authorization: `Bearer ${foreign}` });
    expect(bad).toMatch(/^HTTP\/1.1 401/);
    expect(headerOf(bad, 'www-authenticate')).toBe(
      `Bearer error="invalid_token", resource_metadata="http://${wsHost}/.well-known/oauth-protected-resource/live/feed", scope="access"`,
    );
    // The OAuth documents are not WebSocket endpoints.
    const metadata = await handshake('/.well-known/oauth-protected-resource/live');
    expect(metadata).toMatch(/^HTTP\/1.1 400/);
    expect(handshakes).toHaveLength(0);

    const admitted = await handshake('/live/feed', { authorization: `Bearer ${token}` });
    expect(admitted).toMatch(/^HTTP\/1.1 101/);
    // The origin verified the normal assertion for its AUD and never saw the OAuth token.
    expect(handshakes).toEqual([{ email: 'alice@example.com', authorization: null }]);
  });
});
