// Generated from the permission table (src/api/routes.ts): every endpoint × every permission
// group, allowed or refused exactly as the table says, and nothing answered without a token.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PERMISSION_GROUPS, type PermissionGroup } from '../../src/api/permissions.ts';
import { API_ROUTES, mayCall, type RouteId } from '../../src/api/routes.ts';
import { databaseKinds } from '../support/databases.ts';
import { startTestApi, type TestApi } from './support.ts';

const routeIds = Object.keys(API_ROUTES) as RouteId[];

describe.each(databaseKinds)('permission matrix (%s)', (kind) => {
  let api: TestApi;
  const tokens = new Map<PermissionGroup, string>();
  beforeAll(async () => {
    api = await startTestApi(kind);
    for (const group of PERMISSION_GROUPS) tokens.set(group, await api.tokenWith([group]));
  });
  afterAll(async () => {
    await api?.close();
  });

  /** The route's URL with the real account and ids that name nothing, so no call changes anything. */
  const urlOf = (id: RouteId) =>
    `${api.gateway.url}/client/v4${API_ROUTES[id].path
      .replace(':account_id', api.accountId)
      .replace(/:[a-z_]+_id/g, () => randomUUID())}`;

  const call = (id: RouteId, token: string | null) => {
    const { method } = API_ROUTES[id];
    const hasBody = method !== 'GET' && method !== 'DELETE';
    return api.request(method, urlOf(id), { token, ...(hasBody && { json: {} }) });
  };

  test.each(routeIds)('%s', async (id) => {
    const unauthenticated = await call(id, null);
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.body.errors[0].code).toBe(10000);
    for (const group of PERMISSION_GROUPS) {
      const response = await call(id, tokens.get(group)!);
      if (mayCall(id, [group])) {
        expect([200, 400, 404], `${group} may call ${id}`).toContain(response.status);
        expect(response.body.errors.map((e: { code: number }) => e.code)).not.toContain(7000);
      } else {
        expect(response.status, `${group} may not call ${id}`).toBe(403);
        expect(response.body.errors[0].code).toBe(10001);
      }
    }
  });

  test('nothing was written by the matrix', async () => {
    // POST /keys/rotate takes no parameters, so the one call the matrix may make really rotates.
    const writes = await api.gateway.gateway.repos.auditLog.list(api.accountId);
    expect(writes.filter((write) => write.action !== 'keys.rotate')).toEqual([]);
  });

  test('the Revoke group may list and read apps and revoke tokens, and nothing else', () => {
    const revoke = routeIds.filter((id) => mayCall(id, ['Access: Apps and Policies Revoke']));
    expect(revoke.sort()).toEqual([
      'accounts.list',
      'apps.get',
      'apps.list',
      'apps.revoke_tokens',
      'tokens.verify',
    ]);
  });

  test('Organizations Revoke may revoke users and read users and their sessions, and nothing else', () => {
    const revoke = routeIds.filter((id) => mayCall(id, ['Access: Organizations Revoke']));
    expect(revoke.sort()).toEqual([
      'accounts.list',
      'organizations.revoke_user',
      'tokens.verify',
      'users.active_session',
      'users.active_sessions',
      'users.list',
    ]);
  });

  test('user_policy_checks reads policies: Apps and Policies Read or Write only', () => {
    const groups = PERMISSION_GROUPS.filter((group) => mayCall('apps.user_policy_checks', [group]));
    expect(groups).toEqual(['Access: Apps and Policies Read', 'Access: Apps and Policies Write']);
  });
});
