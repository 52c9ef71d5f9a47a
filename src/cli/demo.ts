// `gatehouse demo` (ARCHITECTURE.md §2, issue 8): one command runs Gatehouse with the example
// wiki, admin dashboard and MCP server (in both linked flows), seeded through the management
// API — the same HTTP calls an administrator's tooling would make — so the demo also exercises
// the API. Seeding is idempotent: objects are found by name and updated, so a second start on
// the same data directory reuses them (and their AUD tags and client id).
//
// One-time PINs are printed on this console by a demo-only mailer instead of being mailed: the
// demo is one person on one machine, and a printed PIN needs no SMTP catcher at run time.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { fetchVia } from '../../examples/shared/connect.ts';
import { writeFileAtomic } from '../../examples/shared/files.ts';
import type { Origin } from '../../examples/shared/origin.ts';
import { createApiToken } from '../api/api-tokens.ts';
import type { PermissionGroup } from '../api/permissions.ts';
import { loadSettings } from '../config/settings.ts';
import { openGateway } from '../gateway.ts';
import type { PinMailer } from '../identity/otp.ts';
import { createLogger } from '../logging.ts';

export interface DemoOptions {
  /** Gatehouse's port on 127.0.0.1; the team domain is http://auth.localhost:<port>. */
  port: number;
  dataDir: string;
  /** The person the allow policies admit. */
  user: string;
  wikiPort: number;
  dashboardPort: number;
  mcpPort: number;
  mcpSaasPort: number;
  logLevel: string;
  /** Another database than `<data-dir>/gatehouse.db` (tests: PostgreSQL). */
  databaseUrl?: string;
  /** Where the banner and PINs go (stdout for the command). */
  print: (text: string) => void;
}

export interface DemoSeed {
  accountId: string;
  idpId: string;
  apps: {
    wiki: { id: string; aud: string };
    dashboard: { id: string; aud: string };
    mcp: { id: string; aud: string };
    mcpSaas: { id: string; clientId: string };
  };
}

export interface RunningDemo {
  seed: DemoSeed;
  listen: string;
  teamDomain: string;
  urls: { wiki: string; dashboard: string; mcp: string; mcpSaas: string };
  /** A token with the demo's management permissions (for tests and scripts). */
  apiToken: string;
  close(): Promise<void>;
}

const ADMIN_PERMISSIONS: PermissionGroup[] = [
  'Access: Apps and Policies Write',
  'Access: Organizations, Identity Providers, and Groups Write',
  'Cloudflare Tunnel Write',
];
const DASHBOARD_PERMISSIONS: PermissionGroup[] = [
  'Access: Organizations, Identity Providers, and Groups Read',
  'Access: Audit Logs Read',
];

export const DEMO_NAMES = {
  idp: 'One-time PIN',
  allow: 'Demo: the demo user',
  linkedMcp: 'Demo: the MCP server (flow 1) acting for a user',
  linkedSaas: 'Demo: the SaaS MCP server (flow 2) acting for a user',
  wiki: 'Demo wiki',
  dashboard: 'Demo admin dashboard',
  mcp: 'Demo MCP server',
  mcpSaas: 'Demo MCP server (Access for SaaS)',
} as const;

