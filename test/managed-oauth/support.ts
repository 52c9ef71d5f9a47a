// A tiny MCP server on the MCP SDK behind Gatehouse (it trusts only a verified
// Cf-Access-Jwt-Assertion), an MCP SDK client with an in-memory OAuthClientProvider
// (test/support/oauth-provider.ts) whose "browser" (test/support/browser.ts) is scripted
// through the team-domain one-time-PIN login, and a fetch that reaches `*.localhost` app hosts
// on the one listener (Node's resolver may not know them).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { formField, type LoginHarness } from '../login/support.ts';
import { Browser } from '../support/browser.ts';
import type { TestOAuthProvider } from '../support/oauth-provider.ts';

export interface McpFixture {
  port: number;
  /** Requests the origin saw, with the identity headers Gatehouse sent. */
  seen: { assertion: string | null; authorization: string | null; email: string | null }[];
  close(): Promise<void>;
}

/** The origin: verifies the assertion (jose, the team domain's certs, `aud`) and offers `whoami`. */
export async function startMcpFixture(teamDomain: string, aud: () => string): Promise<McpFixture> {
  const jwks = createRemoteJWKSet(new URL(`${teamDomain}/cdn-cgi/access/certs`));
  const seen: McpFixture['seen'] = [];
  const server = http.createServer(async (req, res) => {
    const assertion = req.headers['cf-access-jwt-assertion'];
    seen.push({
      assertion: typeof assertion === 'string' ? assertion : null,
      authorization: req.headers.authorization ?? null,
      email: (req.headers['cf-access-authenticated-user-email'] as string | undefined) ?? null,
    });
    let email: string;
    try {
      const { payload } = await jwtVerify(String(assertion), jwks, { issuer: teamDomain, audience: aud() });
      email = String(payload.email);
    } catch {
      res.writeHead(403).end('no valid assertion');
      return;
    }
    const mcp = new McpServer({ name: 'fixture', version: '1.0.0' });
    mcp.registerTool('whoami', { description: 'The signed-in user' }, async () => ({
      content: [{ type: 'text', text: email }],
    }));
    // Stateless: one transport per request (the SDK's documented pattern without sessions).
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      transport.close().catch(() => {});
      mcp.close().catch(() => {});
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** fetch for the SDK: every host name connects to loopback (like `curl --resolve`). */
export function loopbackFetch(): { fetch: typeof fetch; close(): Promise<void> } {
  const agent = new Agent({
    connect: {
      lookup: (_host, options, callback) => {
        if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
        else callback(null, '127.0.0.1', 4);
      },
    },
  });
  const doFetch = ((url: string | URL, init?: RequestInit) =>
    undiciFetch(url, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch;
  return { fetch: doFetch, close: () => agent.destroy() };
}

export const REDIRECT_URI = 'http://127.0.0.1:33418/callback';

/**
 * Plays the user's browser from the authorization URL to the client's redirect URI: follows
 * redirects across the app host and the team domain, and signs in with a PIN when the login asks.
 */
export function scriptedBrowser(h: LoginHarness, idp: string, email: string) {
  return async (start: URL): Promise<URL> => {
    const browser = new Browser(h.port);
    const callback = new URL(REDIRECT_URI).origin;
    let url = start.href;
    for (let step = 0; step < 20; step++) {
      if (
        new URL(url).origin === callback ||
        (!url.startsWith('http://127.0.0.1:') && !url.includes('.localhost:'))
      ) {
        return new URL(url);
      }
      const page = await browser.request(url);
      if (page.status >= 300 && page.status < 400 && page.location) {
        url = new URL(page.location, url).href;
        continue;
      }
      if (page.status === 200 && page.text.includes('name="idp"')) {
        const flow = formField(page.text, 'flow');
        await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp } });
        const pin = h.mailbox.nextPin(email);
        await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email } });
        const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
          form: { flow, pin: await pin },
        });
        if (!done.location) throw new Error(`PIN login answered ${done.status}: ${done.text.slice(0, 300)}`);
        url = new URL(done.location, url).href;
        continue;
      }
      throw new Error(`browser stopped at ${url}: ${page.status} ${page.text.slice(0, 300)}`);
    }
    throw new Error('too many redirects');
  };
}

/** Connects an MCP SDK client, doing the OAuth dance once when the server asks for it. */
export async function connectWithOAuth(
  serverUrl: URL,
  provider: TestOAuthProvider,
  fetchFn: typeof fetch,
): Promise<Client> {
  const client = new Client({ name: 'gatehouse-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: fetchFn });
  try {
    await client.connect(transport);
    return client;
  } catch (error) {
    if (!provider.callback) throw error;
  }
  const code = provider.callback.searchParams.get('code');
  if (!code) throw new Error(`authorization failed: ${provider.callback.search}`);
  await transport.finishAuth(code);
  const retry = new Client({ name: 'gatehouse-test', version: '1.0.0' });
  await retry.connect(
    new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: fetchFn }),
  );
  return retry;
}
