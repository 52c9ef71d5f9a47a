// Input bounds of the flow-2 authorization server (oauth.ts) toward MCP clients: its endpoints
// are open to anyone, so each test is an attack: oversized bodies, a registration flood, hostile
// redirect URIs, an open-redirect attempt at /authorize, an oversized `state`. These checks all
// happen before the server talks to Gatehouse, so the issuer here is a closed loopback port;
// flow2.test.ts covers the whole flow with a real Gatehouse.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../test/support/ports.ts';
import { MAX_CLIENTS, UNUSED_CLIENT_MS } from './oauth.ts';
import { createMcpHttpServer, type RunningMcpServer } from './server.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-mcp-oauth-'));
const dataFile = path.join(dir, 'mcp-saas.json');
let server: RunningMcpServer;
let base: string;

/** (Re)starts the server, loading `dataFile` as it is (a new port: no stale pooled connection). */
async function start(): Promise<void> {
  await server?.close();
  base = `http://127.0.0.1:${await freePort()}`;
  server = createMcpHttpServer({
    publicUrl: base,
    wikiUrl: 'http://wiki.localhost:1',
    dashboardUrl: 'http://dashboard.localhost:1',
    auth: {
      mode: 'saas',
      issuer: 'http://127.0.0.1:1/cdn-cgi/access/sso/oidc/unused',
      clientId: 'unused',
      dataFile,
    },
  });
  await server.listen(Number(new URL(base).port));
}

