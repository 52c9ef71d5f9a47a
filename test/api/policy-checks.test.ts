// "Would this user get in, and why": GET /apps/{id}/user_policy_checks through the official SDK
// and `gatehouse policy test` run as a child process, both against one gateway database seeded
// through the management API, plus a login session written the way the login writes it.
import type Cloudflare from 'cloudflare';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { LoginState } from '../../src/identity/state.ts';
import { killAllCli, runCli } from '../support/cli.ts';
import { databaseKinds, tempDir } from '../support/databases.ts';
import { oidcIdpConfig, selfHostedApp, startTestApi, type TestApi } from './support.ts';

/** One policy of `app_state.policies`: the engine's trace entry with the policy id as `id`. */
interface TracedPolicy {
  id: string;
  name: string;
  result: string;
  include: { rule: string; matched: boolean }[];
  exclude: { rule: string; matched: boolean }[];
}
type AppState = { status: string; decided_by: unknown; policies: TracedPolicy[] };

describe.each(databaseKinds)('policy checks (%s)', (kind) => {
  let api: TestApi;
  let client: Cloudflare;
  let account_id: string;
  let appId: string;
  let oidcIdp: string;
  let carolId: string;
  const policyIds: Record<string, string> = {};
  const cwd = tempDir('gatehouse-policy-test-');

  beforeAll(async () => {
    api = await startTestApi(kind);
    client = api.client;
    account_id = api.accountId;
    const idp = await client.zeroTrust.identityProviders.create({
      account_id,
      name: 'Company SSO',
      type: 'oidc',
      config: oidcIdpConfig('rp'),
    });
    oidcIdp = idp.id!;
    const app = await api.request('POST', `${api.access}/apps`, {
      json: selfHostedApp('wiki.example.com', {
        name: 'Wiki',
        policies: [
          {
            name: 'Engineers',
            decision: 'allow',
            precedence: 1,
            include: [
              { email_domain: { domain: 'example.com' } },
              { oidc: { claim_name: 'groups', claim_value: 'eng', identity_provider_id: oidcIdp } },
            ],
            exclude: [{ email: { email: 'bob@example.com' } }],
          },
          {
            name: 'Contractors',
            decision: 'deny',
            precedence: 2,
            include: [{ email_domain: { domain: 'contractor.example' } }],
          },
          {
            name: 'Office network',
            decision: 'bypass',
            precedence: 3,
            include: [{ ip: { ip: '203.0.113.0/24' } }],
          },
        ],
      }),
    });
    expect(app.status).toBe(201);
    appId = app.body.result.id;
    for (const policy of app.body.result.policies) policyIds[policy.name] = policy.id;

    // Carol logged in through the OIDC IdP, which said she is in "eng" (no example.com email).
    const { gateway } = api.gateway;
    const carol = await gateway.repos.users.upsertOnLogin(account_id, 'carol@partner.example', 'Carol');
    carolId = carol.id;
    const now = new Date();
    await new LoginState(gateway.store, account_id).createSession({
      userId: carol.id,
      identity: {
        email: 'carol@partner.example',
        name: 'Carol',
        idp: { id: oidcIdp, type: 'oidc' },
        oidcClaims: { groups: ['eng', 'ops'] },
      },
      identityNonce: 'a'.repeat(32),
      ip: '198.51.100.4',
      now,
      expiresAt: new Date(now.getTime() + 3_600_000),
    });
  });
  afterEach(async () => {
    await killAllCli();
  });
  afterAll(async () => {
    await api?.close();
    cwd.cleanup();
  });

  const check = (query: Record<string, string>) =>
    client.zeroTrust.access.applications.userPolicyChecks.list(appId, { account_id }, { query });

  test('an allowed user: Bypass first, then Allow by precedence, with the reason of each rule', async () => {
    const result = await check({ email: 'alice@example.com' });
    const state = result.app_state as Record<string, unknown> & { policies: Record<string, unknown>[] };
    expect(state).toMatchObject({
      app_uid: appId,
      hostname: 'wiki.example.com',
      name: 'Wiki',
      status: 'allow',
      decided_by: { id: policyIds.Engineers, name: 'Engineers', decision: 'allow', precedence: 1 },
    });
    // The documented order: Bypass (precedence 3) before Allow (1) and Block (2).
    expect(state.policies.map((p) => [p.name, p.result])).toEqual([
      ['Office network', 'not_matched'],
      ['Engineers', 'matched'],
      ['Contractors', 'skipped'],
    ]);
    expect(state.policies[1]).toMatchObject({
      id: policyIds.Engineers,
      include: [
        { rule: 'email_domain', matched: true },
        { rule: 'oidc', matched: false },
      ],
      exclude: [{ rule: 'email', matched: false }],
    });
    expect(result.user_identity).toMatchObject({ email: 'alice@example.com', account_id, user_uuid: '' });
  });

  test('an exclude, a Block policy and the default deny each explain themselves', async () => {
    const bob = await check({ email: 'bob@example.com' });
    const bobState = bob.app_state as AppState;
    expect(bobState.status).toBe('deny');
    expect(bobState.decided_by).toBeNull();
    expect(bobState.policies[1]!.result).toBe('not_matched');
    expect(bobState.policies[1]!.exclude[0]).toMatchObject({ rule: 'email', matched: true });

    const contractor = await check({ email: 'eve@contractor.example' });
    expect(contractor.app_state).toMatchObject({
      status: 'deny',
      decided_by: { id: policyIds.Contractors, decision: 'deny' },
    });

    const office = await check({ email: 'eve@contractor.example', ip: '203.0.113.7' });
    expect(office.app_state).toMatchObject({ status: 'bypass', decided_by: { name: 'Office network' } });
    const ipv6 = await check({ email: 'eve@contractor.example', ip: '2001:db8::1' });
    expect(ipv6.app_state).toMatchObject({ status: 'deny' });
  });

  test("a user's login session supplies the IdP and its claims; explicit facts replace them", async () => {
    const carol = await check({ user_id: carolId });
    expect(carol.app_state).toMatchObject({ status: 'allow', decided_by: { name: 'Engineers' } });
    expect((carol.app_state as AppState).policies[1]!.include[1]).toMatchObject({
      rule: 'oidc',
      matched: true,
    });
    expect(carol.user_identity).toMatchObject({
      id: carolId,
      user_uuid: carolId,
      email: 'carol@partner.example',
      name: 'Carol',
    });
    // The same by email, and with the groups claim overridden: no longer an engineer.
    expect((await check({ email: 'Carol@Partner.example' })).app_state).toMatchObject({ status: 'allow' });
    expect((await check({ user_id: carolId, groups: 'ops' })).app_state).toMatchObject({ status: 'deny' });
  });

  test('bad queries are 400s in the envelope, unknown apps 404', async () => {
    const url = `${api.access}/apps/${appId}/user_policy_checks`;
    const none = await api.request('GET', url);
    expect(none.status).toBe(400);
    expect(none.body.errors[0].message).toMatch(/email or user_id/);
    for (const [query, field] of [
      ['email=not-an-email', 'query.email'],
      ['email=a@example.com&ip=300.1.1.1', 'query.ip'],
      ['email=a@example.com&country=USA', 'query.country'],
      ['email=a@example.com&surprise=1', '"query.surprise"'],
    ] as const) {
      const response = await api.request('GET', `${url}?${query}`);
      expect(response.status, query).toBe(400);
      expect(response.body.errors[0]).toMatchObject({ code: 12130 });
      expect(response.body.errors[0].message).toContain(field);
    }
    const unknownIdp = await api.request(
      'GET',
      `${url}?email=a@example.com&idp_id=00000000-0000-4000-8000-000000000000`,
    );
    expect(unknownIdp.status).toBe(400);
    expect(unknownIdp.body.errors[0].message).toMatch(/identity provider .* does not exist/);
    const mismatch = await api.request('GET', `${url}?user_id=${carolId}&email=alice@example.com`);
    expect(mismatch.status).toBe(400);
    const missing = await api.request(
      'GET',
      `${api.access}/apps/00000000-0000-4000-8000-000000000000/user_policy_checks?email=a@example.com`,
    );
    expect(missing.status).toBe(404);
    // Reading is all it does: nothing went to the audit log.
    const writes = await api.gateway.gateway.repos.auditLog.list(account_id);
    expect(writes.filter((write) => write.action === 'apps.user_policy_checks')).toEqual([]);
  });

  test('rules whose facts no request carries yet are refused, not accepted to never match', async () => {
    const policies = `${api.access}/policies`;
    const cases = [
      [
        policies,
        {
          name: 'p',
          decision: 'allow',
          include: [{ everyone: {} }],
          exclude: [{ geo: { country_code: 'RU' } }],
        },
        'geo',
      ],
      [
        policies,
        { name: 'p', decision: 'allow', include: [{ everyone: {} }], require: [{ certificate: {} }] },
        'certificate',
      ],
      [
        `${api.access}/groups`,
        { name: 'g', include: [{ common_name: { common_name: 'svc' } }] },
        'common_name',
      ],
    ] as const;
    for (const [url, json, selector] of cases) {
      const response = await api.request('POST', url, { json });
      expect(response.status, selector).toBe(400);
      expect(response.body.errors[0].message).toContain(`"${selector}" is not available:`);
    }
    const reusable = await client.zeroTrust.access.policies.list({ account_id });
    expect(reusable.result).toEqual([]);
    const groups = await client.zeroTrust.access.groups.list({ account_id });
    expect(groups.result).toEqual([]);
  });

  describe('gatehouse policy test', () => {
    const cli = (args: string[]) =>
      runCli(
        [
          'policy',
          'test',
          '--database-url',
          api.gateway.database.url,
          '--data-dir',
          api.gateway.database.dataDir,
          ...args,
        ],
        { cwd: cwd.dir, timeoutMs: 240_000 },
      );

    // Each run starts a whole Node process (seconds on a busy machine), so the runs go in parallel.
    test('decision, deciding policy and trace; exit 0 allowed, 3 denied, 2 usage errors', async () => {
      const [allowed, denied, carol, noApp, badIp] = await Promise.all([
        cli(['--app', 'wiki.example.com', '--email', 'alice@example.com']),
        cli(['--app', appId, '--email', 'eve@contractor.example', '--json']),
        cli(['--app', 'Wiki', '--email', 'carol@partner.example']),
        cli(['--app', 'nowhere.example.com', '--email', 'a@example.com']),
        cli(['--app', 'wiki', '--email', 'a@example.com', '--ip', 'nope']),
      ]);

      expect(allowed.stderr).not.toContain('error');
      expect(allowed.code).toBe(0);
      expect(allowed.stdout).toContain(
        `decision: ALLOWED by Allow policy "Engineers" (precedence 1, ${policyIds.Engineers})`,
      );
      const lines = allowed.stdout.split('\n');
      const order = ['Office network', 'Engineers', 'Contractors'].map((name) =>
        lines.findIndex((line) => line.includes(`"${name}"`) && /^\s+\d\./.test(line)),
      );
      expect(order[0]).toBeGreaterThan(0);
      expect(order[1]).toBeGreaterThan(order[0]!);
      expect(order[2]).toBeGreaterThan(order[1]!);
      expect(allowed.stdout).toMatch(/include yes email_domain: .*example\.com/);

      expect(denied.code).toBe(3);
      const report = JSON.parse(denied.stdout);
      expect(report).toMatchObject({
        decision: 'deny',
        allowed: false,
        policy: { id: policyIds.Contractors, name: 'Contractors' },
        app: { id: appId, domain: 'wiki.example.com' },
      });
      expect(report.trace.map((p: { name: string }) => p.name)).toEqual([
        'Office network',
        'Engineers',
        'Contractors',
      ]);
      // Carol's email matches nothing; her session says she is in "eng" through the OIDC IdP.
      expect(carol.code).toBe(0);
      expect(carol.stdout).toContain(`IdP oidc ${oidcIdp}`);
      expect(carol.stdout).toContain('decision: ALLOWED by Allow policy "Engineers"');

      expect(noApp.code).toBe(2);
      expect(noApp.stderr).toContain('no application has the id, domain or name "nowhere.example.com"');
      expect(badIp.code).toBe(2);
      expect(badIp.stderr).toContain('--ip: expected an IPv4 or IPv6 address');
    }, 300_000);
  });
});
