// Error paths of the part B resources over raw HTTP: each a 400/404 in Cloudflare's envelope
// naming the problem, and nothing written when a request fails.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { PERMISSION_GROUPS } from '../../src/api/permissions.ts';
import { builtInTunnelId } from '../../src/api/tunnels.ts';
import { sha256Hex } from '../../src/keys/secrets.ts';
import { verifyServiceTokenSecret } from '../../src/keys/service-token-secrets.ts';
import { createTestDatabase, databaseKinds } from '../support/databases.ts';
import { startTestGateway } from '../support/gateway.ts';
import { type ApiResponse, rowCounts, startTestApi, type TestApi } from './support.ts';

const UNKNOWN = '00000000-0000-4000-8000-000000000000';

function expectError(response: ApiResponse, status: number, message: RegExp) {
  expect(response.status, JSON.stringify(response.body)).toBe(status);
  expect(response.body).toMatchObject({ success: false, result: null });
  expect(response.body.errors).toHaveLength(1);
  expect(response.body.errors[0].message).toMatch(message);
}

/** An `oidc` identity provider body, valid but for `config` changes (undefined: not sent). */
function oidcIdp(config: Record<string, string | undefined>) {
  const valid = {
    client_id: 'a',
    client_secret: 'b',
    auth_url: 'https://i.example/a',
    token_url: 'https://i.example/t',
    certs_url: 'https://i.example/k',
  };
  return { name: 'SSO', type: 'oidc', config: { ...valid, ...config } };
}