beforeAll(start);
afterEach(async () => {
  rmSync(dataFile, { force: true });
  await start();
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const saved = (): { clients: { client_id: string }[]; grants: unknown[] } =>
  existsSync(dataFile) ? JSON.parse(readFileSync(dataFile, 'utf8')) : { clients: [], grants: [] };

function register(body: unknown, contentType = 'application/json') {
  return fetch(`${base}/register`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const GOOD_REDIRECT = 'https://app.example/oauth/callback';

async function authorize(params: Record<string, string>) {
  const url = new URL(`${base}/authorize`);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return fetch(url, { redirect: 'manual' });
}

describe('flow-2 authorization server: request bodies', () => {
  it('refuses a registration body over 16 KB with 413 and keeps nothing', async () => {
    const response = await register({ redirect_uris: [GOOD_REDIRECT], client_name: 'x'.repeat(17 * 1024) });
    expect(response.status).toBe(413);
    expect(saved().clients).toHaveLength(0);
  });

  it('refuses a registration that is not JSON, or has too many or too long redirect URIs', async () => {
    expect(
      (await register(`redirect_uris=${GOOD_REDIRECT}`, 'application/x-www-form-urlencoded')).status,
    ).toBe(415);
    const many = await register({
      redirect_uris: Array.from({ length: 6 }, (_, i) => `${GOOD_REDIRECT}/${i}`),
    });
    expect(many.status).toBe(400);
    expect(await many.json()).toEqual({ error: 'invalid_client_metadata' });
    const long = await register({ redirect_uris: [`${GOOD_REDIRECT}?${'a'.repeat(1024)}`] });
    expect(long.status).toBe(400);
    expect(saved().clients).toHaveLength(0);
  });

  it('refuses a token request over 16 KB with 413, and one that is not a form with 415', async () => {
    const big = await fetch(`${base}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=authorization_code&code=${'a'.repeat(17 * 1024)}`,
    });
    expect(big.status).toBe(413);
    const json = await fetch(`${base}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'authorization_code', code: 'x' }),
    });
    expect(json.status).toBe(415);
  });
});

describe('flow-2 authorization server: redirect URIs', () => {
  it.each([
    'http://evil.example/cb',
    'http://127.0.0.1.evil.example/cb',
    'http://localhost.evil.example/cb',
    'http://[::2]/cb',
    'javascript:alert(document.cookie)',
    'data:text/html,<script>alert(1)</script>',
    'file:///etc/passwd',
    'com.evil.app:/callback',
    'https://user:secret@app.example/cb',
    'https://app.example/cb#fragment',
    'https://app.example/cb#',
    ' https://app.example/cb',
    'https://app.example/c\nb',
    'https://app.example/c\tb',
    'not a url',
  ])('refuses to register %j', async (uri) => {
    const response = await register({ redirect_uris: [GOOD_REDIRECT, uri] });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'invalid_redirect_uri' });
    expect(saved().clients).toHaveLength(0);
  });

  it.each([
    GOOD_REDIRECT,
    'http://127.0.0.1:33418/callback',
    'http://[::1]:8080/cb',
    'http://localhost:3000/cb',
  ])('registers %j', async (uri) => {
    const response = await register({ redirect_uris: [uri], client_name: 'desktop client' });
    expect(response.status).toBe(201);
    const body = (await response.json()) as { client_id: string; redirect_uris: string[] };
    expect(body.redirect_uris).toEqual([uri]);
    expect(saved().clients.map((c) => c.client_id)).toEqual([body.client_id]);
  });

  it('sends nobody to a redirect URI the client did not register (no open redirect)', async () => {
    const { client_id } = (await (await register({ redirect_uris: [GOOD_REDIRECT] })).json()) as {
      client_id: string;
    };
    const request = {
      client_id,
      response_type: 'code',
      code_challenge: 'a'.repeat(43),
      code_challenge_method: 'S256',
    };
    for (const redirect_uri of [
      'https://evil.example/cb',
      `${GOOD_REDIRECT}/../evil`,
      `${GOOD_REDIRECT}?next=https://evil.example`,
      GOOD_REDIRECT.toUpperCase(),
    ]) {
      const response = await authorize({ ...request, redirect_uri });
      expect(response.status, redirect_uri).toBe(400);
      expect(response.headers.get('location')).toBeNull();
    }
    const unknown = await authorize({ ...request, client_id: 'forged', redirect_uri: GOOD_REDIRECT });
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get('location')).toBeNull();
  });

  it('refuses a `state` over 1024 characters without holding or echoing it', async () => {
    const { client_id } = (await (await register({ redirect_uris: [GOOD_REDIRECT] })).json()) as {
      client_id: string;
    };
    const response = await authorize({
      client_id,
      redirect_uri: GOOD_REDIRECT,
      response_type: 'code',
      code_challenge: 'a'.repeat(43),
      code_challenge_method: 'S256',
      state: 's'.repeat(1025),
    });
    // Back to the (registered) client with an error, not on to Gatehouse's sign-in.
    expect(response.status).toBe(302);
    const back = new URL(response.headers.get('location')!);
    expect(`${back.origin}${back.pathname}`).toBe(GOOD_REDIRECT);
    expect(back.searchParams.get('error')).toBe('invalid_request');
    expect(back.searchParams.has('state')).toBe(false);
  });
});

describe('flow-2 authorization server: registrations kept', () => {
  const grant = (clientId: string) => ({
    id: `grant-${clientId}`,
    client_id: clientId,
    email: 'alice@example.com',
    gatehouse: { access_token: 'at', refresh_token: null, expires_at: 0 },
  });
  const client = (clientId: string, createdAt: number) => ({
    client_id: clientId,
    redirect_uris: [GOOD_REDIRECT],
    created_at: createdAt,
  });

  it(`keeps at most ${MAX_CLIENTS}: a flood evicts unused registrations, never one in use`, async () => {
    const now = Date.now();
    writeFileSync(
      dataFile,
      JSON.stringify({
        // The oldest registration is in use (a person signed in with it); the next is unused
        // and past its expiry.
        clients: [
          client('in-use', now - 2 * UNUSED_CLIENT_MS),
          client('stale', now - UNUSED_CLIENT_MS - 1000),
        ],
        grants: [grant('in-use')],
        tokens: {},
      }),
    );
    await start();
    const flood: string[] = [];
    for (let i = 0; i < MAX_CLIENTS + 10; i++) {
      const response = await register({ redirect_uris: [`http://127.0.0.1:${1000 + i}/cb`] });
      expect(response.status).toBe(201);
      flood.push(((await response.json()) as { client_id: string }).client_id);
    }
    const kept = saved().clients.map((c) => c.client_id);
    expect(kept).toHaveLength(MAX_CLIENTS);
    expect(kept).toContain('in-use');
    expect(kept).not.toContain('stale');
    // The oldest unused registrations made room for the newest.
    expect(kept.slice(1)).toEqual(flood.slice(11));
  });

  it('refuses a registration with 503 when every kept registration is in use', async () => {
    const now = Date.now();
    const ids = Array.from({ length: MAX_CLIENTS }, (_, i) => `client-${i}`);
    writeFileSync(
      dataFile,
      JSON.stringify({ clients: ids.map((id) => client(id, now)), grants: ids.map(grant), tokens: {} }),
    );
    await start();
    const response = await register({ redirect_uris: [GOOD_REDIRECT] });
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: 'temporarily_unavailable' });
    expect(saved().clients.map((c) => c.client_id)).toEqual(ids);
  });
});
