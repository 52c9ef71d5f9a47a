// The client ID metadata document fetcher against real HTTPS and HTTP servers on loopback, with
// a certificate made in the test for a name (client.example) that only the test's resolver knows:
// a successful fetch therefore also proves the connection went to the address the fetcher
// checked, not to a second DNS answer.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressScope } from '../../src/oidc/managed/addresses.ts';
import {
  ClientMetadataError,
  ClientMetadataFetcher,
  type ClientMetadataFetcherOptions,
  cacheLifetimeSeconds,
  FETCH_TIMEOUT_MS,
  MAX_DOCUMENT_BYTES,
  parseClientIdUrl,
} from '../../src/oidc/managed/client-metadata-document.ts';
import { selfSignedCertificate, type TestCertificate } from './tls.ts';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

let certificate: TestCertificate;
let tlsServer: https.Server;
let plainServer: http.Server;
let tlsPort: number;
let plainPort: number;
const routes = new Map<string, Handler>();
const hits = new Map<string, number>();

function dispatch(req: http.IncomingMessage, res: http.ServerResponse) {
  const path = req.url ?? '';
  hits.set(path, (hits.get(path) ?? 0) + 1);
  const handler = routes.get(path);
  if (!handler) {
    res.writeHead(404).end();
    return;
  }
  handler(req, res);
}

beforeAll(async () => {
  certificate = await selfSignedCertificate({ dns: ['client.example'], ip: ['127.0.0.1'] });
  tlsServer = https.createServer({ cert: certificate.cert, key: certificate.key }, dispatch);
  plainServer = http.createServer(dispatch);
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => plainServer.listen(0, '127.0.0.1', resolve));
  tlsPort = (tlsServer.address() as AddressInfo).port;
  plainPort = (plainServer.address() as AddressInfo).port;
});

afterAll(async () => {
  tlsServer.closeAllConnections();
  plainServer.closeAllConnections();
  await new Promise((resolve) => tlsServer.close(resolve));
  await new Promise((resolve) => plainServer.close(resolve));
});

const clientUrl = (path: string) => `https://client.example:${tlsPort}${path}`;

function documentFor(clientId: string, extra: Record<string, unknown> = {}) {
  return JSON.stringify({
    client_id: clientId,
    client_name: 'Test MCP client',
    redirect_uris: ['http://127.0.0.1:33418/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    ...extra,
  });
}

function serveJson(path: string, body: (clientId: string) => string, headers: Record<string, string> = {}) {
  routes.set(path, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', ...headers });
    res.end(body(clientUrl(path)));
  });
}

/** Resolves client.example to loopback (where the test server is); other names as given. */
function fetcher(options: ClientMetadataFetcherOptions & { answers?: Record<string, string[]> } = {}) {
  const answers: Record<string, string[]> = { 'client.example': ['127.0.0.1'], ...options.answers };
  const lookups: string[] = [];
  const instance = new ClientMetadataFetcher({
    allowLoopback: true,
    ca: [certificate.cert],
    resolve: async (hostname) => {
      lookups.push(hostname);
      const addresses = answers[hostname];
      if (!addresses) throw new Error('ENOTFOUND');
      return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    },
    ...options,
  });
  return { instance, lookups };
}

async function refusal(promise: Promise<unknown>): Promise<ClientMetadataError> {
  const error = await promise.then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ClientMetadataError);
  return error as ClientMetadataError;
}