describe.each(databaseKinds)('part B errors (%s)', (kind) => {
  let api: TestApi;
  let token: string;
  let base: string;

  const TABLES = [
    'service_tokens',
    'identity_providers',
    'users',
    'gateway_lists',
    'gateway_list_items',
    'ingress_rules',
    'api_audit_log',
  ] as const;
  const counts = () => rowCounts(api, TABLES);
  const call = (method: string, url: string, json?: unknown) =>
    api.request(method, `${base}${url}`, { token, ...(json !== undefined && { json }) });

  beforeAll(async () => {
    api = await startTestApi(kind);
    token = await api.tokenWith([...PERMISSION_GROUPS]);
    base = `${api.gateway.url}/client/v4/accounts/${api.accountId}`;
  });
  afterAll(async () => {
    await api?.close();
  });

  const cases: [string, string, string, unknown, number, RegExp][] = [
    ['service token without name', 'POST', '/access/service_tokens', {}, 400, /name/],
    [
      'service token bad duration',
      'POST',
      '/access/service_tokens',
      { name: 'x', duration: '1 year' },
      400,
      /duration: expected a Go duration/,
    ],
    [
      'service token unknown field',
      'POST',
      '/access/service_tokens',
      { name: 'x', scope: 'all' },
      400,
      /unknown field "scope"/,
    ],
    ['service token wrong type', 'POST', '/access/service_tokens', { name: 42 }, 400, /name/],
    [
      'service token unknown id',
      'GET',
      `/access/service_tokens/${UNKNOWN}`,
      undefined,
      404,
      /service token .* not found/,
    ],
    ['service token malformed id', 'GET', '/access/service_tokens/nope', undefined, 404, /not found/],
    ['rotate unknown token', 'POST', `/access/service_tokens/${UNKNOWN}/rotate`, {}, 404, /not found/],
    [
      'rotate with a past grace',
      'POST',
      `/access/service_tokens/${UNKNOWN}/rotate`,
      { previous_client_secret_expires_at: '2000-01-01T00:00:00Z' },
      400,
      /must be in the future/,
    ],
    [
      'refresh with a body',
      'POST',
      `/access/service_tokens/${UNKNOWN}/refresh`,
      { years: 2 },
      400,
      /unknown field "years"/,
    ],
    [
      'service token list bad per_page',
      'GET',
      '/access/service_tokens?per_page=0',
      undefined,
      400,
      /per_page/,
    ],
    [
      'idp of an unsupported type',
      'POST',
      '/access/identity_providers',
      { name: 'Okta', type: 'okta', config: {} },
      400,
      /"okta" is not supported by Gatehouse; supported types: onetimepin, oidc, github/,
    ],
    [
      'idp with SCIM on',
      'POST',
      '/access/identity_providers',
      { name: 'PIN', type: 'onetimepin', config: {}, scim_config: { enabled: true } },
      400,
      /scim_config is not supported/,
    ],
    [
      'oidc idp with a relative URL',
      'POST',
      '/access/identity_providers',
      oidcIdp({ auth_url: '/authorize' }),
      400,
      /config.auth_url: expected an absolute http\(s\) URL/,
    ],
    [
      'oidc idp with a javascript URL',
      'POST',
      '/access/identity_providers',
      oidcIdp({ auth_url: 'javascript:alert(1)' }),
      400,
      /config.auth_url/,
    ],
    [
      'oidc idp without secret',
      'POST',
      '/access/identity_providers',
      oidcIdp({ client_secret: undefined }),
      400,
      /config.client_secret: required/,
    ],
    [
      'github idp with an unknown config field',
      'POST',
      '/access/identity_providers',
      { name: 'GH', type: 'github', config: { client_id: 'a', client_secret: 'b', org: 'x' } },
      400,
      /unknown field "config.org"/,
    ],
    [
      'idp unknown id',
      'PUT',
      `/access/identity_providers/${UNKNOWN}`,
      { name: 'PIN', type: 'onetimepin', config: {} },
      404,
      /identity provider .* not found/,
    ],
    ['org PUT without name', 'PUT', '/access/organizations', { auth_domain: 'x' }, 400, /name/],
    [
      'org short session',
      'PATCH',
      '/access/organizations',
      { session_duration: '5m' },
      400,
      /session_duration: must be at least 15m/,
    ],
    [
      'org long session',
      'PATCH',
      '/access/organizations',
      { session_duration: '731h' },
      400,
      /session_duration/,
    ],
    [
      'org MFA',
      'PATCH',
      '/access/organizations',
      { mfa_config: { allowed_authenticators: ['totp'] } },
      400,
      /mfa_config is not supported by Gatehouse/,
    ],
    [
      'org WARP session',
      'PATCH',
      '/access/organizations',
      { warp_auth_session_duration: '24h' },
      400,
      /warp_auth_session_duration is not supported/,
    ],
    [
      'org WARP auth',
      'PATCH',
      '/access/organizations',
      { allow_authenticate_via_warp: true },
      400,
      /allow_authenticate_via_warp is not supported/,
    ],
    [
      'org other auth_domain',
      'PATCH',
      '/access/organizations',
      { auth_domain: 'evil.example' },
      400,
      /auth_domain: is .* the team domain/,
    ],
    [
      'org bad colour',
      'PATCH',
      '/access/organizations',
      { login_design: { text_color: 'red' } },
      400,
      /login_design.text_color/,
    ],
    ['revoke_user without email', 'POST', '/access/organizations/revoke_user', {}, 400, /email/],
    [
      'revoke_user bad email',
      'POST',
      '/access/organizations/revoke_user',
      { email: 'not-an-email' },
      400,
      /email/,
    ],
    [
      'keys interval 0',
      'PUT',
      '/access/keys',
      { key_rotation_interval_days: 0 },
      400,
      /key_rotation_interval_days/,
    ],
    [
      'keys interval too long',
      'PUT',
      '/access/keys',
      { key_rotation_interval_days: 366 },
      400,
      /key_rotation_interval_days/,
    ],
    [
      'keys interval as text',
      'PUT',
      '/access/keys',
      { key_rotation_interval_days: '30' },
      400,
      /key_rotation_interval_days/,
    ],
    ['rotate with a body', 'POST', '/access/keys/rotate', { now: true }, 400, /unknown field "now"/],
    [
      'users unknown id',
      'GET',
      `/access/users/${UNKNOWN}/failed_logins`,
      undefined,
      404,
      /user .* not found/,
    ],
    ['users bad filter', 'GET', '/access/users?role=admin', undefined, 400, /unknown field "query.role"/],
    ['logs bad since', 'GET', '/access/logs/access_requests?since=yesterday', undefined, 400, /query.since/],
    [
      'logs bad op',
      'GET',
      '/access/logs/access_requests?allowed=true&allowedOp=gt',
      undefined,
      400,
      /query.allowedOp/,
    ],
    [
      'logs bad fields',
      'GET',
      '/access/logs/access_requests?fields=password',
      undefined,
      400,
      /unknown field "password"/,
    ],
    [
      'logs limit too high',
      'GET',
      '/access/logs/access_requests?limit=100000',
      undefined,
      400,
      /query.limit/,
    ],
    [
      'tunnel unknown id',
      'GET',
      `/cfd_tunnel/${UNKNOWN}/configurations`,
      undefined,
      404,
      /tunnel .* not found/,
    ],
    [
      'list of an unsupported type',
      'POST',
      '/gateway/lists',
      { name: 'Hosts', type: 'DOMAIN' },
      400,
      /"DOMAIN" is not supported by Gatehouse; supported types: EMAIL, IP/,
    ],
    [
      'email list with a bad email',
      'POST',
      '/gateway/lists',
      { name: 'L', type: 'EMAIL', items: [{ value: 'ok@example.com' }, { value: 'nope' }] },
      400,
      /items: "nope" is not an email address/,
    ],
    [
      'IP list with a bad CIDR',
      'POST',
      '/gateway/lists',
      { name: 'L', type: 'IP', items: [{ value: '10.0.0.0/33' }] },
      400,
      /items: "10.0.0.0\/33" is not an IPv4 or IPv6 address or CIDR block/,
    ],
    [
      'list with too many items',
      'POST',
      '/gateway/lists',
      {
        name: 'L',
        type: 'IP',
        items: Array.from({ length: 10_001 }, (_, i) => ({ value: `10.${i >> 8}.${i & 255}.1` })),
      },
      400,
      /at most 10000 items/,
    ],
    ['list unknown id', 'PATCH', `/gateway/lists/${UNKNOWN}`, { append: [] }, 404, /list .* not found/],
    ['list items unknown id', 'GET', `/gateway/lists/${UNKNOWN}/items`, undefined, 404, /list .* not found/],
  ];

  test.each(cases)('%s', async (_name, method, url, body, status, message) => {
    const before = await counts();
    expectError(await call(method, url, body), status, message);
    expect(await counts()).toEqual(before);
  });

  test('a second onetimepin provider is refused', async () => {
    const first = await call('POST', '/access/identity_providers', {
      name: 'PIN',
      type: 'onetimepin',
      config: {},
    });
    expect(first.status).toBe(201);
    const before = await counts();
    expectError(
      await call('POST', '/access/identity_providers', { name: 'PIN 2', type: 'onetimepin', config: {} }),
      400,
      /already has a onetimepin/,
    );
    expect(await counts()).toEqual(before);
    expectError(
      await call('PUT', `/access/identity_providers/${first.body.result.id}`, {
        name: 'x',
        type: 'github',
        config: { client_id: 'a', client_secret: 'b' },
      }),
      400,
      /type cannot be changed/,
    );
  });

  test('tunnel configuration: the last rule must be a catch-all', async () => {
    const tunnelId = builtInTunnelId(api.accountId);
    const before = await counts();
    expectError(
      await call('PUT', `/cfd_tunnel/${tunnelId}/configurations`, {
        config: { ingress: [{ hostname: 'a.example', service: 'http://127.0.0.1:1' }] },
      }),
      400,
      /the last rule must be a catch-all/,
    );
    expectError(
      await call('PUT', `/cfd_tunnel/${tunnelId}/configurations`, {
        config: { ingress: [{ service: 'ftp://x' }] },
      }),
      400,
      /service: expected http\(s\):\/\/host:port or http_status:NNN/,
    );
    expectError(
      await call('PUT', `/cfd_tunnel/${tunnelId}/configurations`, { ingress: [] }),
      400,
      /config: .*expected object/,
    );
    expect(await counts()).toEqual(before);
  });

  test('an appended list past 10000 items is refused and rolled back', async () => {
    const values = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({ value: `10.${(from + i) >> 8}.${(from + i) & 255}.1` }));
    const created = await call('POST', '/gateway/lists', {
      name: 'Big',
      type: 'IP',
      items: values(0, 9_999),
    });
    expect(created.status).toBe(201);
    const before = await counts();
    expectError(
      await call('PATCH', `/gateway/lists/${created.body.result.id}`, { append: values(9_999, 2) }),
      400,
      /more than 10000 items/,
    );
    expect(await counts()).toEqual(before);
  });

  test('a list cannot change into what a rule cannot use', async () => {
    const list = await call('POST', '/gateway/lists', {
      name: 'Staff',
      type: 'EMAIL',
      items: [{ value: 'a@staff.example' }],
    });
    const policy = await call('POST', '/access/policies', {
      name: 'Staff',
      decision: 'allow',
      include: [{ email_list: { id: list.body.result.id } }],
    });
    expect(policy.status).toBe(201);
    const before = await counts();
    expectError(await call('DELETE', `/gateway/lists/${list.body.result.id}`), 400, /does not exist/);
    expect(await counts()).toEqual(before);
  });

  test('a service token update that asks for a new secret version is refused', async () => {
    const created = await call('POST', '/access/service_tokens', { name: 'svc' });
    const before = await counts();
    expectError(
      await call('PUT', `/access/service_tokens/${created.body.result.id}`, { client_secret_version: 5 }),
      400,
      /client_secret_version: is 1; to get a new secret use POST/,
    );
    expect(await counts()).toEqual(before);
  });
});