export async function startDemo(options: DemoOptions): Promise<RunningDemo> {
  // Loaded here, not at the top: every other `gatehouse` command would pay for the MCP SDK.
  const [{ createWiki }, { createDashboard }, { createMcpHttpServer }] = await Promise.all([
    import('../../examples/wiki/server.ts'),
    import('../../examples/dashboard/server.ts'),
    import('../../examples/mcp-server/server.ts'),
  ]);
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const listen = `127.0.0.1:${options.port}`;
  const teamDomain = `http://auth.localhost:${options.port}`;
  const settings = loadSettings({
    listen,
    teamDomain,
    dataDir: options.dataDir,
    logLevel: options.logLevel,
    ...(options.databaseUrl && { databaseUrl: options.databaseUrl }),
  });
  const logger = createLogger(settings.logLevel);
  const gateway = await openGateway(settings, logger, { maintenance: true });
  const mailer: PinMailer = {
    async send(to, pin) {
      options.print(`[demo mail] one-time PIN for ${to}: ${pin}\n`);
    },
  };
  const { createServer } = await import('../server.ts');
  const server = await createServer(gateway, logger, { login: { mailer } });
  const running: Origin[] = [];
  try {
    await server.listen();
    const connect = fetchVia(listen);
    const tokens = await demoTokens(options.dataDir, gateway, connect, teamDomain);
    const api = managementApi(connect, `${teamDomain}/client/v4`, tokens.admin);
    const seed = await seedDemo(api, options);
    const host = (name: string) => `http://${name}.localhost:${options.port}`;
    const urls = {
      wiki: host('wiki'),
      dashboard: host('dashboard'),
      mcp: `${host('mcp')}/mcp`,
      mcpSaas: `http://127.0.0.1:${options.mcpSaasPort}/mcp`,
    };
    const wiki = createWiki({
      dataFile: path.join(options.dataDir, 'wiki.json'),
      teamDomain,
      aud: seed.apps.wiki.aud,
      gatewayListen: listen,
    });
    const dashboard = createDashboard({
      dataFile: path.join(options.dataDir, 'dashboard.json'),
      teamDomain,
      aud: seed.apps.dashboard.aud,
      gatewayListen: listen,
      api: { baseUrl: `${teamDomain}/client/v4`, accountId: seed.accountId, token: tokens.dashboard },
    });
    const apps = { wikiUrl: urls.wiki, dashboardUrl: urls.dashboard, gatewayListen: listen };
    const mcp = createMcpHttpServer({
      ...apps,
      publicUrl: host('mcp'),
      auth: { mode: 'access', teamDomain, aud: seed.apps.mcp.aud },
    });
    const mcpSaas = createMcpHttpServer({
      ...apps,
      publicUrl: `http://127.0.0.1:${options.mcpSaasPort}`,
      auth: {
        mode: 'saas',
        issuer: `${teamDomain}/cdn-cgi/access/sso/oidc/${seed.apps.mcpSaas.clientId}`,
        clientId: seed.apps.mcpSaas.clientId,
        dataFile: path.join(options.dataDir, 'mcp-saas.json'),
      },
    });
    for (const [origin, port] of [
      [wiki, options.wikiPort],
      [dashboard, options.dashboardPort],
      [mcp, options.mcpPort],
      [mcpSaas, options.mcpSaasPort],
    ] as const) {
      await origin.listen(port);
      running.push(origin);
    }
    // Routes last: a host routed before its origin listens would answer 502.
    await seedIngress(api, seed.accountId, {
      wiki: options.wikiPort,
      dashboard: options.dashboardPort,
      mcp: options.mcpPort,
    });
    // The proxy's snapshot follows API writes after a short debounce; the demo is announced
    // ready only once it routes every host it prints.
    await gateway.snapshot.refresh();
    options.print(banner(options, teamDomain, urls));
    return {
      seed,
      listen,
      teamDomain,
      urls,
      apiToken: tokens.admin,
      async close() {
        for (const origin of running.reverse()) await origin.close();
        await server.close();
      },
    };
  } catch (error) {
    for (const origin of running.reverse()) await origin.close();
    await server.close();
    throw error;
  }
}

/**
 * The demo's two API tokens, kept in `<data-dir>/demo-tokens.json` (mode 0600) so a restart
 * reuses them instead of minting new ones; a token that no longer works is replaced.
 */
async function demoTokens(
  dataDir: string,
  gateway: Awaited<ReturnType<typeof openGateway>>,
  connect: typeof fetch,
  teamDomain: string,
): Promise<{ admin: string; dashboard: string }> {
  const file = path.join(dataDir, 'demo-tokens.json');
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  const works = async (token: unknown) =>
    typeof token === 'string' &&
    (
      await connect(`${teamDomain}/client/v4/accounts`, {
        headers: { authorization: `Bearer ${token}` },
      })
    ).ok;
  const ensure = async (key: 'admin' | 'dashboard', permissions: PermissionGroup[]) => {
    if (await works(saved[key])) return saved[key] as string;
    const { secret } = await createApiToken(gateway.repos.apiTokens, {
      accountId: gateway.account.accountId,
      name: `gatehouse demo (${key})`,
      permissions,
    });
    return secret;
  };
  const tokens = {
    admin: await ensure('admin', ADMIN_PERMISSIONS),
    dashboard: await ensure('dashboard', DASHBOARD_PERMISSIONS),
  };
  writeFileAtomic(file, JSON.stringify(tokens));
  return tokens;
}

type Api = <T = Record<string, unknown>>(method: string, apiPath: string, body?: unknown) => Promise<T>;

