// Flow 1 end to end: the MCP SDK client reaches the MCP server THROUGH Gatehouse (a self-hosted
// app), the MCP server forwards the assertion it received as Cf-Access-Token to the wiki and
// the dashboard through Gatehouse, and the wiki records the person's email. Here the client is
// one without OAuth support: it presents the app token it obtained by a real one-time PIN login
// as Cf-Access-Token (Gatehouse accepts an app's own token there); managed.test.ts covers the
// same flow with the SDK's OAuth support against Gatehouse's managed OAuth.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { managementApi } from '../../src/cli/demo.ts';
import { fetchVia } from '../shared/connect.ts';
import { forgedAssertion } from '../support/assertions.ts';
import { type DemoHarness, startDemoHarness } from '../support/demo.ts';

let h: DemoHarness;
let token: string;

beforeAll(async () => {
  h = await startDemoHarness('alice@example.com');
  token = (await h.login(`mcp.localhost:${h.port}`, 'alice@example.com')).token;
});
afterAll(() => h?.close());

async function connect(credential: Record<string, string>): Promise<Client> {
  const client = new Client({ name: 'flow1-test', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(h.demo.urls.mcp), {
      fetch: fetchVia(h.demo.listen),
      requestInit: { headers: credential },
    }),
  );
  return client;
}

const text = (result: unknown) => ((result as CallToolResult).content[0] as { text: string }).text;

describe('MCP server, flow 1 (self-hosted app behind Gatehouse)', () => {
  it('lists the tools and edits a wiki page as the signed-in person', async () => {
    const client = await connect({ 'cf-access-token': token });
    const tools = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(tools).toEqual([
      'dashboard_list_users',
      'dashboard_recent_events',
      'wiki_create',
      'wiki_edit',
      'wiki_read',
      'wiki_search',
    ]);

    const created = await client.callTool({
      name: 'wiki_create',
      arguments: { slug: 'release-notes', title: 'Release notes', body: 'v1: first release' },
    });
    expect(created.isError).toBeFalsy();
    expect(JSON.parse(text(created))).toMatchObject({ revision: 1, updated_by: 'alice@example.com' });
    const edited = await client.callTool({
      name: 'wiki_edit',
      arguments: { slug: 'release-notes', body: 'v1: first release\nv2: MCP tools', base_revision: 1 },
    });
    expect(JSON.parse(text(edited))).toMatchObject({
      revision: 2,
      title: 'Release notes',
      updated_by: 'alice@example.com',
    });
    const found = await client.callTool({ name: 'wiki_search', arguments: { query: 'mcp tools' } });
    expect(JSON.parse(text(found)).pages.map((p: { slug: string }) => p.slug)).toEqual(['release-notes']);

    // The wiki's own file: every revision under the person's email, none under the MCP server.
    const saved = JSON.parse(readFileSync(path.join(h.database.dataDir, 'wiki.json'), 'utf8'));
    expect(saved.pages[0].revisions.map((r: { author: string }) => r.author)).toEqual([
      'alice@example.com',
      'alice@example.com',
    ]);

    const conflict = await client.callTool({
      name: 'wiki_edit',
      arguments: { slug: 'release-notes', body: 'stale', base_revision: 1 },
    });
    expect(conflict.isError).toBe(true);
    expect(text(conflict)).toMatch(/^the wiki: page "release-notes" changed since revision 1/);

    const users = await client.callTool({ name: 'dashboard_list_users', arguments: {} });
    expect(JSON.parse(text(users)).users.map((u: { email: string }) => u.email)).toContain(
      'alice@example.com',
    );
    const events = await client.callTool({ name: 'dashboard_recent_events', arguments: { limit: 5 } });
    expect(JSON.parse(text(events)).events.length).toBeGreaterThan(0);
    await client.close();
  });

  it('turns a downstream 403 into a message a person understands', async () => {
    const api = managementApi(fetchVia(h.demo.listen), `${h.demo.teamDomain}/client/v4`, h.demo.apiToken);
    const access = `/accounts/${h.demo.seed.accountId}/access`;
    const app = await api<Record<string, unknown>>('GET', `${access}/apps/${h.demo.seed.apps.dashboard.id}`);
    const policies = (app.policies as { id: string; name: string }[]).filter(
      (p) => !p.name.includes('flow 1'),
    );
    // The dashboard stops accepting the MCP server's linked tokens.
    await api('PUT', `${access}/apps/${h.demo.seed.apps.dashboard.id}`, {
      type: 'self_hosted',
      name: app.name,
      domain: app.domain,
      policies: policies.map((p, i) => ({ id: p.id, precedence: i + 1 })),
    });
    const client = await connect({ 'cf-access-token': token });
    const deadline = Date.now() + 5000;
    let result: unknown;
    do {
      result = await client.callTool({ name: 'dashboard_list_users', arguments: {} });
    } while (!(result as CallToolResult).isError && Date.now() < deadline);
    expect((result as CallToolResult).isError).toBe(true);
    expect(text(result)).toMatch(
      /You are signed in, but the admin dashboard does not let this MCP server act for you/,
    );
    // The wiki still does.
    const read = await client.callTool({ name: 'wiki_read', arguments: { slug: 'release-notes' } });
    expect(read.isError).toBeFalsy();
    await client.close();
  });

  it('refuses MCP requests that bypass Gatehouse or carry a forged assertion', async () => {
    const mcpOrigin = `http://127.0.0.1:${h.ports.mcp}`;
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    const headers = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      host: `mcp.localhost:${h.port}`,
    };
    const none = await fetch(`${mcpOrigin}/mcp`, { method: 'POST', headers, body });
    expect(none.status).toBe(403);
    const certs = (await (
      await fetchVia(h.demo.listen)(`${h.demo.teamDomain}/cdn-cgi/access/certs`)
    ).json()) as {
      public_cert: { kid: string };
    };
    const forgery = await forgedAssertion(
      { issuer: h.demo.teamDomain, kid: certs.public_cert.kid },
      h.demo.seed.apps.mcp.aud,
    );
    const forged = await fetch(`${mcpOrigin}/mcp`, {
      method: 'POST',
      headers: { ...headers, 'cf-access-jwt-assertion': forgery },
      body,
    });
    expect(forged.status).toBe(403);
  });

  it('refuses the MCP client within 5 s of revoke_tokens on the MCP app', async () => {
    const api = managementApi(fetchVia(h.demo.listen), `${h.demo.teamDomain}/client/v4`, h.demo.apiToken);
    const client = await connect({ 'cf-access-token': token });
    expect(
      (await client.callTool({ name: 'wiki_read', arguments: { slug: 'release-notes' } })).isError,
    ).toBeFalsy();
    const revokedAt = Date.now();
    await api(
      'POST',
      `/accounts/${h.demo.seed.accountId}/access/apps/${h.demo.seed.apps.mcp.id}/revoke_tokens`,
    );
    let failure: unknown = null;
    while (!failure && Date.now() - revokedAt < 5000) {
      try {
        await client.callTool({ name: 'wiki_read', arguments: { slug: 'release-notes' } });
        await new Promise((resolve) => setTimeout(resolve, 100));
      } catch (error) {
        failure = error;
      }
    }
    // Gatehouse refuses the revoked token in front of the MCP server (decision 3 and 5).
    expect((failure as { code?: number }).code).toBe(401);
    expect(String(failure)).toMatch(/invalid_token/);
    expect(Date.now() - revokedAt).toBeLessThan(5000);
  });
});
