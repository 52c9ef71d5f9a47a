// Composition root of the HTTP side: one node:http listener that dispatches on Host. The team
// domain is served by a Fastify app (certs, health, and later login, OIDC and the management
// API); application hosts go to the data plane; any other host gets a 404 that names nothing.
// `--api-listen` opens a second listener that serves only `/client/v4` and health.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { API_PREFIX, managementApi } from './api/plugin.ts';
import { formatListenAddress, parseListenAddress } from './config/listen.ts';
import type { Gateway } from './gateway.ts';
import { createCountrySource } from './geo/country.ts';
import type { Logger } from './logging.ts';
import { orgSessions } from './login/org-session.ts';
import { type LoginOptions, loginRoutes } from './login/plugin.ts';
import { loadOidcLibrary } from './oidc/engine.ts';
import { ManagedOAuth, type ManagedOAuthOptions } from './oidc/managed/managed-oauth.ts';
import { SaasOidcService, saasOidcRoutes } from './oidc/service.ts';
import type { ExternalEvaluatorOptions } from './policy-external/external-evaluation.ts';
import { accountSignedEvaluator, identityDecider } from './policy-external/identity-decision.ts';
import { snapshotSource } from './proxy/from-snapshot.ts';
import { GatehouseProxy } from './proxy/proxy.ts';
import { ProxyRecorder } from './proxy/recorder.ts';
import { listenerTlsOptions } from './tls/listener.ts';

/** Handles requests for application hosts; returns false when the host is not one of them. */
export type AppHostHandler = (req: http.IncomingMessage, res: http.ServerResponse, host: string) => boolean;

/** Handles HTTP/1.1 upgrades (WebSocket) for application hosts; false when the host is not one. */
export type AppUpgradeHandler = (
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  host: string,
) => boolean;

export interface GatewayServer {
  teamApp: FastifyInstance;
  /** Starts both listeners; resolves with the addresses actually bound (port 0 is resolved). */
  listen(): Promise<{ listen: string; apiListen: string | null }>;
  /** Graceful shutdown: stop accepting, let requests in flight finish (bounded), close the store. */
  close(): Promise<void>;
}

export interface ServerOptions {
  appHosts?: AppHostHandler;
  appUpgrades?: AppUpgradeHandler;
  /** Team-domain login: test seams (GitHub endpoints, mailer, upstream limits). */
  login?: LoginOptions;
  /** How long in-flight requests may take to finish on shutdown before they are cut. */
  drainTimeoutMs?: number;
  /** Managed OAuth at app hosts: test seams (client ID metadata document fetching). */
  managedOAuth?: ManagedOAuthOptions;
  /** External evaluation deadline and caching (default: 5 s, 30 s); tests shorten them. */
  externalEvaluation?: Omit<ExternalEvaluatorOptions, 'sign'>;
}

