// Every error path of the management API over raw HTTP: each answer in Cloudflare's envelope
// with a real status and a code, and nothing written when a request fails.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { openStore } from '../../src/gateway.ts';
import { createTestDatabase, databaseKinds } from '../support/databases.ts';
import { startTestGateway } from '../support/gateway.ts';
import {
  type ApiResponse,
  rowCounts,
  saasApp,
  selfHostedApp,
  startTestApi,
  type TestApi,
} from './support.ts';

function expectError(response: ApiResponse, status: number, code: number, message?: RegExp) {
  expect(response.status).toBe(status);
  expect(response.body).toMatchObject({ success: false, messages: [], result: null });
  expect(response.body.errors).toHaveLength(1);
  expect(response.body.errors[0].code).toBe(code);
  if (message) expect(response.body.errors[0].message).toMatch(message);
}

describe.each(databaseKinds)('management API errors (%s)', (kind) => {
  let api: TestApi;
  let linked: { saasId: string; wikiId: string; policyId: string };

  /** Row counts of every Access table: compared before and after failing requests. */
  const counts = () => rowCounts(api, ['apps', 'policies', 'app_policies', 'access_groups', 'api_audit_log']);

  beforeAll(async () => {
    api = await startTestApi(kind);
    const saas = await api.request('POST', `${api.access}/apps`, { json: saasApp('MCP') });
    const wiki = await api.request('POST', `${api.access}/apps`, {
      json: selfHostedApp('wiki.errors.example'),
    });
    const policy = await api.request('POST', `${api.access}/policies`, {
      json: {
        name: 'MCP',
        decision: 'non_identity',
        include: [{ linked_app_token: { app_uid: saas.body.result.id } }],
      },
    });
    linked = { saasId: saas.body.result.id, wikiId: wiki.body.result.id, policyId: policy.body.result.id };
  });
  afterAll(async () => {
    await api?.close();
  });

  test('authentication: missing, malformed, unknown, expired and disabled tokens get 401', async () => {
    const url = `${api.access}/apps`;
    expectError(await api.request('GET', url, { token: null }), 401, 10000, /missing Authorization/);
    expectError(
      await api.request('GET', url, { headers: { authorization: 'Basic abc' }, token: null }),
      401,
      10000,
    );
    expectError(await api.request('GET', url, { token: 'not-a-token' }), 401, 10000, /invalid API token/);
    const { repos } = api.gateway.gateway;
    const expired = await createApiToken(repos.apiTokens, {
      accountId: api.accountId,
      name: 'old',
      permissions: ['Access: Apps and Policies Read'],
      expiresOn: new Date(Date.now() - 1000).toISOString(),
    });
    expectError(await api.request('GET', url, { token: expired.secret }), 401, 10000, /expired/);
    const disabled = await createApiToken(repos.apiTokens, {
      accountId: api.accountId,
      name: 'off',
      permissions: ['Access: Apps and Policies Read'],
    });
    await api.gateway.gateway.store.db
      .updateTable('api_tokens')
      .set({ status: 'disabled' })
      .where('id', '=', disabled.token.id)
      .execute();
    expectError(await api.request('GET', url, { token: disabled.secret }), 401, 10000, /disabled/);
  });

  test('a valid token without the permission gets 403', async () => {
    const reader = await api.tokenWith(['Access: Apps and Policies Read']);
    expectError(
      await api.request('POST', `${api.access}/apps`, { token: reader, json: selfHostedApp('x.example') }),
      403,
      10001,
      /Apps and Policies Write/,
    );
  });

  test('unknown account, unknown route, unknown ids', async () => {
    const other = `${api.gateway.url}/client/v4/accounts/${'0'.repeat(32)}/access/apps`;
    expectError(await api.request('GET', other), 404, 7003);
    expectError(await api.request('GET', `${api.gateway.url}/client/v4/nothing/here`), 404, 7000);
    const missing = '6f1de8a2-3c4b-4d5e-8f90-1a2b3c4d5e6f';
    expectError(await api.request('GET', `${api.access}/apps/${missing}`), 404, 12130, /not found/);
    expectError(await api.request('GET', `${api.access}/apps/not-a-uuid`), 404, 12130);
    expectError(
      await api.request('PUT', `${api.access}/apps/${missing}`, { json: selfHostedApp('a.example') }),
      404,
      12130,
    );
    expectError(await api.request('DELETE', `${api.access}/policies/${missing}`), 404, 12130);
    expectError(await api.request('GET', `${api.access}/groups/${missing}`), 404, 12130);
    expectError(
      await api.request('GET', `${api.access}/apps/${linked.wikiId}/policies/${missing}`),
      404,
      12130,
    );
  });

  test('body problems: malformed JSON, empty JSON, not JSON, too large, wrong types, unknown fields', async () => {
    const before = await counts();
    const url = `${api.access}/apps`;
    expectError(await api.request('POST', url, { raw: '{"type":' }), 400, 6007, /Malformed JSON/);
    expectError(await api.request('POST', url, { raw: '' }), 400, 6007);
    expectError(
      await api.request('POST', url, { raw: 'type=self_hosted', headers: { 'content-type': 'text/plain' } }),
      415,
      6010,
    );
    const huge = JSON.stringify({
      ...selfHostedApp('big.example'),
      custom_deny_message: 'x'.repeat(1024 * 1024),
    });
    expectError(await api.request('POST', url, { raw: huge }), 413, 6013, /1048576/);
    expectError(await api.request('POST', url, { json: [1, 2] }), 400, 12130, /type: required/);
    expectError(
      await api.request('POST', url, { json: selfHostedApp('t.example', { session_duration: 5 }) }),
      400,
      12130,
      /session_duration/,
    );
    expectError(
      await api.request('POST', url, {
        json: selfHostedApp('t.example', { http_only_cookie_attribute: 'yes' }),
      }),
      400,
      12130,
      /http_only_cookie_attribute/,
    );
    expectError(
      await api.request('POST', url, { json: selfHostedApp('t.example', { colour: 'blue' }) }),
      400,
      12130,
      /unknown field "colour"/,
    );
    expectError(await api.request('GET', `${url}?per_page=0`), 400, 12130, /query.per_page/);
    expectError(await api.request('GET', `${url}?per_page=abc`), 400, 12130, /query.per_page/);
    expect(await counts()).toEqual(before);
  });

  test('app validation: unsupported types, private destinations, SAML, hybrid grants', async () => {
    const before = await counts();
    const url = `${api.access}/apps`;
    expectError(
      await api.request('POST', url, { json: { type: 'ssh', domain: 'ssh.example', name: 's' } }),
      400,
      12130,
      /"ssh" is not supported.*self_hosted, saas/,
    );
    expectError(
      await api.request('POST', url, {
        json: { type: 'self_hosted', destinations: [{ type: 'private', hostname: 'db.internal' }] },
      }),
      400,
      12130,
      /only public destinations/,
    );
    expectError(
      await api.request('POST', url, { json: selfHostedApp('https://with-scheme.example') }),
      400,
      12130,
      /domain/,
    );
    expectError(
      await api.request('POST', url, {
        json: selfHostedApp('cors.example', {
          options_preflight_bypass: true,
          cors_headers: { allow_all_origins: true },
        }),
      }),
      400,
      12130,
      /cors_headers/,
    );
    const saas = saasApp('bad');
    expectError(
      await api.request('POST', url, {
        json: { ...saas, saas_app: { ...saas.saas_app, auth_type: 'saml' } },
      }),
      400,
      12130,
      /SAML/,
    );
    expectError(
      await api.request('POST', url, {
        json: { ...saas, saas_app: { ...saas.saas_app, grant_types: ['implicit'] } },
      }),
      400,
      12130,
      /hybrid and implicit/,
    );
    expectError(
      await api.request('POST', url, {
        json: { ...saas, saas_app: { ...saas.saas_app, access_token_lifetime: '25h' } },
      }),
      400,
      12130,
      /access_token_lifetime/,
    );
    expectError(
      await api.request('POST', url, { json: selfHostedApp('wiki.errors.example') }),
      400,
      12130,
      /already used by app/,
    );
    expect(await counts()).toEqual(before);
  });

  test('security features Gatehouse does not enforce are refused, naming the field', async () => {
    const before = await counts();
    const url = `${api.access}/apps`;
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ mfa_config: { allowed_authenticators: ['totp'] } }, /mfa_config/],
      [{ scim_config: { enabled: true, idp_uid: 'x', remote_uri: 'https://scim.example' } }, /scim_config/],
      [{ allow_authenticate_via_warp: true }, /allow_authenticate_via_warp/],
    ];
    for (const [extra, message] of refused) {
      expectError(
        await api.request('POST', url, { json: selfHostedApp('sec.example', extra) }),
        400,
        12130,
        message,
      );
    }
    const policyUrl = `${api.access}/policies`;
    const base = { name: 'p', decision: 'allow', include: [{ everyone: {} }] };
    for (const [extra, message] of [
      [{ approval_required: true }, /approval_required/],
      [{ approval_groups: [{ approvals_needed: 1, email_addresses: ['a@example.com'] }] }, /approval_groups/],
      [{ isolation_required: true }, /isolation_required/],
      [{ purpose_justification_required: true }, /purpose_justification_required/],
      [{ mfa_config: { allowed_authenticators: ['totp'] } }, /mfa_config/],
    ] as const) {
      expectError(await api.request('POST', policyUrl, { json: { ...base, ...extra } }), 400, 12130, message);
    }
    expectError(
      await api.request('POST', policyUrl, {
        json: { ...base, include: [{ device_posture: { integration_uid: 'x' } }] },
      }),
      400,
      12130,
      /device_posture/,
    );
    // Switched off, the same fields are accepted (clients PUT back what they read).
    const ok = await api.request('POST', policyUrl, {
      json: { ...base, approval_required: false, isolation_required: false, approval_groups: [] },
    });
    expect(ok.status).toBe(201);
    await api.request('DELETE', `${policyUrl}/${ok.body.result.id}`);
    const after = await counts();
    expect({ ...after, api_audit_log: 0 }).toEqual({ ...before, api_audit_log: 0 });
  });

  test('policy rules: linked_app_token needs non_identity or bypass, and a linkable app', async () => {
    const before = await counts();
    const policyUrl = `${api.access}/policies`;
    expectError(
      await api.request('POST', policyUrl, {
        json: { name: 'bad', decision: 'allow', include: [{ linked_app_token: { app_uid: linked.saasId } }] },
      }),
      400,
      12130,
      /non_identity and bypass/,
    );
    expectError(
      await api.request('POST', policyUrl, {
        json: {
          name: 'bad',
          decision: 'non_identity',
          include: [{ linked_app_token: { app_uid: '6f1de8a2-3c4b-4d5e-8f90-1a2b3c4d5e6f' } }],
        },
      }),
      400,
      12130,
      /not a self_hosted or OIDC saas application/,
    );
    expectError(
      await api.request('POST', policyUrl, { json: { name: 'bad', decision: 'allow', include: [] } }),
      400,
      12130,
      /include/,
    );
    expect(await counts()).toEqual(before);
  });

  test('attaching: duplicate precedence, linked policy on a saas app, mixed inline and reusable', async () => {
    const before = await counts();
    const wiki = (await api.request('GET', `${api.access}/apps/${linked.wikiId}`)).body.result;
    const saas = (await api.request('GET', `${api.access}/apps/${linked.saasId}`)).body.result;
    const other = await api.request('POST', `${api.access}/policies`, {
      json: { name: 'Everyone', decision: 'allow', include: [{ everyone: {} }] },
    });
    const afterSetup = await counts();
    const put = (app: Record<string, unknown>, policies: unknown[]) =>
      api.request('PUT', `${api.access}/apps/${app.id}`, { json: { ...app, policies } });

    expectError(
      await put(wiki, [
        { id: linked.policyId, precedence: 1 },
        { id: other.body.result.id, precedence: 1 },
      ]),
      400,
      12130,
      /policy precedences must be unique/,
    );
    expectError(await put(saas, [linked.policyId]), 400, 12130, /only be attached to self_hosted/);
    expectError(
      await put(saas, [
        {
          name: 'inline',
          decision: 'non_identity',
          include: [{ linked_app_token: { app_uid: linked.wikiId } }],
        },
      ]),
      400,
      12130,
      /only be attached to self_hosted/,
    );
    expectError(
      await put(wiki, [linked.policyId, { name: 'inline', decision: 'allow', include: [{ everyone: {} }] }]),
      400,
      12130,
      /may not be mixed/,
    );
    expectError(await put(wiki, ['6f1de8a2-3c4b-4d5e-8f90-1a2b3c4d5e6f']), 400, 12130, /does not exist/);
    expect(await counts()).toEqual(afterSetup);

    // A reusable policy on a saas app may not gain a linked_app_token rule later.
    expect((await put(saas, [other.body.result.id])).status).toBe(200);
    expectError(
      await api.request('PUT', `${api.access}/policies/${other.body.result.id}`, {
        json: {
          name: 'Everyone',
          decision: 'bypass',
          include: [{ linked_app_token: { app_uid: linked.wikiId } }],
        },
      }),
      400,
      12130,
      /only be attached to self_hosted/,
    );
    // Nor be deleted while in use; nor may the linked app be deleted while a rule names it.
    expectError(
      await api.request('DELETE', `${api.access}/policies/${other.body.result.id}`),
      400,
      12130,
      /used by 1/,
    );
    expectError(
      await api.request('DELETE', `${api.access}/apps/${linked.saasId}`),
      400,
      12130,
      /linked_app_token/,
    );
    expect((await put(saas, [])).status).toBe(200);
    expect((await api.request('DELETE', `${api.access}/policies/${other.body.result.id}`)).status).toBe(202);
    const after = await counts();
    expect({ ...after, api_audit_log: 0 }).toEqual({ ...before, api_audit_log: 0 });
  });
});

test('last_used_on is recorded in a batch when the API closes', async () => {
  const database = await createTestDatabase('sqlite');
  try {
    const gateway = await startTestGateway({ database });
    const { secret, token } = await createApiToken(gateway.gateway.repos.apiTokens, {
      accountId: gateway.gateway.account.accountId,
      name: 'usage',
      permissions: ['Access: Apps and Policies Read'],
    });
    const response = await fetch(`${gateway.url}/client/v4/user/tokens/verify`, {
      headers: { authorization: `Bearer ${secret}` },
    });
    expect(response.status).toBe(200);
    expect((await gateway.gateway.repos.apiTokens.get(token.id))!.lastUsedOn).toBeNull();
    await gateway.close();
    const { store, repos } = await openStore(gateway.settings);
    try {
      expect((await repos.apiTokens.get(token.id))!.lastUsedOn).not.toBeNull();
    } finally {
      await store.close();
    }
  } finally {
    await database.cleanup();
  }
});
