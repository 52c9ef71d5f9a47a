// The processes the proxy bench measures, one per mode, each started as its own `node` process
// so its CPU time can be read from /proc/<pid>/stat:
//   origin <port>                     trivial node:http origin, 12-byte body
//   reference <port> <origin port>    minimal Node proxy: node:http + undici Pool, no auth
//   gatehouse <port> <origin port>    the real gateway (SQLite in a temp dir) with the proxy
// Each prints one JSON line on stdout when it is listening.
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import { Pool } from 'undici';
import { loadSettings } from '../../src/config/settings.ts';
import { openGateway } from '../../src/gateway.ts';
import { mintJwt } from '../../src/keys/jwt.ts';
import { createLogger } from '../../src/logging.ts';
import { compilePolicies } from '../../src/policy/index.ts';
import type { PolicyDefinition } from '../../src/policy/types.ts';
import type { ProxyApp, ProxyConfig } from '../../src/proxy/config.ts';
import { GatehouseProxy } from '../../src/proxy/proxy.ts';
import { createServer } from '../../src/server.ts';
import { tempDir } from '../../test/support/databases.ts';
import { proxyApp } from '../../test/support/proxy-app.ts';

const [mode, portText, originPortText] = process.argv.slice(2);
const port = Number(portText);
const originUrl = `http://127.0.0.1:${originPortText}`;

function ready(extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, ...extra })}\n`);
}

if (mode === 'origin') {
  http
    .createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('hello world\n');
    })
    .listen(port, '127.0.0.1', () => ready());
} else if (mode === 'reference') {
  // stack.md §4 (c1): the same listener setup as Gatehouse, undici Pool of 64, no auth.
  const pool = new Pool(originUrl, { connections: 64 });
  http
    .createServer((req, res) => {
      pool
        .stream(
          { path: req.url!, method: req.method!, headers: req.headers, body: null },
          ({ statusCode, headers }) => {
            res.writeHead(statusCode, headers as http.OutgoingHttpHeaders);
            return res;
          },
        )
        .catch(() => res.destroy());
    })
    .listen(port, '127.0.0.1', () => ready());
  // An orderly exit, so `node --cpu-prof` can write the reference's profile too.
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'gatehouse') {
  const temp = tempDir('gatehouse-bench-');
  const settings = loadSettings(
    {
      listen: `127.0.0.1:${port}`,
      teamDomain: `http://127.0.0.1:${port}`,
      dataDir: temp.dir,
      logLevel: 'silent',
    },
    {},
  );
  const logger = createLogger(settings.logLevel);
  const gateway = await openGateway(settings, logger);
  const secret = 'bench-secret-0123456789';
  const serviceToken = {
    id: randomUUID(),
    clientId: `${randomUUID().replace(/-/g, '')}.access`,
    secretHash: createHash('sha256').update(secret).digest('hex'),
    previousSecretHash: null,
    previousSecretExpiresAt: null,
    expiresAt: null,
    enabled: true,
  };
  const upstream = benchApp('upstream.test', []);
  const staff: PolicyDefinition = {
    id: randomUUID(),
    name: 'staff',
    decision: 'allow',
    precedence: 3,
    include: [{ email_domain: { domain: 'example.com' } }],
  };
  const app = benchApp('app.test', [
    {
      id: randomUUID(),
      name: 'service',
      decision: 'non_identity',
      precedence: 1,
      include: [{ service_token: { token_id: serviceToken.id } }],
    },
    {
      id: randomUUID(),
      name: 'linked',
      decision: 'non_identity',
      precedence: 2,
      include: [{ linked_app_token: { app_uid: upstream.id } }],
    },
    staff,
  ]);
  const config: ProxyConfig = {
    apps: [app, upstream],
    ingress: [{ hostname: 'app.test', service: originUrl }, { service: 'http_status:404' }],
    org: { denyUnmatchedRequests: true, strictServiceTokens: false },
    serviceTokens: new Map([[serviceToken.clientId, serviceToken]]),
    userRevocations: new Map(),
  };
  const proxy = new GatehouseProxy({
    teamDomain: settings.teamDomain,
    keys: gateway.keys,
    config: () => config,
  });
  const server = await createServer(gateway, logger, {
    appHosts: proxy.handleRequest,
    appUpgrades: proxy.handleUpgrade,
  });
  await server.listen();
  const expiresAt = Math.floor(Date.now() / 1000) + 3600;
  const identity = {
    type: 'app',
    sub: randomUUID(),
    email: 'alice@example.com',
    identity_nonce: 'n',
    country: 'NL',
  };
  const session = await mintJwt(
    gateway.keys,
    // As the login mints it: the policy that admitted the user (src/policy/session.ts).
    { ...identity, aud: [app.aud], policy_id: staff.id, policy_precedence: staff.precedence },
    { issuer: settings.teamDomain, expiresAt },
  );
  const linked = await mintJwt(
    gateway.keys,
    { ...identity, aud: [upstream.aud] },
    { issuer: settings.teamDomain, expiresAt },
  );
  ready({ session, linked, clientId: serviceToken.clientId, secret });
  process.on('SIGTERM', () => {
    server.close().finally(() => {
      temp.cleanup();
      process.exit(0);
    });
  });
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}

function benchApp(host: string, policies: PolicyDefinition[]): ProxyApp {
  return proxyApp(compilePolicies(policies), {
    id: randomUUID(),
    aud: createHash('sha256').update(host).digest('hex'),
    name: host,
    hosts: [host],
  });
}