/** A tiny client for Cloudflare's v4 envelope: the `result`, or an error naming the call. */
export function managementApi(connect: typeof fetch, baseUrl: string, token: string): Api {
  return async (method, apiPath, body) => {
    const response = await connect(`${baseUrl}${apiPath}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const envelope = (await response.json()) as { success?: boolean; result?: unknown; errors?: unknown };
    if (!response.ok || envelope.success !== true) {
      throw new Error(
        `demo setup: ${method} ${apiPath} failed (${response.status}): ${JSON.stringify(envelope.errors)}`,
      );
    }
    return envelope.result as never;
  };
}

interface Named {
  id: string;
  name: string;
}

/** Every object of a list endpoint (pages until an empty one, as the official SDK does). */
async function listAll<T extends Named>(api: Api, listPath: string): Promise<T[]> {
  const all: T[] = [];
  for (let page = 1; page <= 100; page++) {
    const result = await api<T[]>(
      'GET',
      `${listPath}${listPath.includes('?') ? '&' : '?'}per_page=50&page=${page}`,
    );
    if (result.length === 0) break;
    all.push(...result);
  }
  return all;
}

/** Creates `body` at `listPath`, or replaces the object of the same name. */
async function upsert<T extends Named>(api: Api, listPath: string, body: { name: string }): Promise<T> {
  const existing = (await listAll<T>(api, listPath)).find((item) => item.name === body.name);
  return existing ? api<T>('PUT', `${listPath}/${existing.id}`, body) : api<T>('POST', listPath, body);
}

export async function seedDemo(
  api: Api,
  options: Pick<DemoOptions, 'port' | 'user' | 'mcpSaasPort'>,
): Promise<DemoSeed> {
  const [account] = await api<{ id: string }[]>('GET', '/accounts');
  const access = `/accounts/${account!.id}/access`;

  const idps = await listAll<Named & { type: string }>(api, `${access}/identity_providers`);
  const idp =
    idps.find((candidate) => candidate.type === 'onetimepin') ??
    (await api<Named>('POST', `${access}/identity_providers`, {
      name: DEMO_NAMES.idp,
      type: 'onetimepin',
      config: {},
    }));

  const allow = await upsert<Named>(api, `${access}/policies`, {
    name: DEMO_NAMES.allow,
    decision: 'allow',
    include: [{ email: { email: options.user } }],
  } as { name: string });
  const link = (policy: Named) => ({ id: policy.id, precedence: 1 });

  const mcp = await upsert<Named & { aud: string }>(api, `${access}/apps`, {
    type: 'self_hosted',
    name: DEMO_NAMES.mcp,
    domain: 'mcp.localhost',
    session_duration: '24h',
    // Managed OAuth: MCP clients get a 401 with RFC 9728 metadata instead of a login redirect,
    // register themselves (loopback redirect URIs, as desktop MCP clients use) and sign in.
    oauth_configuration: {
      enabled: true,
      dynamic_client_registration: {
        enabled: true,
        allow_any_on_localhost: true,
        allow_any_on_loopback: true,
      },
    },
    policies: [link(allow)],
  } as { name: string });
  const mcpSaas = await upsert<Named & { saas_app: { client_id: string } }>(api, `${access}/apps`, {
    type: 'saas',
    name: DEMO_NAMES.mcpSaas,
    saas_app: {
      auth_type: 'oidc',
      redirect_uris: [`http://127.0.0.1:${options.mcpSaasPort}/callback`],
      grant_types: ['authorization_code_with_pkce', 'refresh_tokens'],
      scopes: ['openid', 'email', 'profile'],
      allow_pkce_without_client_secret: true,
      access_token_lifetime: '5m',
      refresh_token_options: { lifetime: '30d' },
      app_launcher_url: `http://127.0.0.1:${options.mcpSaasPort}/mcp`,
    },
    policies: [link(allow)],
  } as { name: string });

  // linked_app_token rules are non_identity: they admit the MCP server's token for a user
  // (spec: only with non_identity/bypass decisions).
  const linkedMcp = await upsert<Named>(api, `${access}/policies`, {
    name: DEMO_NAMES.linkedMcp,
    decision: 'non_identity',
    include: [{ linked_app_token: { app_uid: mcp.id } }],
  } as { name: string });
  const linkedSaas = await upsert<Named>(api, `${access}/policies`, {
    name: DEMO_NAMES.linkedSaas,
    decision: 'non_identity',
    include: [{ linked_app_token: { app_uid: mcpSaas.id } }],
  } as { name: string });
  const origin = (name: string, domain: string) =>
    upsert<Named & { aud: string }>(api, `${access}/apps`, {
      type: 'self_hosted',
      name,
      domain,
      session_duration: '24h',
      policies: [
        { id: linkedMcp.id, precedence: 1 },
        { id: linkedSaas.id, precedence: 2 },
        { id: allow.id, precedence: 3 },
      ],
    } as { name: string });
  const wiki = await origin(DEMO_NAMES.wiki, 'wiki.localhost');
  const dashboard = await origin(DEMO_NAMES.dashboard, 'dashboard.localhost');
  return {
    accountId: account!.id,
    idpId: idp.id,
    apps: {
      wiki: { id: wiki.id, aud: wiki.aud },
      dashboard: { id: dashboard.id, aud: dashboard.aud },
      mcp: { id: mcp.id, aud: mcp.aud },
      mcpSaas: { id: mcpSaas.id, clientId: mcpSaas.saas_app.client_id },
    },
  };
}