export async function createServer(
  gateway: Gateway,
  logger: Logger,
  options: ServerOptions = {},
): Promise<GatewayServer> {
  // Read first: a bad certificate file stops start-up before anything else is built.
  const tls = listenerTlsOptions(gateway.settings);
  await loadOidcLibrary(logger);
  const teamUrl = new URL(gateway.settings.teamDomain);
  const teamHost = teamUrl.host.toLowerCase();
  const defaultPort = teamUrl.protocol === 'https:' ? '443' : '80';

  const teamApp = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    // Request ids are ours, not taken from a client header.
    genReqId: () => crypto.randomUUID(),
  });
  // The composition root wires the proxy over the live snapshot, so `gatehouse start` and the
  // test gateway run the same data plane; a test may substitute its own app-host handlers.
  // Identity-time decisions (login app-token mint, SaaS and managed OAuth authorizations and
  // refreshes) share one external evaluation client, so a user's verdict is cached once for all.
  const decide = identityDecider(
    accountSignedEvaluator(gateway.keys, gateway.settings.teamDomain, options.externalEvaluation),
  );
  const managedOAuth = new ManagedOAuth(gateway, decide, options.managedOAuth);
  const proxy = options.appHosts
    ? null
    : new GatehouseProxy({
        teamDomain: gateway.settings.teamDomain,
        keys: gateway.keys,
        config: snapshotSource(gateway.snapshot),
        country: createCountrySource(gateway.settings),
        onError: (error) => logger.error({ err: error }, 'proxy failure'),
        managedOAuth: managedOAuth.handle,
        events: new ProxyRecorder(gateway.repos, gateway.account.accountId, {
          onError: (error) => logger.error({ err: error }, 'proxy recorder failure'),
          onRecovered: () => logger.info('proxy recorder: database reachable again'),
        }),
      });
  const appHosts = options.appHosts ?? proxy?.handleRequest;
  const appUpgrades = options.appUpgrades ?? proxy?.handleUpgrade;
  registerCoreRoutes(teamApp, gateway);
  teamApp.register(loginRoutes(gateway, logger, decide, options.login));
  teamApp.register(managementApi(gateway), { prefix: API_PREFIX });
  // Access for SaaS: the per-app OIDC providers under /cdn-cgi/access/sso/oidc/<client_id>.
  const saasOidc = new SaasOidcService(gateway, orgSessions(gateway), logger, decide);
  teamApp.register(saasOidcRoutes(saasOidc));
  // Managed OAuth's team-domain step (login and policies) for authorizations at app hosts.
  teamApp.register(managedOAuth.teamRoutes());
  await teamApp.ready();

  const notFound = (res: http.ServerResponse) => {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('Not found\n');
  };

  const dispatch = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const host = normaliseHost(req.headers.host, defaultPort);
    if (host === teamHost) return teamApp.routing(req, res);
    if (host && appHosts?.(req, res, host)) return;
    notFound(res);
  };
  const timeouts = { headersTimeout: 30_000, requestTimeout: 300_000 };
  const main: http.Server = tls
    ? https.createServer({ ...tls, ...timeouts }, dispatch)
    : http.createServer(timeouts, dispatch);
  // A verified client certificate is read once per connection (src/tls/client-certificate.ts);
  // renegotiation could swap it under a live connection, so it is refused (TLS 1.3 has none).
  if (tls) main.on('secureConnection', (socket: TLSSocket) => socket.disableRenegotiation());
  const api = gateway.settings.apiListen
    ? http.createServer(timeouts, (req, res) => {
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
  // Without an 'upgrade' listener Node answers upgrade requests as plain requests; with it, the
  // socket is ours: application hosts proxy it, anything else is refused and closed.
  main.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const host = normaliseHost(req.headers.host, defaultPort);
    if (host && host !== teamHost && appUpgrades?.(req, socket, head, host)) return;
    socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  });

  const servers = [main, ...(api ? [api] : [])];
  // Upgraded (WebSocket) sockets leave the HTTP server's bookkeeping, so closeAllConnections()
  // never reaches them and close() would wait for them forever; the drain limit cuts them too.
  const sockets = new Set<Duplex>();
  for (const server of servers) {
    server.on('connection', (socket: Duplex) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  }
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
      // A keep-alive connection whose last response finishes during the drain goes idle: close
      // it then, instead of waiting out keepAliveTimeout before close() can resolve.
      const sweep = setInterval(() => {
        for (const server of servers) server.closeIdleConnections();
      }, 50);
      const timer = setTimeout(() => {
        for (const server of servers) server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      }, drainTimeoutMs);
      await Promise.all(closed);
      clearInterval(sweep);
      clearTimeout(timer);
      await teamApp.close();
      await proxy?.close();
      saasOidc.close();
      managedOAuth.close();
      await gateway.close();
    },
  };
}

function registerCoreRoutes(app: FastifyInstance, gateway: Gateway): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    // Degraded (fail-static, docs/deploy.md): the proxy still authorises from its last snapshot
    // and keys, but this node cannot write or hear of changes; a load balancer may prefer others.
    const health = await gateway.store.health();
    const store = health.ok;
    let keys = true;
    try {
      gateway.keys.signingKey();
    } catch {
      keys = false;
    }
    const ready = store && keys;
    const reasons = [...(health.reason ? [health.reason] : []), ...(keys ? [] : ['signing keys not loaded'])];
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'degraded',
      checks: { store, keys },
      ...(reasons.length > 0 && { reason: reasons.join('; ') }),
    });
  });
  // Cloudflare's exact shape (spec §4.4): current and previous key, with their certificates.
  app.get('/cdn-cgi/access/certs', async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=300').send(gateway.keys.certs()),
  );
}

/** Lower-cases a Host header and drops the scheme's default port, so `a:80` equals `a`. */
export function normaliseHost(header: string | undefined, defaultPort: string): string | null {
  if (!header) return null;
  let host = header.trim().toLowerCase();
  const suffix = `:${defaultPort}`;
  if (host.endsWith(suffix)) host = host.slice(0, -suffix.length);
  // A fully qualified name may end in a dot, also before the port: `a.example.com.:8443`.
  return host.replace(/\.(?=(:\d+)?$)/, '') || null;
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
