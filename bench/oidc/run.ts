// Access for SaaS token endpoint benchmark: authorization-code exchanges (code + PKCE +
// client_secret_basic → RS256 at+jwt access token, RS256 ID token, rotated refresh token) and
// refresh-token grants per second, on SQLite, over loopback HTTP with keep-alive.
// Run pinned to one core: taskset -c 1 npx tsx bench/oidc/run.ts   (results: bench/README.md)
// `--profile <file.cpuprofile>` also writes a V8 CPU profile of the timed windows only (not the
// start-up or the minting of codes), for Chrome DevTools or any .cpuprofile reader.
//
// Codes are minted in-process through oidc-provider's own model (as its authorization endpoint
// does after the login), so the figures are the token endpoint's alone; the login and the
// interaction are a browser's one-off cost, not a per-token one.
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Profiler } from 'node:inspector';
import { Session } from 'node:inspector/promises';
import { Pool } from 'undici';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { loadSettings } from '../../src/config/settings.ts';
import { openGateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/logging.ts';
import { orgSessions } from '../../src/login/org-session.ts';
import { SaasOidcService } from '../../src/oidc/service.ts';
import { accountSignedEvaluator, identityDecider } from '../../src/policy-external/identity-decision.ts';
import { createServer } from '../../src/server.ts';
import { tempDir } from '../../test/support/databases.ts';
import { freePort } from '../../test/support/ports.ts';

const ROUNDS = 5;
const PER_ROUND = 400;
const CONCURRENCY = 16;
const VERIFIER = 'b'.repeat(43);
const CHALLENGE = createHash('sha256').update(VERIFIER).digest('base64url');
const REDIRECT = 'https://rp.example.com/callback';
const profileArg = process.argv.indexOf('--profile');
const profileFile = profileArg === -1 ? undefined : process.argv[profileArg + 1];
if (profileArg !== -1 && !profileFile) throw new Error('usage: --profile <file.cpuprofile>');

interface CodeModel {
  save(): Promise<string>;
}
interface BenchProvider {
  issuer: string;
  Grant: new (init: {
    accountId: string;
    clientId: string;
  }) => {
    addOIDCScope(scope: string): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  };
  Client: { find(id: string): Promise<unknown> };
  AuthorizationCode: new (init: Record<string, unknown>) => CodeModel;
}

const data = tempDir('gatehouse-bench-oidc-');
const port = await freePort();
const settings = loadSettings(
  {
    listen: `127.0.0.1:${port}`,
    teamDomain: `http://127.0.0.1:${port}`,
    dataDir: data.dir,
    databaseUrl: `sqlite:${data.dir}/gatehouse.db`,
    logLevel: 'silent',
  },
  {},
);
const logger = createLogger('silent');
const gateway = await openGateway(settings, logger);
// The whole team-domain server (Fastify, the OIDC routes) serves the token endpoint.
const team = await createServer(gateway, logger);
await team.listen();
const { secret: apiSecret } = await createApiToken(gateway.repos.apiTokens, {
  accountId: gateway.account.accountId,
  name: 'bench',
  permissions: ['Access: Apps and Policies Write'],
});
const created = await fetch(
  `${settings.teamDomain}/client/v4/accounts/${gateway.account.accountId}/access/apps`,
  {
    method: 'POST',
    headers: { authorization: `Bearer ${apiSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      type: 'saas',
      name: 'bench',
      policies: [{ name: 'all', decision: 'allow', include: [{ everyone: {} }] }],
      saas_app: {
        auth_type: 'oidc',
        redirect_uris: [REDIRECT],
        grant_types: ['authorization_code_with_pkce', 'refresh_tokens'],
        scopes: ['openid', 'email', 'profile'],
      },
    }),
  },
);
const app = ((await created.json()) as { result: { saas_app: { client_id: string; client_secret: string } } })
  .result.saas_app;
await gateway.snapshot.refresh();
const user = await gateway.repos.users.upsertOnLogin(gateway.account.accountId, 'bench@example.com', 'Bench');

// A second provider instance on the same store mints the codes, as another node would.
const decide = identityDecider(accountSignedEvaluator(gateway.keys, gateway.settings.teamDomain));
const service = new SaasOidcService(gateway, orgSessions(gateway), logger, decide);
const provider = service.providerForClient(app.client_id) as unknown as BenchProvider;
const client = await provider.Client.find(app.client_id);
const grant = new provider.Grant({ accountId: user.id, clientId: app.client_id });
grant.addOIDCScope('openid email profile offline_access');
grant.addResourceScope(provider.issuer, 'openid email profile offline_access');
const grantId = await grant.save();

async function mintCodes(count: number): Promise<string[]> {
  const codes: string[] = [];
  for (let i = 0; i < count; i++) {
    codes.push(
      await new provider.AuthorizationCode({
        accountId: user.id,
        authTime: Math.floor(Date.now() / 1000),
        client,
        codeChallenge: CHALLENGE,
        codeChallengeMethod: 'S256',
        grantId,
        redirectUri: REDIRECT,
        resource: [provider.issuer],
        scope: 'openid email profile offline_access',
      }).save(),
    );
  }
  return codes;
}

const tokenPath = `${new URL(provider.issuer).pathname}/token`;
// Idle connections are dropped by the client well before the server's 5 s keep-alive timeout:
// minting the next round's codes can take seconds on a loaded machine, and a request sent on a
// connection the server is closing fails with ECONNRESET (a code cannot be retried).
const pool = new Pool(`http://127.0.0.1:${port}`, {
  connections: CONCURRENCY,
  pipelining: 1,
  keepAliveTimeout: 1000,
  keepAliveMaxTimeout: 1000,
});
const basic = `Basic ${Buffer.from(`${app.client_id}:${app.client_secret}`).toString('base64')}`;

async function post(form: Record<string, string>): Promise<Record<string, string>> {
  const response = await pool.request({
    method: 'POST',
    path: tokenPath,
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  const body = (await response.body.json()) as Record<string, string>;
  if (response.statusCode !== 200)
    throw new Error(`token endpoint: ${response.statusCode} ${JSON.stringify(body)}`);
  return body;
}

const profiler = profileFile ? new Session() : undefined;
const profiles: Profiler.Profile[] = [];
if (profiler) {
  profiler.connect();
  await profiler.post('Profiler.enable');
}

/** The profiles of several windows as one: a synthetic root over each window's tree. */
function mergeProfiles(parts: Profiler.Profile[]): Profiler.Profile {
  const root: Profiler.ProfileNode = {
    id: 1,
    callFrame: { functionName: '(timed windows)', scriptId: '0', url: '', lineNumber: -1, columnNumber: -1 },
    children: [],
  };
  const merged: Profiler.Profile = { nodes: [root], startTime: 0, endTime: 0, samples: [], timeDeltas: [] };
  let offset = 1;
  for (const part of parts) {
    const shift = (id: number) => id + offset;
    for (const node of part.nodes) {
      merged.nodes.push({ ...node, id: shift(node.id), children: node.children?.map(shift) ?? [] });
    }
    root.children!.push(shift(part.nodes[0]!.id));
    merged.samples!.push(...part.samples!.map(shift));
    // The gap between windows is not time the windows spent.
    merged.timeDeltas!.push(0, ...part.timeDeltas!.slice(1));
    merged.endTime += part.endTime - part.startTime;
    offset = Math.max(...merged.nodes.map((node) => node.id));
  }
  return merged;
}

/**
 * Runs `work` over `inputs` with CONCURRENCY in flight; returns outputs and requests per second.
 * `profile` adds the window to the CPU profile (counted rounds only).
 */
async function timed<T, R>(
  inputs: T[],
  work: (input: T) => Promise<R>,
  profile: boolean,
): Promise<{ out: R[]; perSecond: number; cpuMs: number }> {
  const out: R[] = new Array(inputs.length);
  let next = 0;
  if (profiler && profile) await profiler.post('Profiler.start');
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < inputs.length) {
        const index = next++;
        out[index] = await work(inputs[index]!);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  if (profiler && profile) profiles.push((await profiler.post('Profiler.stop')).profile);
  // CPU time of this process (server and client) per request: steady even on a busy machine.
  return { out, perSecond: inputs.length / seconds, cpuMs: (used.user + used.system) / 1000 / inputs.length };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const exchanges: number[] = [];
const refreshes: number[] = [];
const exchangeCpu: number[] = [];
const refreshCpu: number[] = [];
// Warm-up round, not counted.
for (let round = 0; round <= ROUNDS; round++) {
  const codes = await mintCodes(PER_ROUND);
  const exchanged = await timed(
    codes,
    (code) =>
      post({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: VERIFIER }),
    round > 0,
  );
  const refreshed = await timed(
    exchanged.out,
    (tokens) => post({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }),
    round > 0,
  );
  if (round === 0) continue;
  exchanges.push(exchanged.perSecond);
  refreshes.push(refreshed.perSecond);
  exchangeCpu.push(exchanged.cpuMs);
  refreshCpu.push(refreshed.cpuMs);
  console.log(
    `round ${round}: ${exchanged.perSecond.toFixed(0)} code exchanges/s (${exchanged.cpuMs.toFixed(2)} ms CPU each), ` +
      `${refreshed.perSecond.toFixed(0)} refreshes/s (${refreshed.cpuMs.toFixed(2)} ms CPU each)`,
  );
}
// Anchor: one RSA-2048 signature's CPU time in this process now (every exchange and refresh
// makes two: the access token and the ID token). On a shared machine the absolute figures move
// with the load; the ratio to this anchor is the steadier one.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const anchorCpu = process.cpuUsage();
for (let i = 0; i < 300; i++) sign('sha256', Buffer.from(`anchor ${i}`), privateKey);
const anchorUsed = process.cpuUsage(anchorCpu);
const signMs = (anchorUsed.user + anchorUsed.system) / 1000 / 300;
console.log(
  `RSA-2048 sign: ${signMs.toFixed(2)} ms CPU; an exchange costs ${(median(exchangeCpu) / signMs).toFixed(1)} signatures, ` +
    `a refresh ${(median(refreshCpu) / signMs).toFixed(1)}`,
);
console.log(
  `median of ${ROUNDS} rounds × ${PER_ROUND} (concurrency ${CONCURRENCY}): ` +
    `${median(exchanges).toFixed(0)} code exchanges/s, ${median(refreshes).toFixed(0)} refreshes/s; ` +
    `CPU per request ${median(exchangeCpu).toFixed(2)} ms (exchange), ${median(refreshCpu).toFixed(2)} ms (refresh) ` +
    `→ one core's capacity ${(1000 / median(exchangeCpu)).toFixed(0)} exchanges/s, ${(1000 / median(refreshCpu)).toFixed(0)} refreshes/s`,
);

if (profiler && profileFile) {
  writeFileSync(profileFile, JSON.stringify(mergeProfiles(profiles)));
  console.log(`CPU profile of the timed windows: ${profileFile}`);
  profiler.disconnect();
}

await pool.close();
service.close();
await team.close();
data.cleanup();
