// Several `gatehouse start` child processes on one PostgreSQL database, behind a round-robin
// balancer whose address is the shared team domain (every node must sign and check the same
// `iss`). A test may also talk to one node directly: same Host header, that node's port.
// Reusable by other suites (the OIDC engineer's parallel-refresh test): startCluster(...).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type Mailbox, startMailbox } from '../login/support.ts';
import { type CliProcess, killAllCli, runCli, startCli } from '../support/cli.ts';
import { createTestDatabase, type TestDatabase, tempDir } from '../support/databases.ts';
import { freePort } from '../support/ports.ts';
import { type Balancer, startBalancer } from './balancer.ts';

export interface Node {
  name: string;
  port: number;
  process: CliProcess;
  /** `http://127.0.0.1:<port>`: this node alone. */
  base: string;
}

// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary envelope fields.
export type ApiAnswer = { status: number; body: any };

export interface Cluster {
  /** The shared team domain: the balancer's address. */
  teamDomain: string;
  /** Host header of the team domain. */
  teamHost: string;
  balancer: Balancer;
  nodes: Node[];
  accountId: string;
  apiToken: string;
  databaseUrl: string;
  /** Management API call on one node (or through the balancer when `node` is null). */
  api(node: Node | null, method: string, path: string, json?: unknown): Promise<ApiAnswer>;
  /** Spawns one more node on the same database; wait for `Gatehouse is running` on its stderr. */
  addNode(env?: Record<string, string>): Promise<Node>;
  close(): Promise<void>;
}

export interface ClusterOptions {
  databaseUrl: string;
  nodes: number;
  /** Extra config file keys (ingress, smtp, ...). */
  config?: Record<string, unknown>;
  /** How long children may live (they are SIGKILLed after). */
  lifetimeMs?: number;
}

const NODE_SETTINGS_FLAGS = (cluster: { teamDomain: string; databaseUrl: string; config: string }) => [
  '--team-domain',
  cluster.teamDomain,
  '--database-url',
  cluster.databaseUrl,
  '--config',
  cluster.config,
];

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const temp = tempDir('gatehouse-multinode-');
  const masterKey = randomBytes(32).toString('hex');
  const balancerPort = await freePort();
  const teamDomain = `http://127.0.0.1:${balancerPort}`;
  const configFile = path.join(temp.dir, 'gatehouse.json');
  writeFileSync(configFile, JSON.stringify(options.config ?? {}));
  const shared = { teamDomain, databaseUrl: options.databaseUrl, config: configFile };
  const lifetimeMs = options.lifetimeMs ?? 300_000;

  // One-shot command first: migrates the fresh database, creates the account, prints a token.
  const token = await runCli(
    [
      'api-token',
      'create',
      '--name',
      'multinode',
      '--permission',
      'Access: Apps and Policies Write',
      '--permission',
      'Access: Apps and Policies Revoke',
      '--permission',
      'Access: Service Tokens Write',
      '--permission',
      'Access: Organizations, Identity Providers, and Groups Write',
      ...NODE_SETTINGS_FLAGS(shared),
      '--data-dir',
      path.join(temp.dir, 'cli'),
    ],
    { cwd: temp.dir, env: { GATEHOUSE_MASTER_KEY: masterKey }, timeoutMs: 120_000 },
  );
  if (token.code !== 0) throw new Error(`api-token create failed: ${token.stderr}`);
  const apiToken = token.stdout.trim();

  let counter = 0;
  const nodes: Node[] = [];
  const addNode = async (env: Record<string, string> = {}): Promise<Node> => {
    const name = String.fromCharCode(65 + counter++);
    const port = await freePort();
    const child = startCli(
      [
        'start',
        '--listen',
        `127.0.0.1:${port}`,
        '--data-dir',
        path.join(temp.dir, `node-${name}`),
        ...NODE_SETTINGS_FLAGS(shared),
      ],
      { cwd: temp.dir, env: { GATEHOUSE_MASTER_KEY: masterKey, ...env }, timeoutMs: lifetimeMs },
    );
    const node = { name, port, process: child, base: `http://127.0.0.1:${port}` };
    nodes.push(node);
    return node;
  };
  let balancer: Balancer;
  let accountId: string;
  try {
    for (let i = 0; i < options.nodes; i++) await addNode();
    await Promise.all(nodes.map((node) => node.process.waitForStderr(/Gatehouse is running/, 120_000)));
    balancer = await startBalancer(
      nodes.map((node) => node.port),
      balancerPort,
    );
    accountId = (await apiCall(nodes[0]!.base, teamDomain, apiToken, 'GET', '/client/v4/accounts')).body
      .result[0].id as string;
  } catch (error) {
    // No handle reaches the caller, so nothing else would stop these children.
    await Promise.all(nodes.map((node) => node.process.stop('SIGKILL')));
    temp.cleanup();
    throw error;
  }

  return {
    teamDomain,
    teamHost: new URL(teamDomain).host,
    balancer,
    nodes,
    accountId,
    apiToken,
    databaseUrl: options.databaseUrl,
    api: (node, method, apiPath, json) =>
      apiCall(
        node ? node.base : teamDomain,
        teamDomain,
        apiToken,
        method,
        `/client/v4/accounts/${accountId}/access${apiPath}`,
        json,
      ),
    addNode,
    async close() {
      await balancer.close();
      await Promise.all(nodes.map((node) => node.process.stop('SIGKILL')));
      temp.cleanup();
    },
  };
}

