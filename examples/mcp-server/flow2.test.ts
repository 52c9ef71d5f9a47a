// Flow 2 end to end: the MCP SDK client (with its OAuth support) talks to the MCP server acting
// as an Access-for-SaaS OIDC client. The server is the client's authorization server; it sends
// the person to Gatehouse's per-app issuer, signs them in with a one-time PIN, keeps their
// Gatehouse tokens, and calls the wiki through Gatehouse with `Authorization: Bearer`.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { managementApi } from '../../src/cli/demo.ts';
import { fetchVia } from '../shared/connect.ts';
import { type DemoHarness, startDemoHarness } from '../support/demo.ts';
import { browseAuthorization, CLIENT_REDIRECT, TestOAuthProvider } from '../support/oauth-client.ts';

let h: DemoHarness;
beforeAll(async () => {
  h = await startDemoHarness('alice@example.com');
});
afterAll(() => h?.close());
afterEach(() => {
  vi.useRealTimers();
});

const text = (result: unknown) => ((result as CallToolResult).content[0] as { text: string }).text;

async function authorizedClient(email: string) {
  const provider = new TestOAuthProvider();
  const transport = () =>
    new StreamableHTTPClientTransport(new URL(h.demo.urls.mcpSaas), {
      authProvider: provider,
      fetch: fetchVia(h.demo.listen),
    });
  const first = transport();
  await expect(new Client({ name: 'flow2', version: '1' }).connect(first)).rejects.toThrow(/Unauthorized/);
  expect(provider.authorizationUrl?.origin).toBe(new URL(h.demo.urls.mcpSaas).origin);
  const result = await browseAuthorization(h, provider.authorizationUrl!, email);
  return { provider, transport, first, result };
}

