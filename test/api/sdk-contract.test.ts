// Contract tests with the official `cloudflare` SDK as the client: the linked-apps guide's API
// steps (spec §5.5), pagination through the SDK's iterator, and the other resources' CRUD.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { secretMatchesHash } from '../../src/keys/secrets.ts';
import { databaseKinds } from '../support/databases.ts';
import { saasApp, startTestApi, type TestApi } from './support.ts';

describe.each(databaseKinds)('management API with the cloudflare SDK (%s)', (kind) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(kind);
  });
  afterAll(async () => {
    await api?.close();
  });

  test('discovers the account and verifies the token', async () => {
    const accounts = [];
    for await (const account of api.client.accounts.list()) accounts.push(account);
    expect(accounts).toEqual([expect.objectContaining({ id: api.accountId, type: 'standard' })]);
    const verified = await api.client.user.tokens.verify();
    expect(verified).toMatchObject({ status: 'active' });
  });

  test('the linked-apps guide: SaaS app, linked_app_token policy, PUT onto the self-hosted app', async () => {
    const account_id = api.accountId;
    const access = api.client.zeroTrust.access;
    const wiki = await access.applications.create({
      account_id,
      type: 'self_hosted',
      name: 'Company wiki',
      domain: 'wiki.guide.example',
      session_duration: '12h',
      policies: [],
    });
    const mcp = await access.applications.create({ account_id, ...saasApp('MCP server') } as never);
    // The client secret is shown once, and stored only as its hash.
    const secret = (mcp as { saas_app?: { client_secret?: string; client_id?: string } }).saas_app!;
    expect(secret.client_secret).toMatch(/^[0-9a-f]{64}$/);
    const stored = await api.gateway.gateway.repos.apps.getByClientId(secret.client_id!);
    expect(secretMatchesHash(secret.client_secret!, stored!.clientSecretHash)).toBe(true);

    // Step 1: list apps to find the SaaS app's uid.
    const listed = [];
    for await (const app of access.applications.list({ account_id })) listed.push(app);
    const found = listed.find((app) => app.name === 'MCP server') as { uid?: string; id?: string };
    expect(found.uid).toBe(found.id);
    expect(JSON.stringify(listed)).not.toContain(secret.client_secret!);

    // Step 2: the linked_app_token policy, decision non_identity.
    const policy = await access.policies.create({
      account_id,
      name: 'Allow MCP server',
      decision: 'non_identity',
      include: [{ linked_app_token: { app_uid: found.uid! } }],
    });
    expect(policy).toMatchObject({
      decision: 'non_identity',
      include: [{ linked_app_token: { app_uid: found.uid } }],
      exclude: [],
      require: [],
      reusable: true,
      app_count: 0,
    });

    // Step 3: GET the self-hosted app and PUT the whole object back with the policy appended.
    const current = (await access.applications.get(wiki.id!, { account_id })) as Record<string, unknown>;
    const existing = (current.policies as { id: string }[]).map((p) => p.id);
    await access.applications.update(wiki.id!, {
      account_id,
      ...(current as object),
      policies: [...existing, policy.id!],
    } as never);
    const after = (await access.applications.get(wiki.id!, { account_id })) as Record<string, unknown>;
    expect(after.policies).toEqual([
      expect.objectContaining({ id: policy.id, precedence: 1, decision: 'non_identity' }),
    ]);
    // Nothing else changed: the PUT carried every field of the GET.
    expect({ ...after, policies: [], updated_at: '' }).toEqual({ ...current, policies: [], updated_at: '' });
    expect(await access.policies.get(policy.id!, { account_id })).toMatchObject({ app_count: 1 });
    // The list counts the apps of each policy on its page the same way.
    const policies: { id?: string; app_count?: number }[] = [];
    for await (const reusable of access.policies.list({ account_id })) policies.push(reusable);
    expect(policies.find((reusable) => reusable.id === policy.id)).toMatchObject({ app_count: 1 });
  });

  test('PUT is a full replace: omitted fields return to their defaults, aud stays', async () => {
    const account_id = api.accountId;
    const access = api.client.zeroTrust.access;
    const app = (await access.applications.create({
      account_id,
      type: 'self_hosted',
      domain: 'replace.example',
      session_duration: '2h',
      http_only_cookie_attribute: false,
      logo_url: 'https://replace.example/logo.png',
    })) as Record<string, unknown>;
    const replaced = (await access.applications.update(app.id as string, {
      account_id,
      type: 'self_hosted',
      domain: 'replace.example',
    })) as Record<string, unknown>;
    expect(replaced).toMatchObject({
      session_duration: '24h',
      http_only_cookie_attribute: true,
      aud: app.aud,
    });
    expect(replaced).not.toHaveProperty('logo_url');
  });

  test('pagination through the SDK iterator, then delete', async () => {
    const account_id = api.accountId;
    const access = api.client.zeroTrust.access;
    for (const n of [1, 2, 3]) {
      await access.applications.create({ account_id, type: 'self_hosted', domain: `page${n}.example` });
    }
    const names: string[] = [];
    for await (const app of access.applications.list({ account_id, per_page: 1 })) names.push(app.name!);
    expect(names).toEqual(expect.arrayContaining(['page1.example', 'page2.example', 'page3.example']));
    expect(new Set(names).size).toBe(names.length);

    const page = await access.applications.list({ account_id, per_page: 2, search: 'page' });
    expect(page.result_info).toMatchObject({
      page: 1,
      per_page: 2,
      count: 2,
      total_count: 3,
      total_pages: 2,
    });

    const target = (await access.applications.list({ account_id, domain: 'page2.example', exact: true }))
      .result[0]!;
    expect(await access.applications.delete(target.id!, { account_id })).toEqual({ id: target.id });
    await expect(access.applications.get(target.id!, { account_id })).rejects.toMatchObject({ status: 404 });
  });

  test('app-scoped policies, make_reusable and revoke_tokens', async () => {
    const account_id = api.accountId;
    const access = api.client.zeroTrust.access;
    const app = await access.applications.create({
      account_id,
      type: 'self_hosted',
      domain: 'scoped.example',
      policies: [
        { name: 'Staff', decision: 'allow', include: [{ email_domain: { domain: 'example.com' } }] },
      ] as never,
    });
    const [inline] = (app as { policies: { id: string; precedence: number; reusable: boolean }[] }).policies;
    expect(inline).toMatchObject({ precedence: 1, reusable: false });

    const added = await access.applications.policies.create(app.id!, {
      account_id,
      name: 'Block contractor',
      decision: 'deny',
      include: [{ email: { email: 'contractor@example.com' } }],
    } as never);
    expect(added).toMatchObject({ precedence: 2 });
    const listed = [];
    for await (const policy of access.applications.policies.list(app.id!, { account_id }))
      listed.push(policy);
    expect(listed.map((p) => p.id)).toEqual([inline!.id, added.id]);

    // The SDK has no make_reusable call: raw HTTP, with no body, as the API reference has it.
    const reusable = await api.request(
      'PUT',
      `${api.access}/apps/${app.id}/policies/${inline!.id}/make_reusable`,
    );
    expect(reusable).toMatchObject({ status: 200, body: { result: { id: inline!.id, reusable: true } } });
    expect(await access.policies.get(inline!.id, { account_id })).toMatchObject({ app_count: 1 });

    await access.applications.policies.delete(added.id!, { account_id, app_id: app.id! });
    const remaining = await access.applications.get(app.id!, { account_id });
    expect((remaining as { policies: { id: string }[] }).policies.map((p) => p.id)).toEqual([inline!.id]);

    await access.applications.revokeTokens(app.id!, { account_id });
    const stored = await api.gateway.gateway.repos.apps.get(account_id, app.id!);
    expect(stored!.tokensRevokedAt).not.toBeNull();
  });

  test('groups CRUD, referenced from a policy', async () => {
    const account_id = api.accountId;
    const access = api.client.zeroTrust.access;
    const group = await access.groups.create({
      account_id,
      name: 'Engineering',
      include: [{ email_domain: { domain: 'eng.example.com' } }],
    });
    const policy = await access.policies.create({
      account_id,
      name: 'Engineers',
      decision: 'allow',
      include: [{ group: { id: group.id! } }],
    });
    const updated = await access.groups.update(group.id!, {
      account_id,
      name: 'Engineering team',
      include: [{ email_domain: { domain: 'eng.example.com' } }],
    });
    expect(updated).toMatchObject({ name: 'Engineering team' });
    // A group a policy names cannot be deleted.
    await expect(access.groups.delete(group.id!, { account_id })).rejects.toMatchObject({ status: 400 });
    await access.policies.delete(policy.id!, { account_id });
    expect(await access.groups.delete(group.id!, { account_id })).toEqual({ id: group.id });
  });

  test('every write is audited with its token, route and resource', async () => {
    const { repos, account } = api.gateway.gateway;
    const audit = await repos.auditLog.list(account.accountId, 500);
    expect(audit.map((row) => row.action)).toEqual(
      expect.arrayContaining([
        'apps.create',
        'apps.update',
        'apps.delete',
        'policies.create',
        'groups.delete',
      ]),
    );
    expect(audit.every((row) => row.token_id.length === 32 && row.resource_id.length > 0)).toBe(true);
  });
});