describe('client ID metadata documents', () => {
  it('fetches, validates and caches a good document per Cache-Control', async () => {
    serveJson('/good.json', (id) => documentFor(id, { scope: 'mcp', jwks_extra: 1 }), {
      'cache-control': 'public, max-age=60',
    });
    let now = Date.now();
    const { instance, lookups } = fetcher({ now: () => now });
    const first = await instance.get(clientUrl('/good.json'));
    expect(first).toMatchObject({
      client_id: clientUrl('/good.json'),
      client_name: 'Test MCP client',
      redirect_uris: ['http://127.0.0.1:33418/callback'],
      token_endpoint_auth_method: 'none',
      scope: 'mcp',
    });
    // Unknown members are not carried into the client Gatehouse registers.
    expect(first).not.toHaveProperty('jwks_extra');
    expect(await instance.get(clientUrl('/good.json'))).toEqual(first);
    expect(hits.get('/good.json')).toBe(1);
    expect(lookups).toEqual(['client.example']);
    now += 61_000;
    await instance.get(clientUrl('/good.json'));
    expect(hits.get('/good.json')).toBe(2);
  });

  it('does not cache a document served with no-store, and shares one fetch between concurrent callers', async () => {
    serveJson('/no-store.json', (id) => documentFor(id), { 'cache-control': 'no-store, max-age=600' });
    const { instance } = fetcher();
    await Promise.all([instance.get(clientUrl('/no-store.json')), instance.get(clientUrl('/no-store.json'))]);
    expect(hits.get('/no-store.json')).toBe(1);
    await instance.get(clientUrl('/no-store.json'));
    expect(hits.get('/no-store.json')).toBe(2);
  });

  it('refuses a document larger than 5 KB, declared or streamed', async () => {
    expect(MAX_DOCUMENT_BYTES).toBe(5120);
    serveJson('/large.json', (id) => documentFor(id, { padding: 'x'.repeat(6000) }));
    routes.set('/large-chunked.json', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const id = clientUrl('/large-chunked.json');
      res.write(`{"client_id":"${id}","padding":"`);
      // Chunked, no Content-Length: the limit must hold while reading.
      for (let i = 0; i < 8; i++) res.write('y'.repeat(1000));
      res.end('"}');
    });
    const { instance } = fetcher();
    expect((await refusal(instance.get(clientUrl('/large.json')))).code).toBe('too_large');
    expect((await refusal(instance.get(clientUrl('/large-chunked.json')))).code).toBe('too_large');
  });

  it('gives up on a slow server: headers late, or a body that trickles', async () => {
    expect(FETCH_TIMEOUT_MS).toBe(5000);
    routes.set('/slow-headers.json', (_req, res) => {
      const timer = setTimeout(
        () => res.writeHead(200).end(documentFor(clientUrl('/slow-headers.json'))),
        3000,
      );
      res.on('close', () => clearTimeout(timer));
    });
    routes.set('/slow-body.json', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
      const timer = setInterval(() => res.write(' '), 100);
      res.on('close', () => clearInterval(timer));
    });
    const { instance } = fetcher({ timeoutMs: 400 });
    const started = Date.now();
    expect((await refusal(instance.get(clientUrl('/slow-headers.json')))).code).toBe('timeout');
    expect((await refusal(instance.get(clientUrl('/slow-body.json')))).code).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('does not follow redirects', async () => {
    serveJson('/target.json', (id) => documentFor(id));
    routes.set('/redirect.json', (_req, res) => {
      res.writeHead(302, { location: clientUrl('/target.json') }).end();
    });
    const { instance } = fetcher();
    expect((await refusal(instance.get(clientUrl('/redirect.json')))).code).toBe('redirect');
    expect(hits.get('/target.json')).toBeUndefined();
  });

  it('refuses private, link-local and loopback addresses before connecting', async () => {
    serveJson('/private.json', (id) => documentFor(id));
    const cases: [string, string[]][] = [
      ['internal.example', ['10.1.2.3']],
      ['metadata.example', ['169.254.169.254']],
      ['mapped.example', ['::ffff:169.254.169.254']],
      ['ula.example', ['fd00::1']],
      // One public and one internal answer: refused, not decided by the public one.
      ['mixed.example', ['93.184.216.34', '192.168.1.10']],
    ];
    const answers = Object.fromEntries(cases);
    const { instance } = fetcher({ answers, allowLoopback: false });
    for (const [name] of cases) {
      const error = await refusal(instance.get(`https://${name}:${tlsPort}/private.json`));
      expect(error.code, name).toBe('forbidden_address');
    }
    // Loopback by name or by literal, unless allowed.
    expect((await refusal(instance.get(clientUrl('/private.json')))).code).toBe('forbidden_address');
    expect((await refusal(instance.get(`https://127.0.0.1:${tlsPort}/private.json`))).code).toBe(
      'forbidden_address',
    );
    expect((await refusal(instance.get(`https://[::1]:${tlsPort}/private.json`))).code).toBe(
      'forbidden_address',
    );
    expect(hits.get('/private.json')).toBeUndefined();
    // Private networks may be allowed explicitly (then the connection is attempted).
    const { instance: inside } = fetcher({ answers, allowLoopback: true, allowPrivateNetworks: true });
    await inside.get(clientUrl('/private.json'));
    expect(hits.get('/private.json')).toBe(1);
  });

  it('resolves once and connects to the checked address (no DNS rebinding)', async () => {
    serveJson('/rebind.json', (id) => documentFor(id));
    let calls = 0;
    const instance = new ClientMetadataFetcher({
      allowLoopback: true,
      ca: [certificate.cert],
      // First answer loopback (allowed here), any later answer an internal address.
      resolve: async () => [{ address: calls++ === 0 ? '127.0.0.1' : '10.9.9.9', family: 4 }],
    });
    await instance.get(clientUrl('/rebind.json'));
    expect(calls).toBe(1);
    expect(hits.get('/rebind.json')).toBe(1);
  });

  it('refuses a document whose client_id is not its URL, or that carries a secret', async () => {
    serveJson('/wrong-id.json', () => documentFor('https://attacker.example/client.json'));
    serveJson('/trailing.json', (id) => documentFor(`${id}/`));
    serveJson('/secret.json', (id) => documentFor(id, { client_secret: 's3cret' }));
    serveJson('/secret-auth.json', (id) =>
      documentFor(id, { token_endpoint_auth_method: 'client_secret_post' }),
    );
    serveJson('/jwks-uri.json', (id) => documentFor(id, { jwks_uri: 'https://10.0.0.1/jwks' }));
    serveJson('/no-redirects.json', (id) => documentFor(id, { redirect_uris: [] }));
    serveJson('/http-redirect.json', (id) => documentFor(id, { redirect_uris: ['http://evil.example/cb'] }));
    serveJson('/js-redirect.json', (id) => documentFor(id, { redirect_uris: ['javascript:alert(1)'] }));
    serveJson('/not-json.json', () => '<html>');
    const { instance } = fetcher();
    for (const path of [
      '/wrong-id.json',
      '/trailing.json',
      '/secret.json',
      '/secret-auth.json',
      '/jwks-uri.json',
      '/no-redirects.json',
      '/http-redirect.json',
      '/js-redirect.json',
      '/not-json.json',
    ]) {
      expect((await refusal(instance.get(clientUrl(path)))).code, path).toBe('invalid_document');
    }
  });

  it('refuses client_id URLs the draft does not allow, without any network request', async () => {
    const { instance, lookups } = fetcher();
    for (const id of [
      'https://client.example',
      'https://client.example/',
      'https://client.example/a#frag',
      'https://user:pw@client.example/a',
      'https://client.example/a/../b',
      'https://client.example/a/%2e%2e/b',
      'https://CLIENT.example/a',
      'ftp://client.example/a',
      'not a url',
    ]) {
      expect((await refusal(instance.get(id))).code, id).toBe('invalid_client_id');
    }
    expect(lookups).toEqual([]);
  });

  it('takes http only to loopback, and only when allowed', async () => {
    routes.set('/plain.json', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(documentFor(`http://127.0.0.1:${plainPort}/plain.json`));
    });
    const { instance } = fetcher({ answers: { 'public.example': ['93.184.216.34'] } });
    expect((await instance.get(`http://127.0.0.1:${plainPort}/plain.json`)).client_name).toBe(
      'Test MCP client',
    );
    expect((await refusal(instance.get(`http://public.example:${plainPort}/plain.json`))).code).toBe(
      'invalid_client_id',
    );
    const { instance: strict } = fetcher({ allowLoopback: false });
    expect((await refusal(strict.get(`http://127.0.0.1:${plainPort}/plain.json`))).code).toBe(
      'invalid_client_id',
    );
  });

  it('verifies the server certificate against the host name', async () => {
    serveJson('/untrusted.json', (id) => documentFor(id));
    const { instance } = fetcher({ ca: [] });
    expect((await refusal(instance.get(clientUrl('/untrusted.json')))).code).toBe('fetch_failed');
    // The certificate names client.example and 127.0.0.1, not other.example.
    const { instance: other } = fetcher({ answers: { 'other.example': ['127.0.0.1'] } });
    expect((await refusal(other.get(`https://other.example:${tlsPort}/untrusted.json`))).code).toBe(
      'fetch_failed',
    );
  });
});

