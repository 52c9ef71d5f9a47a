// Contract tests with the official `cloudflare` SDK for service tokens, identity providers, the
// organization, signing keys, users, the access log, the built-in tunnel and Zero Trust lists.
import Cloudflare from 'cloudflare';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PERMISSION_GROUPS } from '../../src/api/permissions.ts';
import { decrypt } from '../../src/keys/master-key.ts';
import { identityProviderSecretBinding } from '../../src/keys/sealed.ts';
import { verifyServiceTokenSecret } from '../../src/keys/service-token-secrets.ts';
import { databaseKinds } from '../support/databases.ts';
import { oidcIdpConfig, startTestApi, type TestApi } from './support.ts';

describe.each(databaseKinds)('part B resources with the cloudflare SDK (%s)', (kind) => {
  let api: TestApi;
  let client: Cloudflare;
  let account_id: string;
  beforeAll(async () => {
    api = await startTestApi(kind);
    account_id = api.accountId;
    const secret = await api.tokenWith([...PERMISSION_GROUPS]);
    client = new Cloudflare({ apiToken: secret, baseURL: `${api.gateway.url}/client/v4`, maxRetries: 0 });
  });
  afterAll(async () => {
    await api?.close();
  });
  const repos = () => api.gateway.gateway.repos;

  test('service tokens: secret shown once, rotate with grace, refresh, disable, delete', async () => {
    const tokens = client.zeroTrust.access.serviceTokens;
    const created = await tokens.create({ account_id, name: 'CI deploys' });
    expect(created.client_id).toMatch(/^[0-9a-f]{32}\.access$/);
    expect(created.client_secret).toMatch(/^cfast_[0-9A-Za-z]{40}[0-9a-f]{8}$/);
    expect(created).toMatchObject({ name: 'CI deploys', duration: '8760h', client_secret_version: 1 });
    const expires = Date.parse((created as { expires_at: string }).expires_at);
    expect(Math.abs(expires - (Date.now() + 8760 * 3_600_000))).toBeLessThan(60_000);

    const id = created.id!;
    const got = await tokens.get(id, { account_id });
    expect(got).not.toHaveProperty('client_secret');
    const listed = [];
    for await (const token of tokens.list({ account_id, name: 'CI deploys' })) listed.push(token);
    expect(listed.map((token) => token.id)).toEqual([id]);
    expect(JSON.stringify(listed)).not.toContain(created.client_secret!);

    const stored = (await repos().serviceTokens.findByClientId(created.client_id!))!;
    expect(stored.secretHash).not.toContain(created.client_secret!);
    const now = new Date();
    expect(verifyServiceTokenSecret(stored, created.client_secret!, now)).toBe(true);
    expect(verifyServiceTokenSecret(stored, `${created.client_secret!}x`, now)).toBe(false);

    // Rotation with a grace period: both secrets work until then.
    const graceEnd = new Date(Date.now() + 3_600_000).toISOString();
    const rotated = await tokens.rotate(id, { account_id, previous_client_secret_expires_at: graceEnd });
    expect(rotated.client_secret).not.toBe(created.client_secret);
    expect(rotated as object).toMatchObject({
      client_secret_version: 2,
      previous_client_secret_expires_at: graceEnd,
    });
    let record = (await repos().serviceTokens.get(account_id, id))!;
    expect(verifyServiceTokenSecret(record, rotated.client_secret!, new Date())).toBe(true);
    expect(verifyServiceTokenSecret(record, created.client_secret!, new Date())).toBe(true);
    expect(verifyServiceTokenSecret(record, created.client_secret!, new Date(Date.now() + 7_200_000))).toBe(
      false,
    );

    // Rotation without one: the old secret dies at once.
    const again = await tokens.rotate(id, { account_id });
    expect(again).toMatchObject({ client_secret_version: 3 });
    record = (await repos().serviceTokens.get(account_id, id))!;
    expect(verifyServiceTokenSecret(record, rotated.client_secret!, new Date())).toBe(false);
    expect(verifyServiceTokenSecret(record, again.client_secret!, new Date())).toBe(true);

    const refreshed = await tokens.refresh(id, { account_id });
    expect(Date.parse(refreshed.expires_at!) - expires).toBeGreaterThanOrEqual(8760 * 3_600_000 - 60_000);

    const disabled = await tokens.update(id, { account_id, enabled: false, name: 'CI (paused)' });
    expect(disabled).toMatchObject({ name: 'CI (paused)', enabled: false });
    record = (await repos().serviceTokens.get(account_id, id))!;
    expect(verifyServiceTokenSecret(record, again.client_secret!, new Date())).toBe(false);

    const forever = await tokens.update(id, { account_id, duration: 'forever' });
    expect(forever).toMatchObject({ duration: 'forever', expires_at: null });

    // The snapshot the proxy reads carries the token by client_id.
    const snapshot = await api.gateway.gateway.snapshot.refresh();
    expect(snapshot.serviceTokens.get(created.client_id!)?.id).toBe(id);

    const deleted = await tokens.delete(id, { account_id });
    expect(deleted).toMatchObject({ id, client_id: created.client_id });
    expect(await repos().serviceTokens.findByClientId(created.client_id!)).toBeNull();
  });

  test('identity providers: the client secret is sealed, never returned, and kept by a PUT without it', async () => {
    const idps = client.zeroTrust.identityProviders;
    const config = { ...oidcIdpConfig('gatehouse-rp'), pkce_enabled: true };
    const created = await idps.create({ account_id, name: 'Company SSO', type: 'oidc', config });
    const id = created.id!;
    expect(created).toMatchObject({
      name: 'Company SSO',
      type: 'oidc',
      config: { client_id: 'gatehouse-rp', pkce_enabled: true },
    });
    expect(JSON.stringify(created)).not.toContain(config.client_secret);
    const otp = await idps.create({ account_id, name: 'Email PIN', type: 'onetimepin', config: {} });
    expect(otp).toMatchObject({ type: 'onetimepin' });

    const got = await idps.get(id, { account_id });
    const listed = [];
    for await (const idp of idps.list({ account_id })) listed.push(idp);
    expect(listed.map((idp) => idp.id).sort()).toEqual([id, otp.id].sort());
    expect(JSON.stringify([got, listed])).not.toContain(config.client_secret);

    const stored = (await repos().identityProviders.get(account_id, id))!;
    expect(stored.clientSecretSealed).not.toContain(config.client_secret);
    const open = () =>
      decrypt(
        api.gateway.gateway.masterKey,
        stored.clientSecretSealed!,
        identityProviderSecretBinding(id),
      ).toString();
    expect(open()).toBe(config.client_secret);

    // GET, change the name, PUT back what was read (no secret): the secret stays.
    const { id: _, created_at, updated_at, ...body } = got as unknown as Record<string, unknown>;
    const updated = await idps.update(id, {
      account_id,
      ...(body as object),
      name: 'Company SSO 2',
    } as never);
    expect(updated).toMatchObject({ name: 'Company SSO 2' });
    const after = (await repos().identityProviders.get(account_id, id))!;
    expect(
      decrypt(
        api.gateway.gateway.masterKey,
        after.clientSecretSealed!,
        identityProviderSecretBinding(id),
      ).toString(),
    ).toBe(config.client_secret);

    await idps.delete(otp.id!, { account_id });
    expect(await repos().identityProviders.get(account_id, otp.id!)).toBeNull();
  });

  test('organization: get, full update, revoke_user', async () => {
    const orgs = client.zeroTrust.organizations;
    const org = await orgs.list({ account_id });
    expect(org).toMatchObject({
      name: 'Gatehouse',
      auth_domain: new URL(api.gateway.url).host,
      session_duration: '24h',
      deny_unmatched_requests: true,
      allow_authenticate_via_warp: false,
    });
    const updated = await orgs.update({
      account_id,
      name: 'Acme',
      auth_domain: org.auth_domain,
      session_duration: '12h',
      strict_service_token_auth: true,
      login_design: { background_color: '#112233', header_text: 'Welcome' },
    });
    expect(updated).toMatchObject({
      name: 'Acme',
      session_duration: '12h',
      strict_service_token_auth: true,
      deny_unmatched_requests: true,
      login_design: { background_color: '#112233', header_text: 'Welcome' },
    });
    expect((await api.gateway.gateway.snapshot.refresh()).account.strictServiceTokenAuth).toBe(true);

    expect(await orgs.revokeUsers({ account_id, email: 'nobody@example.com' })).toBe(false);
    const user = await repos().users.upsertOnLogin(account_id, 'Ada@Example.com', 'Ada');
    expect(await orgs.revokeUsers({ account_id, email: 'ada@example.com' })).toBe(true);
    const snapshot = await api.gateway.gateway.snapshot.refresh();
    expect(snapshot.userRevocations.get(user.id)).toBeDefined();
  });

  test('keys: get, update the interval, rotate', async () => {
    const keys = client.zeroTrust.access.keys;
    const before = await keys.get({ account_id });
    expect(before).toMatchObject({ key_rotation_interval_days: 42 });
    const updated = await keys.update({ account_id, key_rotation_interval_days: 30 });
    expect(updated).toMatchObject({ key_rotation_interval_days: 30, days_until_next_rotation: 30 });
    const kidBefore = api.gateway.gateway.keys.signingKey().kid;
    const rotated = await keys.rotate({ account_id });
    expect(api.gateway.gateway.keys.signingKey().kid).not.toBe(kidBefore);
    expect(Date.parse(rotated.last_key_rotation_at!)).toBeGreaterThanOrEqual(
      Date.parse(before.last_key_rotation_at!),
    );
  });

  test('users: list with filters, failed logins, last seen identity', async () => {
    const user = await repos().users.upsertOnLogin(account_id, 'grace@example.com', 'Grace');
    // A second login keeps the UUID.
    expect((await repos().users.upsertOnLogin(account_id, 'GRACE@example.com')).id).toBe(user.id);
    await repos().accessRequests.record({
      accountId: account_id,
      action: 'login',
      allowed: false,
      userEmail: 'grace@example.com',
      connection: 'onetimepin',
    });
    await repos().accessRequests.record({
      accountId: account_id,
      action: 'login',
      allowed: true,
      userEmail: 'grace@example.com',
      userId: user.id,
      ipAddress: '192.0.2.7',
      country: 'nz',
      connection: 'onetimepin',
    });
    const users = [];
    for await (const listed of client.zeroTrust.access.users.list({
      account_id,
      email: 'grace@example.com',
    })) {
      users.push(listed);
    }
    expect(users).toEqual([
      expect.objectContaining({ id: user.id, uid: user.id, name: 'Grace', access_seat: true }),
    ]);
    const failed = [];
    for await (const entry of client.zeroTrust.access.users.failedLogins.list(user.id, { account_id })) {
      failed.push(entry);
    }
    expect(failed).toHaveLength(1);
    const identity = await client.zeroTrust.access.users.lastSeenIdentity.get(user.id, { account_id });
    expect(identity).toMatchObject({
      email: 'grace@example.com',
      user_uuid: user.id,
      geo: { country: 'NZ' },
      ip: '192.0.2.7',
    });
  });

  test('access log: filters', async () => {
    const base = { accountId: account_id, action: 'login', connection: 'github' } as const;
    const at = (minutes: number) => new Date(Date.UTC(2030, 0, 1, 0, minutes));
    await repos().accessRequests.record({
      ...base,
      allowed: true,
      userEmail: 'a@logs.example',
      at: at(1),
      country: 'DE',
    });
    await repos().accessRequests.record({
      ...base,
      allowed: false,
      userEmail: 'b@logs.example',
      at: at(2),
      country: 'FR',
    });
    await repos().accessRequests.record({
      ...base,
      allowed: true,
      userEmail: 'c@other.example',
      at: at(3),
      country: 'DE',
    });
    const list = (query: Record<string, unknown>) =>
      client.zeroTrust.access.logs.accessRequests.list({
        account_id,
        since: at(0).toISOString(),
        ...query,
      } as never);
    const emails = (entries: { user_email?: string }[]) => entries.map((entry) => entry.user_email);
    expect(emails(await list({}))).toEqual(['c@other.example', 'b@logs.example', 'a@logs.example']);
    expect(emails(await list({ direction: 'asc', limit: 2 }))).toEqual(['a@logs.example', 'b@logs.example']);
    expect(emails(await list({ email: 'logs.example' }))).toEqual(['b@logs.example', 'a@logs.example']);
    expect(emails(await list({ email: 'a@logs.example', email_exact: true }))).toEqual(['a@logs.example']);
    expect(emails(await list({ email: 'a@logs.example', emailOp: 'neq' }))).toEqual([
      'c@other.example',
      'b@logs.example',
    ]);
    expect(emails(await list({ allowed: false }))).toEqual(['b@logs.example']);
    expect(emails(await list({ country_code: 'de', country_codeOp: 'neq' }))).toEqual(['b@logs.example']);
    expect(emails(await list({ until: at(2).toISOString() }))).toEqual(['b@logs.example', 'a@logs.example']);
    const projected = await list({ fields: 'user_email,allowed', limit: 1 });
    expect(projected).toEqual([{ user_email: 'c@other.example', allowed: true }]);
  });

  test('built-in tunnel: list it, replace and read its ingress configuration', async () => {
    const tunnels = [];
    for await (const tunnel of client.zeroTrust.tunnels.cloudflared.list({ account_id }))
      tunnels.push(tunnel);
    expect(tunnels).toEqual([
      expect.objectContaining({ name: 'gatehouse', status: 'healthy', account_tag: account_id }),
    ]);
    const tunnelId = tunnels[0]!.id!;
    const ingress = [
      { hostname: 'wiki.tunnel.example', service: 'http://127.0.0.1:9001' },
      { service: 'http_status:404' },
    ];
    // The SDK types every rule with a hostname, but cloudflared's catch-all has none.
    const updated = await client.zeroTrust.tunnels.cloudflared.configurations.update(tunnelId, {
      account_id,
      config: { ingress: ingress as { hostname: string; service: string }[] },
    });
    expect(updated).toMatchObject({
      tunnel_id: tunnelId,
      account_id,
      version: 1,
      source: 'cloudflare',
      config: { ingress },
    });
    const got = await client.zeroTrust.tunnels.cloudflared.configurations.get(tunnelId, { account_id });
    expect(got).toMatchObject({ version: 1, config: { ingress } });
    expect((await api.gateway.gateway.snapshot.refresh()).ingress).toEqual(ingress);
  });

  test('Zero Trust lists: create, list, items, append and remove, and the snapshot sees them', async () => {
    const lists = client.zeroTrust.gateway.lists;
    const created = await lists.create({
      account_id,
      name: 'Contractors',
      type: 'EMAIL',
      items: [{ value: 'x@contractor.example', description: 'X' }, { value: 'y@contractor.example' }],
    });
    expect(created).toMatchObject({
      name: 'Contractors',
      type: 'EMAIL',
      items: [expect.objectContaining({ value: 'x@contractor.example' }), expect.anything()],
    });
    const id = created.id!;
    const all = [];
    for await (const list of lists.list({ account_id, type: 'EMAIL' })) all.push(list);
    expect(all).toEqual([expect.objectContaining({ id, count: 2 })]);
    const edited = await lists.edit(id, {
      account_id,
      append: [{ value: 'z@contractor.example' }],
      remove: ['x@contractor.example'],
    });
    expect(edited).toMatchObject({ count: 2 });
    const items = [];
    for await (const item of lists.items.list(id, { account_id, per_page: 1 })) items.push(item);
    expect(items.map((item) => item.value).sort()).toEqual(['y@contractor.example', 'z@contractor.example']);
    // A policy may now name the list (the whole-configuration check sees it), and the list
    // cannot be deleted while it does.
    const policy = await client.zeroTrust.access.policies.create({
      account_id,
      name: 'Contractors',
      decision: 'allow',
      include: [{ email_list: { id } }],
    });
    await expect(lists.delete(id, { account_id })).rejects.toMatchObject({ status: 400 });
    await client.zeroTrust.access.policies.delete(policy.id!, { account_id });
    const ip = await lists.create({
      account_id,
      name: 'Office',
      type: 'IP',
      items: [{ value: '192.0.2.0/24' }],
    });
    const replaced = await lists.update(ip.id!, {
      account_id,
      name: 'Office v2',
      items: [{ value: '2001:db8::/32' }],
    });
    expect(replaced).toMatchObject({ name: 'Office v2', count: 1 });
    await lists.delete(id, { account_id });
    await expect(lists.get(id, { account_id })).rejects.toMatchObject({ status: 404 });
  });
});
