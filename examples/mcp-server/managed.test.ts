// Flow 1 with Gatehouse's managed OAuth: the MCP SDK client (a real client, with its OAuth
// support) meets a 401 at mcp.localhost, discovers the protected-resource and authorization
// server metadata, registers, signs the person in with a PIN, gets a token bound to the MCP
// app, and calls a tool that edits the wiki; the wiki records the person.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchVia } from '../shared/connect.ts';
import { type DemoHarness, startDemoHarness } from '../support/demo.ts';
import { browseAuthorization, TestOAuthProvider } from '../support/oauth-client.ts';

let h: DemoHarness;
beforeAll(async () => {
  h = await startDemoHarness('alice@example.com');
});
afterAll(() => h?.close());

const text = (result: unknown) => ((result as CallToolResult).content[0] as { text: string }).text;

describe('MCP server, flow 1 with managed OAuth', () => {
  it('completes managed OAuth with the SDK client and edits the wiki as the person', async () => {
    const provider = new TestOAuthProvider();
    const transport = () =>
      new StreamableHTTPClientTransport(new URL(h.demo.urls.mcp), {
        authProvider: provider,
        fetch: fetchVia(h.demo.listen),
      });
    const first = transport();
    await expect(new Client({ name: 'managed', version: '1' }).connect(first)).rejects.toThrow(
      /Unauthorized/,
    );
    const result = await browseAuthorization(h, provider.authorizationUrl!, 'alice@example.com');
    const back = new URL(result.location ?? 'http://invalid/');
    expect(
      back.searchParams.get('code'),
      `${result.status} ${result.location} ${result.text.slice(0, 300)}`,
    ).toBeTruthy();
    await first.finishAuth(back.searchParams.get('code')!);

    const client = new Client({ name: 'managed', version: '1' });
    await client.connect(transport());
    const created = await client.callTool({
      name: 'wiki_create',
      arguments: { slug: 'managed-oauth', title: 'Managed OAuth', body: 'through the MCP app' },
    });
    expect(created.isError, text(created)).toBeFalsy();
    const saved = JSON.parse(readFileSync(path.join(h.database.dataDir, 'wiki.json'), 'utf8'));
    const page = saved.pages.find((p: { slug: string }) => p.slug === 'managed-oauth');
    expect(page.revisions[0].author).toBe('alice@example.com');
    await client.close();
  });
});
