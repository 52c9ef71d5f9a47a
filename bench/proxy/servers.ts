// The processes the proxy bench measures, one per mode, each started as its own `node` process
// so its CPU time can be read from /proc/<pid>/stat:
//   origin <port>                     trivial node:http origin, 12-byte body
//   reference <port> <origin port>    minimal Node proxy: node:http + undici Pool, no auth
//   gatehouse <port> <origin port>    the production wiring, as `gatehouse start` runs it
//                                     (openGateway + createServer, SQLite in a temp dir), configured
//                                     only through the management API (plain HTTP)
// Each prints one JSON line on stdout when it is listening (the gateway: once it serves app.test).
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Pool } from 'undici';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { loadSettings } from '../../src/config/settings.ts';
import { openGateway } from '../../src/gateway.ts';
import { mintJwt } from '../../src/keys/jwt.ts';
import { createLogger } from '../../src/logging.ts';
import { createServer } from '../../src/server.ts';
import { tempDir } from '../../test/support/databases.ts';

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
  // Also when start-up fails (an uncaught error exits the process): leave no temp dir behind.
  process.once('exit', () => temp.cleanup());
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
  // As `gatehouse start` runs it: no substituted app-host handlers, so the proxy is the one the
  // composition root wires over the live snapshot (managed OAuth, ProxyRecorder, country source).
  // As `gatehouse start` opens it (key maintenance on).
  const gateway = await openGateway(settings, logger, { maintenance: true });
  const server = await createServer(gateway, logger);
  await server.listen();
  process.on('SIGTERM', () => {
    server.close().finally(() => {
      temp.cleanup();
      process.exit(0);
    });
  });

  // Configured only through the management API (served on the team domain under /client/v4),
  // as an operator would. Plain HTTP rather than the cloudflare SDK: the SDK's few hundred
  // modules (and their source maps, through tsx) would sit in the measured process's heap and
  // lengthen its major GC pauses, which production does not have.
  const accountId = gateway.account.accountId;
  const { secret: apiToken } = await createApiToken(gateway.repos.apiTokens, {
    accountId,
    name: 'bench',
    permissions: [
      'Access: Apps and Policies Write',
      'Access: Service Tokens Write',
      'Cloudflare Tunnel Write',
    ],
  });
  // biome-ignore lint/suspicious/noExplicitAny: the v4 envelope's `result` differs per endpoint.
  const api = async (method: string, path: string, body?: unknown): Promise<any> => {
    const response = await fetch(`${settings.teamDomain}/client/v4/accounts/${accountId}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const envelope = (await response.json()) as { success: boolean; result: unknown; errors: unknown };
    if (!envelope.success) throw new Error(`${method} ${path}: ${JSON.stringify(envelope.errors)}`);
    return envelope.result;
  };
  const [tunnel] = (await api('GET', '/cfd_tunnel')) as { id: string }[];
  if (!tunnel) throw new Error('the management API listed no tunnel');
  await api('PUT', `/cfd_tunnel/${tunnel.id}/configurations`, {
    config: { ingress: [{ hostname: 'app.test', service: originUrl }, { service: 'http_status:404' }] },
  });
  const token = await api('POST', '/access/service_tokens', { name: 'bench' });
  const staff = await api('POST', '/access/policies', {
    name: 'staff',
    decision: 'allow',
    include: [{ email_domain: { domain: 'example.com' } }],
  });
  const upstream = await api('POST', '/access/apps', {
    type: 'self_hosted',
    name: 'upstream.test',
    domain: 'upstream.test',
    policies: [staff.id],
  });
  const service = await api('POST', '/access/policies', {
    name: 'service',
    decision: 'non_identity',
    include: [{ service_token: { token_id: token.id } }],
  });
  const linkedPolicy = await api('POST', '/access/policies', {
    name: 'linked',
    decision: 'non_identity',
    include: [{ linked_app_token: { app_uid: upstream.id } }],
  });
  const created = await api('POST', '/access/apps', {
    type: 'self_hosted',
    name: 'app.test',
    domain: 'app.test',
    policies: [service.id, linkedPolicy.id, staff.id],
  });
  const app = (await api('GET', `/access/apps/${created.id}`)) as {
    aud: string;
    policies: { id: string; precedence: number }[];
  };
  const staffLink = app.policies.find((entry) => entry.id === staff.id);
  if (!staffLink) throw new Error('app.test does not list the staff policy');
  const clientId: string = token.client_id;
  const secret: string = token.client_secret;

  // Changes reach the proxy asynchronously (debounced snapshot rebuild): wait until it serves.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = await probe(port, {
      host: 'app.test',
      'cf-access-client-id': clientId,
      'cf-access-client-secret': secret,
    });
    if (status === 200) break;
    if (Date.now() > deadline) throw new Error(`app.test still answers ${status} after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

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
    { ...identity, aud: [app.aud], policy_id: staff.id, policy_precedence: staffLink.precedence },
    { issuer: settings.teamDomain, expiresAt },
  );
  const linked = await mintJwt(
    gateway.keys,
    { ...identity, aud: [upstream.aud] },
    { issuer: settings.teamDomain, expiresAt },
  );
  ready({ session, linked, clientId, secret });
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}

/** The status of a GET / on the local listener with `headers`; the body is discarded. */
function probe(listenPort: number, headers: http.OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: listenPort, path: '/', headers, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      })
      .on('error', reject);
  });
}
