// Apps' allowed_idps must name real identity providers; users' sessions come from the login's
// session table; the `Access: Organizations Revoke` group; the apps list (one query for its
// policies) answers exactly what a GET of each app does.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LoginState } from '../../src/identity/state.ts';
import { databaseKinds } from '../support/databases.ts';
import { selfHostedApp, startTestApi, type TestApi } from './support.ts';

const UNKNOWN = '00000000-0000-4000-8000-000000000000';

describe.each(databaseKinds)('allowed_idps, user sessions, Organizations Revoke (%s)', (kind) => {
  let api: TestApi;
  let account_id: string;
  let otpId: string;
  beforeAll(async () => {
    api = await startTestApi(kind);
    account_id = api.accountId;
    const otp = await api.request('POST', `${api.access}/identity_providers`, {
      json: { name: 'PIN', type: 'onetimepin', config: {} },
    });
    expect(otp.status).toBe(201);
    otpId = otp.body.result.id;
  });
  afterAll(async () => {
    await api?.close();
  });

  test('allowed_idps must name existing providers; a refused write leaves nothing behind', async () => {
    const refused = await api.request('POST', `${api.access}/apps`, {
      json: selfHostedApp('idps.example.com', { allowed_idps: [otpId, UNKNOWN] }),
    });
    expect(refused.status).toBe(400);
    expect(refused.body.errors[0]).toMatchObject({ code: 12130 });
    expect(refused.body.errors[0].message).toBe(
      `access.api.error.invalid_request: allowed_idps.1: identity provider ${UNKNOWN} does not exist; list the account's providers with GET /access/identity_providers`,
    );
    const apps = await api.client.zeroTrust.access.applications.list({
      account_id,
      domain: 'idps.example.com',
    });
    expect(apps.result).toEqual([]);

    // Ids are compared and stored lower-cased, the way the login compares them.
    const created = await api.request('POST', `${api.access}/apps`, {
      json: selfHostedApp('idps.example.com', { allowed_idps: [otpId.toUpperCase()] }),
    });
    expect(created.status).toBe(201);
    const appId = created.body.result.id;
    expect(created.body.result.allowed_idps).toEqual([otpId]);

    const put = await api.request('PUT', `${api.access}/apps/${appId}`, {
      json: selfHostedApp('idps.example.com', { name: 'changed', allowed_idps: [UNKNOWN] }),
    });
    expect(put.status).toBe(400);
    const after = await api.request('GET', `${api.access}/apps/${appId}`);
    expect(after.body.result).toMatchObject({ name: 'idps.example.com', allowed_idps: [otpId] });

    // The provider cannot be deleted while the app offers it; once the app stops, it can.
    const blocked = await api.request('DELETE', `${api.access}/identity_providers/${otpId}`);
    expect(blocked.status).toBe(400);
    expect(blocked.body.errors[0].message).toContain(
      `is in allowed_idps of app "idps.example.com" (${appId})`,
    );
    expect((await api.request('GET', `${api.access}/identity_providers/${otpId}`)).status).toBe(200);
    const cleared = await api.request('PUT', `${api.access}/apps/${appId}`, {
      json: selfHostedApp('idps.example.com', { allowed_idps: [] }),
    });
    expect(cleared.status).toBe(200);
    expect((await api.request('DELETE', `${api.access}/identity_providers/${otpId}`)).status).toBe(202);
    const again = await api.request('POST', `${api.access}/identity_providers`, {
      json: { name: 'PIN', type: 'onetimepin', config: {} },
    });
    otpId = again.body.result.id;
  });

  test('active_sessions and last_seen_identity read the login sessions', async () => {
    const { gateway } = api.gateway;
    const dave = await gateway.repos.users.upsertOnLogin(account_id, 'dave@example.com', 'Dave');
    const state = new LoginState(gateway.store, account_id);
    const now = Date.now();
    const session = (nonce: string, createdAgoMs: number, lifetimeMs: number) =>
      state.createSession({
        userId: dave.id,
        identity: {
          email: 'dave@example.com',
          name: 'Dave',
          idp: { id: otpId, type: 'onetimepin' },
          amr: ['pwd'],
        },
        identityNonce: nonce,
        ip: '192.0.2.10',
        now: new Date(now - createdAgoMs),
        expiresAt: new Date(now - createdAgoMs + lifetimeMs),
      });
    await session('e'.repeat(32), 7_200_000, 3_600_000); // expired an hour ago
    const older = await session('a'.repeat(32), 60_000, 86_400_000);
    const newer = await session('b'.repeat(32), 1_000, 86_400_000);

    const users = api.client.zeroTrust.access.users;
    const listed = [];
    for await (const item of users.activeSessions.list(dave.id, { account_id })) listed.push(item);
    expect(listed.map((item) => item.metadata?.nonce)).toEqual([newer.identityNonce, older.identityNonce]);
    expect(listed[0]).toEqual({
      name: 'Dave',
      expiration: Math.floor(Date.parse(newer.expiresAt) / 1000),
      metadata: {
        nonce: newer.identityNonce,
        iat: Math.floor(Date.parse(newer.createdAt) / 1000),
        expires: Math.floor(Date.parse(newer.expiresAt) / 1000),
        ttl: 86_400,
      },
    });

    const one = await users.activeSessions.get(older.identityNonce, { account_id, user_id: dave.id });
    expect(one).toMatchObject({
      email: 'dave@example.com',
      user_uuid: dave.id,
      account_id,
      ip: '192.0.2.10',
      idp: { id: otpId, type: 'onetimepin' },
      isActive: true,
    });
    // An expired session, another user's id or a malformed nonce: 404.
    for (const url of [
      `${api.access}/users/${dave.id}/active_sessions/${'e'.repeat(32)}`,
      `${api.access}/users/${dave.id}/active_sessions/not-a-nonce`,
      `${api.access}/users/${UNKNOWN}/active_sessions/${older.identityNonce}`,
    ]) {
      expect((await api.request('GET', url)).status, url).toBe(404);
    }

    const seen = await users.lastSeenIdentity.get(dave.id, { account_id });
    expect(seen).toMatchObject({ email: 'dave@example.com', ip: '192.0.2.10', idp: { id: otpId } });
    expect((seen as { identity_nonce?: string }).identity_nonce).toBe(newer.identityNonce);

    // revoke_user ends them: nothing is active afterwards.
    await api.client.zeroTrust.organizations.revokeUsers({ account_id, email: 'dave@example.com' });
    const afterRevoke = await api.request('GET', `${api.access}/users/${dave.id}/active_sessions`);
    expect(afterRevoke.status).toBe(200);
    expect(afterRevoke.body.result).toEqual([]);
  });

  test('Access: Organizations Revoke may revoke a user and read users and sessions, nothing else', async () => {
    const token = await api.tokenWith(['Access: Organizations Revoke']);
    const erin = await api.gateway.gateway.repos.users.upsertOnLogin(account_id, 'erin@example.com');
    const as = { token };
    expect((await api.request('GET', `${api.access}/users`, as)).status).toBe(200);
    expect((await api.request('GET', `${api.access}/users/${erin.id}/active_sessions`, as)).status).toBe(200);
    const revoked = await api.request('POST', `${api.access}/organizations/revoke_user`, {
      ...as,
      json: { email: 'erin@example.com' },
    });
    expect(revoked.status).toBe(200);
    expect(revoked.body.result).toBe(true);
    for (const url of [
      `${api.access}/organizations`,
      `${api.access}/apps`,
      `${api.access}/identity_providers`,
    ]) {
      const refused = await api.request('GET', url, as);
      expect(refused.status, url).toBe(403);
      expect(refused.body.errors[0].code).toBe(10001);
    }
  });

  test('the apps list carries each app exactly as its GET does', async () => {
    const ids: string[] = [];
    for (const [index, domain] of ['l1.example.com', 'l2.example.com', 'l3.example.com'].entries()) {
      const created = await api.request('POST', `${api.access}/apps`, {
        json: selfHostedApp(domain, {
          policies: Array.from({ length: index + 1 }, (_, n) => ({
            name: `${domain} ${n}`,
            decision: 'allow',
            precedence: 10 - n,
            include: [{ email: { email: `u${n}@example.com` } }],
          })),
        }),
      });
      expect(created.status).toBe(201);
      ids.push(created.body.result.id);
    }
    const page = await api.request('GET', `${api.access}/apps?search=.example.com&per_page=50`);
    for (const id of ids) {
      const listed = page.body.result.find((app: { id: string }) => app.id === id);
      const got = await api.request('GET', `${api.access}/apps/${id}`);
      expect(listed).toEqual(got.body.result);
    }
    const counts = ids.map(
      (id) => page.body.result.find((app: { id: string }) => app.id === id).policies.length,
    );
    expect(counts).toEqual([1, 2, 3]);
    // Ascending precedence inside each app.
    const third = page.body.result.find((app: { id: string }) => app.id === ids[2]);
    expect(third.policies.map((p: { precedence: number }) => p.precedence)).toEqual([8, 9, 10]);
  });
});