/** Routes the three hosts to their origins through the built-in tunnel's configuration. */
async function seedIngress(
  api: Api,
  accountId: string,
  ports: { wiki: number; dashboard: number; mcp: number },
): Promise<void> {
  const [tunnel] = await api<{ id: string }[]>('GET', `/accounts/${accountId}/cfd_tunnel`);
  await api('PUT', `/accounts/${accountId}/cfd_tunnel/${tunnel!.id}/configurations`, {
    config: {
      ingress: [
        { hostname: 'wiki.localhost', service: `http://127.0.0.1:${ports.wiki}` },
        { hostname: 'dashboard.localhost', service: `http://127.0.0.1:${ports.dashboard}` },
        { hostname: 'mcp.localhost', service: `http://127.0.0.1:${ports.mcp}` },
        { service: 'http_status:404' },
      ],
    },
  });
}

function banner(options: DemoOptions, teamDomain: string, urls: RunningDemo['urls']): string {
  return `
Gatehouse demo is running (data in ${path.resolve(options.dataDir)}).

  Wiki             ${urls.wiki}/
  Admin dashboard  ${urls.dashboard}/
  Team domain      ${teamDomain}  (management API under /client/v4)

Sign in as ${options.user}: open the wiki, enter that email, and the one-time PIN is printed
on this console as "[demo mail] one-time PIN for ...". Browsers resolve *.localhost to this
machine; for curl use --resolve or -H "Host: wiki.localhost:${options.port}" against 127.0.0.1:${options.port}.

MCP clients:
  Flow 1, self-hosted MCP app behind Gatehouse (managed OAuth): ${urls.mcp}
    Point an MCP client with OAuth support at it: Gatehouse answers 401 with its metadata,
    the client registers and sends you to sign in. Clients without OAuth can send the
    CF_Authorization cookie of ${urls.mcp.replace(/\/mcp$/, '/')} as the header "cf-access-token".
  Flow 2, MCP server as an Access-for-SaaS OIDC client: ${urls.mcpSaas}
    Point any MCP client with OAuth support at it; it sends you to Gatehouse to sign in.

Ctrl-C stops everything; run the same command again to continue with the same data.
Gatehouse demo is ready.
`;
}

function portOption(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError('expected a port from 1 to 65535');
  }
  return port;
}

export function registerDemoCommand(program: Command, waitForSignal: () => Promise<void>): void {
  program
    .command('demo')
    .description('run the gateway with the example wiki, dashboard and MCP server, seeded through the API')
    .addOption(new Option('--port <port>', 'Gatehouse port on 127.0.0.1').default(8080).argParser(portOption))
    .option('--data-dir <dir>', "data directory (SQLite, keys, the examples' files)", './demo-data')
    .option('--user <email>', 'the demo user the policies admit', 'demo@example.com')
    .addOption(new Option('--wiki-port <port>', 'wiki origin port').default(8081).argParser(portOption))
    .addOption(
      new Option('--dashboard-port <port>', 'dashboard origin port').default(8082).argParser(portOption),
    )
    .addOption(
      new Option('--mcp-port <port>', 'MCP server (flow 1) port').default(8083).argParser(portOption),
    )
    .addOption(
      new Option('--mcp-saas-port <port>', 'MCP server (flow 2, SaaS OIDC client) port')
        .default(8084)
        .argParser(portOption),
    )
    .addOption(
      new Option('--log-level <level>', 'Gatehouse log level')
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
        .default('warn'),
    )
    .action(async (flags: Omit<DemoOptions, 'print'>) => {
      const demo = await startDemo({ ...flags, print: (text) => process.stdout.write(text) });
      await waitForSignal();
      await demo.close();
      process.stdout.write('Gatehouse demo stopped.\n');
    });
}