async function apiCall(
  base: string,
  teamDomain: string,
  token: string,
  method: string,
  apiPath: string,
  json?: unknown,
): Promise<ApiAnswer> {
  const headers: Record<string, string> = {
    host: new URL(teamDomain).host,
    authorization: `Bearer ${token}`,
  };
  if (json !== undefined) headers['content-type'] = 'application/json';
  const answer = await send(
    base,
    method,
    apiPath,
    headers,
    json === undefined ? undefined : JSON.stringify(json),
  );
  return { status: answer.status, body: answer.body ? JSON.parse(answer.body) : null };
}

/** Raw request to one node (or the balancer) with any Host, like curl --resolve. */
export function hit(
  base: string,
  host: string,
  pathname = '/',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return send(base, 'GET', pathname, { host, accept: 'application/json', ...headers });
}

/**
 * node:http rather than fetch, whose Host header is always the URL's: a node is reached on its
 * own port while the Host names the shared team domain or an app.
 */
function send(
  base: string,
  method: string,
  pathname: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: url.hostname, port: url.port, method, path: pathname, headers, timeout: 10_000 },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () =>
          resolve({ status: response.statusCode!, body: text, headers: response.headers }),
        );
      },
    );
    request.on('timeout', () => request.destroy(new Error(`${method} ${base}${pathname} timed out`)));
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * A browser on the wire that reaches every host through one address (the balancer), with a
 * cookie jar per host. (test/login/support.ts's Browser uses fetch, which cannot set Host.)
 */
export class WireBrowser {
  readonly jar = new Map<string, Map<string, string>>();

  constructor(private readonly base: string) {}

  async request(
    url: string,
    init: { form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; text: string; location: string | null }> {
    const target = new URL(url);
    const headers: Record<string, string> = { accept: 'text/html', host: target.host, ...init.headers };
    const cookies = this.jar.get(target.host);
    if (cookies && cookies.size > 0) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const body = init.form ? new URLSearchParams(init.form).toString() : undefined;
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const answer = await send(
      this.base,
      body ? 'POST' : 'GET',
      `${target.pathname}${target.search}`,
      headers,
      body,
    );
    for (const line of answer.headers['set-cookie'] ?? []) {
      const pair = line.split(';')[0]!;
      const name = pair.slice(0, pair.indexOf('='));
      const value = pair.slice(pair.indexOf('=') + 1);
      const hostJar = this.jar.get(target.host) ?? new Map<string, string>();
      if (/max-age=0/i.test(line) || value === '') hostJar.delete(name);
      else hostJar.set(name, value);
      this.jar.set(target.host, hostJar);
    }
    const location = answer.headers.location;
    return {
      status: answer.status,
      text: answer.body,
      location: typeof location === 'string' ? location : null,
    };
  }
}

/** Polls `check` every 10 ms until it is true; returns the milliseconds it took, or throws. */
export async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** An origin that answers 200 with the identity and assertion Gatehouse forwarded. */
export async function startOrigin(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        email: req.headers['cf-access-authenticated-user-email'] ?? null,
        assertion: req.headers['cf-access-jwt-assertion'] ?? null,
        path: req.url,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A cluster with what login tests need: a fresh database, a mailbox for PINs, one origin. */
export interface ClusterWorld {
  database: TestDatabase;
  mailbox: Mailbox;
  origin: Awaited<ReturnType<typeof startOrigin>>;
  cluster: Cluster;
}

/** `nodes` nodes whose ingress sends every one of `hosts` to one origin; PINs go to the mailbox. */
export async function startClusterWorld(nodes: number, hosts: string[]): Promise<ClusterWorld> {
  const database = await createTestDatabase('postgres');
  const mailbox = await startMailbox();
  const origin = await startOrigin();
  const cluster = await startCluster({
    databaseUrl: database.url,
    nodes,
    config: {
      smtp: { url: mailbox.url, from: 'access@gatehouse.test' },
      ingress: [
        ...hosts.map((hostname) => ({ hostname, service: origin.url })),
        { service: 'http_status:404' },
      ],
    },
  });
  return { database, mailbox, origin, cluster };
}

/** Stops what startClusterWorld started (and any child a failed start left behind). */
export async function stopClusterWorld(world: Partial<ClusterWorld>): Promise<void> {
  await world.cluster?.close();
  await killAllCli();
  await world.mailbox?.close();
  await world.origin?.close();
  await world.database?.cleanup();
}