/** authorizedClient's code exchanged by the SDK, and an MCP client connected with the token. */
async function signedInClient(email: string) {
  const { provider, transport, first, result } = await authorizedClient(email);
  const back = new URL(result.location ?? 'http://invalid/');
  const code = back.searchParams.get('code');
  expect(code, `${result.location} ${result.text.slice(0, 300)}`).toBeTruthy();
  await first.finishAuth(code!);
  expect(provider.saved?.access_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  const client = new Client({ name: 'flow2', version: '1' });
  await client.connect(transport());
  return { provider, client, back, code: code! };
}

/** An RFC 6749 token request (form-encoded POST). */
function tokenRequest(fetchFn: typeof fetch, url: string, form: Record<string, string>) {
  return fetchFn(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
}

describe('MCP server, flow 2 (Access for SaaS OIDC client)', () => {
  it('refreshes the Gatehouse token it keeps when it nears expiry, rotating the refresh token', async () => {
    const { client } = await signedInClient('alice@example.com');
    const created = await client.callTool({
      name: 'wiki_create',
      arguments: { slug: 'refresh-flow', title: 'Before', body: 'first token' },
    });
    expect(created.isError, text(created)).toBeFalsy();
    const stateFile = path.join(h.database.dataDir, 'mcp-saas.json');
    const grantOf = () =>
      (
        JSON.parse(readFileSync(stateFile, 'utf8')).grants as {
          email: string;
          gatehouse: Record<string, string>;
        }[]
      )
        .filter((g) => g.email === 'alice@example.com')
        .at(-1)!.gatehouse;
    const before = grantOf();
    expect(before.refresh_token).toBeTruthy();

    // The demo's SaaS app issues 5-minute access tokens; the server refreshes within 30 s of
    // expiry. Only the clock moves (every party runs in this process, so all see the same time).
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 4 * 60_000 + 45_000);
    const edited = await client.callTool({
      name: 'wiki_edit',
      arguments: { slug: 'refresh-flow', title: 'After', body: 'refreshed token' },
    });
    expect(edited.isError, text(edited)).toBeFalsy();
    expect(JSON.parse(text(edited))).toMatchObject({ updated_by: 'alice@example.com' });
    const after = grantOf();
    expect(after.access_token).not.toBe(before.access_token);
    // OAuth 2.1 §4.3.1: Gatehouse rotated the refresh token. A benign retry with the spent one
    // inside the 10 s grace window gets the same successor, not a second family (docs/saas-oidc.md).
    expect(after.refresh_token).not.toBe(before.refresh_token);
    const issuer = `${h.demo.teamDomain}/cdn-cgi/access/sso/oidc/${h.demo.seed.apps.mcpSaas.clientId}`;
    const retry = await tokenRequest(fetchVia(h.demo.listen), `${issuer}/token`, {
      grant_type: 'refresh_token',
      refresh_token: before.refresh_token!,
      client_id: h.demo.seed.apps.mcpSaas.clientId,
    });
    expect(retry.status).toBe(200);
    expect(await retry.json()).toMatchObject({ refresh_token: after.refresh_token, token_type: 'Bearer' });
    await client.close();
  });

  it('authorizes through Gatehouse and edits the wiki as the person, with a Bearer token', async () => {
    const { provider, client, back, code } = await signedInClient('alice@example.com');
    expect(back.searchParams.get('iss')).toBe(new URL(h.demo.urls.mcpSaas).origin);
    // The code was spent: a replay (even with the right verifier) gets invalid_grant.
    const replay = await tokenRequest(fetch, `${new URL(h.demo.urls.mcpSaas).origin}/token`, {
      grant_type: 'authorization_code',
      code,
      code_verifier: provider.verifier,
      redirect_uri: CLIENT_REDIRECT,
      client_id: String(provider.client?.client_id),
    });
    expect(replay.status).toBe(400);
    expect(await replay.json()).toEqual({ error: 'invalid_grant' });

    const created = await client.callTool({
      name: 'wiki_create',
      arguments: { slug: 'saas-flow', title: 'Flow 2', body: 'written through Access for SaaS' },
    });
    expect(created.isError, text(created)).toBeFalsy();
    expect(JSON.parse(text(created))).toMatchObject({ updated_by: 'alice@example.com' });
    const saved = JSON.parse(readFileSync(path.join(h.database.dataDir, 'wiki.json'), 'utf8'));
    const page = saved.pages.find((p: { slug: string }) => p.slug === 'saas-flow');
    expect(page.revisions[0].author).toBe('alice@example.com');

    // The MCP server keeps the Gatehouse tokens; the MCP client never sees them.
    const state = JSON.parse(readFileSync(path.join(h.database.dataDir, 'mcp-saas.json'), 'utf8'));
    const grant = state.grants.at(-1);
    expect(grant.email).toBe('alice@example.com');
    expect(grant.gatehouse.access_token).not.toBe(provider.saved?.access_token);
    expect(JSON.stringify(state)).not.toContain(provider.saved!.access_token);

    // revoke_tokens on the SaaS app: the next downstream call is refused by Gatehouse (401),
    // and the person reads why, within 5 s.
    const api = managementApi(fetchVia(h.demo.listen), `${h.demo.teamDomain}/client/v4`, h.demo.apiToken);
    const revokedAt = Date.now();
    await api(
      'POST',
      `/accounts/${h.demo.seed.accountId}/access/apps/${h.demo.seed.apps.mcpSaas.id}/revoke_tokens`,
    );
    let refused: unknown;
    do {
      refused = await client.callTool({ name: 'wiki_read', arguments: { slug: 'saas-flow' } });
    } while (!(refused as CallToolResult).isError && Date.now() - revokedAt < 5000);
    expect(text(refused)).toMatch(
      /^Gatehouse did not accept your sign-in for the wiki: it has expired or been revoked/,
    );
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    await client.close();
  });

  it('refuses a person the SaaS app does not allow, and a client redirect outside the registered set', async () => {
    // Gatehouse answers the MCP server's callback with access_denied; the MCP client gets the same.
    const { result } = await authorizedClient('mallory@example.com');
    const back = new URL(result.location!);
    expect(back.searchParams.get('error')).toBe('access_denied');
    expect(back.searchParams.has('code')).toBe(false);

    const register = await fetch(`${new URL(h.demo.urls.mcpSaas).origin}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://evil.example/cb'] }),
    });
    expect(register.status).toBe(400);
    expect(await register.json()).toMatchObject({ error: 'invalid_redirect_uri' });
  });

  it('answers an MCP request without a valid token with a 401 challenge naming its metadata', async () => {
    const response = await fetch(h.demo.urls.mcpSaas, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${'a'.repeat(43)}` },
      body: '{}',
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="invalid_token", resource_metadata="${new URL(h.demo.urls.mcpSaas).origin}/.well-known/oauth-protected-resource/mcp"`,
    );
  });
});
