// Composition root of the HTTP side: one node:http listener that dispatches on Host. The team
// domain is served by a Fastify app (certs, health, and later login, OIDC and the management
// API); application hosts go to the data plane; any other host gets a 404 that names nothing.
// `--api-listen` opens a second listener that serves only `/client/v4` and health.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { formatListenAddress, parseListenAddress } from './config/listen.ts';
import type { Gateway } from './gateway.ts';
import type { Logger } from './logging.ts';

/** Handles requests for application hosts; returns false when the host is not one of them. */
export type AppHostHandler = (req: http.IncomingMessage, res: http.ServerResponse, host: string) => boolean;

export interface GatewayServer {
  teamApp: FastifyInstance;
  /** Starts both listeners; resolves with the addresses actually bound (port 0 is resolved). */
  listen(): Promise<{ listen: string; apiListen: string | null }>;
  /** Graceful shutdown: stop accepting, let requests in flight finish (bounded), close the store. */
  close(): Promise<void>;
}

export interface ServerOptions {
  appHosts?: AppHostHandler;
  /** How long in-flight requests may take to finish on shutdown before they are cut. */
  drainTimeoutMs?: number;
}

export async function createServer(
  gateway: Gateway,
  logger: Logger,
  options: ServerOptions = {},
): Promise<GatewayServer> {
  const teamUrl = new URL(gateway.settings.teamDomain);
  const teamHost = teamUrl.host.toLowerCase();
  const defaultPort = teamUrl.protocol === 'https:' ? '443' : '80';

  const teamApp = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    // Request ids are ours, not taken from a client header.
    genReqId: () => crypto.randomUUID(),
  });
  registerCoreRoutes(teamApp, gateway);
  await teamApp.ready();

  const notFound = (res: http.ServerResponse) => {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('Not found\n');
  };

  const main = http.createServer({ headersTimeout: 30_000, requestTimeout: 300_000 }, (req, res) => {
    const host = normaliseHost(req.headers.host, defaultPort);
    if (host === teamHost) return teamApp.routing(req, res);
    if (host && options.appHosts?.(req, res, host)) return;
    notFound(res);
  });
  const api = gateway.settings.apiListen
    ? http.createServer({ headersTimeout: 30_000, requestTimeout: 300_000 }, (req, res) => {
        const path = (req.url ?? '').split('?')[0] ?? '';
        if (
          path === '/healthz' ||
          path === '/readyz' ||
          path === '/client/v4' ||
          path.startsWith('/client/v4/')
        ) {
          return teamApp.routing(req, res);
        }
        notFound(res);
      })
    : null;
  main.keepAliveTimeout = 5_000;

  const servers = [main, ...(api ? [api] : [])];
  return {
    teamApp,
    async listen() {
      const bound = await bind(main, gateway.settings.listen);
      const apiBound = api ? await bind(api, gateway.settings.apiListen!) : null;
      return { listen: bound, apiListen: apiBound };
    },
    async close() {
      const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
      const closed = servers.map(
        (server) =>
          new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
      );
      for (const server of servers) server.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const server of servers) server.closeAllConnections();
      }, drainTimeoutMs);
      await Promise.all(closed);
      clearTimeout(timer);
      await teamApp.close();
      await gateway.close();
    },
  };
}

function registerCoreRoutes(app: FastifyInstance, gateway: Gateway): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const store = await gateway.store.ping();
    let keys = true;
    try {
      gateway.keys.signingKey();
    } catch {
      keys = false;
    }
    const ready = store && keys;
    return reply
      .code(ready ? 200 : 503)
      .send({ status: ready ? 'ready' : 'degraded', checks: { store, keys } });
  });
  // Cloudflare's exact shape (spec §4.4): current and previous key, with their certificates.
  app.get('/cdn-cgi/access/certs', async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=300').send(gateway.keys.certs()),
  );
}

/** Lower-cases a Host header and drops the scheme's default port, so `a:80` equals `a`. */
export function normaliseHost(header: string | undefined, defaultPort: string): string | null {
  if (!header) return null;
  const host = header.trim().toLowerCase().replace(/\.$/, '');
  const suffix = `:${defaultPort}`;
  return host.endsWith(suffix) ? host.slice(0, -suffix.length) : host;
}

async function bind(server: http.Server, listen: string): Promise<string> {
  const address = parseListenAddress(listen)!;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const info = server.address() as AddressInfo;
  return formatListenAddress({ host: info.address, port: info.port });
}
