// The MCP tools: the wiki (search, read, create, edit page) and the dashboard (users, recent
// events). Each call runs with the credential of the person whose MCP request it serves.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Fetch } from '../shared/connect.ts';
import { type Credential, callApp, type DownstreamApp, ToolFailure } from './downstream.ts';

export interface ToolTargets {
  wiki: DownstreamApp;
  dashboard: DownstreamApp;
  fetch: Fetch;
}

const slug = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,63}$/)
  .describe('page name: lower-case letters, digits and dashes');

/** A fresh MCP server whose tools act with `credential` (one per HTTP request, stateless). */
export function buildMcpServer(targets: ToolTargets, credential: () => Promise<Credential>): McpServer {
  const server = new McpServer({ name: 'gatehouse-internal-apps', version: '0.1.0' });
  const wiki = async (method: string, path: string, body?: unknown) =>
    callApp(targets.fetch, targets.wiki, await credential(), method, path, body);
  const dashboard = async (path: string) =>
    callApp(targets.fetch, targets.dashboard, await credential(), 'GET', path);

  server.registerTool(
    'wiki_search',
    {
      title: 'Search the wiki',
      description: 'Find company wiki pages whose name, title or text contain every word of the query.',
      inputSchema: { query: z.string().max(200) },
    },
    ({ query }) => run(() => wiki('GET', `/api/pages?q=${encodeURIComponent(query)}`)),
  );
  server.registerTool(
    'wiki_read',
    { title: 'Read a wiki page', description: 'The current text of a wiki page.', inputSchema: { slug } },
    ({ slug: name }) => run(() => wiki('GET', `/api/pages/${name}`)),
  );
  server.registerTool(
    'wiki_create',
    {
      title: 'Create a wiki page',
      description: 'Creates a new wiki page, recorded under your name.',
      inputSchema: { slug, title: z.string().min(1).max(200), body: z.string().max(100_000) },
    },
    (input) => run(() => wiki('POST', '/api/pages', input)),
  );
  server.registerTool(
    'wiki_edit',
    {
      title: 'Edit a wiki page',
      description:
        'Replaces the text (and optionally the title) of a wiki page; the change is recorded under your name. ' +
        'Give base_revision (from wiki_read) to refuse the edit if someone changed the page meanwhile.',
      inputSchema: {
        slug,
        body: z.string().max(100_000),
        title: z.string().min(1).max(200).optional(),
        base_revision: z.number().int().min(1).optional(),
      },
    },
    ({ slug: name, body, title, base_revision }) =>
      run(async () => {
        const current = title ? null : ((await wiki('GET', `/api/pages/${name}`)) as { title: string });
        return wiki('PUT', `/api/pages/${name}`, {
          title: title ?? current!.title,
          body,
          ...(base_revision !== undefined && { base_revision }),
        });
      }),
  );
  server.registerTool(
    'dashboard_list_users',
    { title: 'List users', description: 'People who have signed in through Gatehouse.' },
    () => run(() => dashboard('/api/users')),
  );
  server.registerTool(
    'dashboard_recent_events',
    {
      title: 'Recent access events',
      description: 'The latest sign-ins and access decisions, newest first.',
      inputSchema: { limit: z.number().int().min(1).max(100).optional() },
    },
    ({ limit }) => run(() => dashboard(`/api/events?limit=${limit ?? 25}`)),
  );
  return server;
}

async function run(action: () => Promise<unknown>): Promise<CallToolResult> {
  try {
    const result = await action();
    return { content: [{ type: 'text', text: JSON.stringify(result, null, 2) }] };
  } catch (error) {
    if (error instanceof ToolFailure)
      return { isError: true, content: [{ type: 'text', text: error.message }] };
    throw error;
  }
}