describe('verifyServiceTokenSecret', () => {
  const secret = 'cfast_secret';
  const record = {
    enabled: true,
    expiresAt: '2030-01-01T00:00:00.000Z',
    secretHash: sha256Hex(secret),
    previousSecretHash: sha256Hex('old'),
    previousSecretExpiresAt: '2029-01-01T00:00:00.000Z',
  };
  const at = (iso: string) => new Date(iso);
  test('current secret until expiry, previous secret until its grace ends, nothing when disabled', () => {
    expect(verifyServiceTokenSecret(record, secret, at('2028-06-01T00:00:00Z'))).toBe(true);
    expect(verifyServiceTokenSecret(record, 'old', at('2028-06-01T00:00:00Z'))).toBe(true);
    expect(verifyServiceTokenSecret(record, 'old', at('2029-06-01T00:00:00Z'))).toBe(false);
    expect(verifyServiceTokenSecret(record, secret, at('2030-01-01T00:00:00Z'))).toBe(false);
    expect(verifyServiceTokenSecret({ ...record, enabled: false }, secret, at('2028-06-01T00:00:00Z'))).toBe(
      false,
    );
    expect(verifyServiceTokenSecret({ ...record, enabled: false }, 'old', at('2028-06-01T00:00:00Z'))).toBe(
      false,
    );
    expect(verifyServiceTokenSecret({ ...record, expiresAt: null }, secret, at('2090-01-01T00:00:00Z'))).toBe(
      true,
    );
    expect(verifyServiceTokenSecret(record, '', at('2028-06-01T00:00:00Z'))).toBe(false);
  });
});