describe('pure parts', () => {
  it('classifies addresses', () => {
    expect(addressScope('127.0.0.5')).toBe('loopback');
    expect(addressScope('::1')).toBe('loopback');
    expect(addressScope('::ffff:127.0.0.1')).toBe('loopback');
    expect(addressScope('100.64.0.1')).toBe('private');
    expect(addressScope('fe80::1')).toBe('private');
    expect(addressScope('0.0.0.0')).toBe('private');
    expect(addressScope('8.8.8.8')).toBe('public');
    expect(addressScope('2606:4700::1111')).toBe('public');
    expect(addressScope('example.com')).toBeNull();
  });

  it('reads cache lifetimes per RFC 9111', () => {
    const now = Date.parse('2026-11-26T00:00:00Z');
    expect(cacheLifetimeSeconds({ 'cache-control': 'max-age=120' }, now)).toBe(120);
    expect(cacheLifetimeSeconds({ 'cache-control': 'max-age=120', age: '100' }, now)).toBe(20);
    expect(cacheLifetimeSeconds({ 'cache-control': 'no-cache, max-age=120' }, now)).toBe(0);
    expect(cacheLifetimeSeconds({ 'cache-control': 'max-age=99999999' }, now)).toBe(86_400);
    expect(
      cacheLifetimeSeconds(
        { expires: 'Thu, 26 Nov 2026 00:05:00 GMT', date: 'Thu, 26 Nov 2026 00:00:00 GMT' },
        now,
      ),
    ).toBe(300);
    expect(cacheLifetimeSeconds({}, now)).toBe(0);
  });

  it('accepts a canonical https client_id with a path and a query', () => {
    expect(parseClientIdUrl('https://app.example/oauth/client.json?v=1', false).host).toBe('app.example');
  });
});
