// The MCP server for internal apps, on the SDK's streamable HTTP transport (stateless: every
// POST carries its own credential, so nothing about a person outlives their request). Two
// modes, chosen by configuration:
// - 'access' (flow 1): a self-hosted app behind Gatehouse (managed OAuth in front). It trusts
//   only a verified Cf-Access-Jwt-Assertion for its own AUD and forwards it as Cf-Access-Token;
// - 'saas' (flow 2): an Access-for-SaaS OIDC client and the authorization server toward its
//   MCP clients (oauth.ts); it calls the apps with the person's Gatehouse access token.
import http from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { AccessDenied, createAccessVerifier } from '../shared/access.ts';
import { fetchVia } from '../shared/connect.ts';
import { HttpError, readJson, sendJson } from '../shared/http.ts';
import { closeServer, listenOn } from '../shared/listen.ts';
import type { Credential } from './downstream.ts';
import { SaasAuthorizationServer } from './oauth.ts';
import { buildMcpServer } from './tools.ts';

export type McpAuthMode =
  | { mode: 'access'; teamDomain: string; aud: string }
  | { mode: 'saas'; issuer: string; clientId: string; clientSecret?: string; dataFile: string };

export interface McpServerOptions {
  /** The origin MCP clients use: `http://mcp.localhost:8080` (flow 1) or this server's own (flow 2). */
  publicUrl: string;
  /** Public URLs of the apps, reached through Gatehouse. */
  wikiUrl: string;
  dashboardUrl: string;
  /** Gatehouse's listen address, when `*.localhost` names do not resolve. */
  gatewayListen?: string;
  auth: McpAuthMode;
}

export interface RunningMcpServer {
  server: http.Server;
  listen(port: number, host?: string): Promise<string>;
  close(): Promise<void>;
}

const MAX_MESSAGE_BYTES = 1024 * 1024;

export function createMcpHttpServer(options: McpServerOptions): RunningMcpServer {
  const publicUrl = options.publicUrl.replace(/\/+$/, '');
  const connect = fetchVia(options.gatewayListen);
  const targets = {
    wiki: { label: 'the wiki', url: options.wikiUrl },
    dashboard: { label: 'the admin dashboard', url: options.dashboardUrl },
    fetch: connect,
  };
  const verify =
    options.auth.mode === 'access'
      ? createAccessVerifier({ teamDomain: options.auth.teamDomain, aud: options.auth.aud, fetch: connect })
      : null;
  const saas =
    options.auth.mode === 'saas'
      ? new SaasAuthorizationServer({
          publicUrl,
          issuer: options.auth.issuer,
          clientId: options.auth.clientId,
          dataFile: options.auth.dataFile,
          fetch: connect,
          ...(options.auth.clientSecret && { clientSecret: options.auth.clientSecret }),
        })
      : null;
  // Requests reach us with the public Host (Gatehouse keeps it): anything else is a DNS
  // rebinding attempt or a client that bypassed the gateway.
  const allowedHosts = [new URL(publicUrl).host];

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://mcp.invalid');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (saas && (await saas.handle(req, res, url))) return;
    if (url.pathname !== '/mcp') throw new HttpError(404, 'not found; the MCP endpoint is /mcp');
    if (req.method !== 'POST') {
      // Stateless server: no standalone SSE stream and no session to delete (streamable HTTP §2.2-2.5).
      res.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    let credential: Credential;
    if (verify) {
      try {
        credential = { kind: 'assertion', token: (await verify(req.headers)).assertion };
      } catch (error) {
        if (!(error instanceof AccessDenied)) throw error;
        return sendJson(res, 403, {
          error: 'this MCP server accepts only requests that come through Gatehouse',
        });
      }
    } else {
      const grant = await saas!.grantFor(req.headers.authorization);
      if (!grant) return saas!.challenge(res, req.headers.authorization ? 'invalid_token' : undefined);
      credential = { kind: 'bearer', token: grant.gatehouse.access_token };
    }
    const body = await readJson(req, MAX_MESSAGE_BYTES);
    const mcp = buildMcpServer(targets, async () => credential);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
      enableDnsRebindingProtection: true,
      allowedHosts,
    });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  };

  const server = http.createServer({ headersTimeout: 30_000, requestTimeout: 120_000 }, (req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (error instanceof HttpError) return sendJson(res, error.status, { error: error.message });
      console.error('mcp-server:', error);
      sendJson(res, 500, { error: 'internal error' });
    });
  });

  return {
    server,
    listen: (port, host) => listenOn(server, port, host),
    close: () => closeServer(server),
  };
}