describe.each(databaseKinds)('locally managed ingress (%s)', (kind) => {
  test('PUT of the tunnel configuration is refused when the config file has ingress', async () => {
    const database = await createTestDatabase(kind);
    const ingress = [
      { hostname: 'wiki.local.example', service: 'http://127.0.0.1:9001' },
      { service: 'http_status:404' },
    ];
    const config = path.join(database.dataDir, 'gatehouse.json');
    writeFileSync(config, JSON.stringify({ ingress }));
    const gateway = await startTestGateway({ database, settings: { config } });
    try {
      const accountId = gateway.gateway.account.accountId;
      const { secret } = await createApiToken(gateway.gateway.repos.apiTokens, {
        accountId,
        name: 'tunnel',
        permissions: ['Cloudflare Tunnel Write'],
      });
      const url = `${gateway.url}/client/v4/accounts/${accountId}/cfd_tunnel/${builtInTunnelId(accountId)}/configurations`;
      const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };
      const put = await fetch(url, {
        method: 'PUT',
        headers,
        body: JSON.stringify({ config: { ingress: [{ service: 'http_status:503' }] } }),
      });
      const body = (await put.json()) as { errors: { message: string }[] };
      expect(put.status).toBe(400);
      expect(body.errors[0]?.message).toMatch(/locally managed: its ingress rules come from the config file/);
      const got = (await (await fetch(url, { headers })).json()) as { result: unknown };
      expect(got.result).toMatchObject({ source: 'local', config: { ingress } });
    } finally {
      await gateway.close();
      await database.cleanup();
    }
  });
});
