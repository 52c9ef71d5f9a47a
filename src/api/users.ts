// /accounts/{account_id}/access/users (spec §1.3): the people who logged in, one per email,
// with their stable UUID (the `sub` of their tokens). Failed logins come from the access log;
// last_seen_identity is rebuilt from the user's newest successful login there. Gatehouse keeps
// no server-side list of sessions (sessions are signed tokens), so active_sessions is empty.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { MAX_EMAIL_LENGTH } from '../policy/limits.ts';
import type { StoredAccessRequest } from '../store/repositories/access-requests.ts';
import type { StoredUser } from '../store/repositories/users.ts';
import { notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';
import { pageQueryShape, pageWindow, resultInfo } from './pagination.ts';

const listQuery = z.strictObject({
  ...pageQueryShape(25),
  email: z.string().max(MAX_EMAIL_LENGTH).optional(),
  name: z.string().max(MAX_EMAIL_LENGTH).optional(),
  search: z.string().max(MAX_EMAIL_LENGTH).optional(),
});
const failedLoginsQuery = z.strictObject(pageQueryShape(25));

export const userSchemas = {
  'users.list': { query: listQuery },
  'users.failed_logins': { query: failedLoginsQuery },
} satisfies RouteSchemas;

/** Gatehouse has no seat billing: everyone who logged in holds an Access seat, nobody a Gateway one. */
function userJson(user: StoredUser) {
  return {
    id: user.id,
    uid: user.id,
    email: user.email,
    name: user.name ?? '',
    access_seat: true,
    gateway_seat: false,
    last_successful_login: user.lastSuccessfulLogin,
    created_at: user.createdAt,
    updated_at: user.updatedAt,
  };
}

/** A failed login in Cloudflare's shape [TS: users/failed-logins.ts]. */
function failedLoginJson(entry: StoredAccessRequest) {
  return {
    expiration: 0,
    metadata: {
      app_name: entry.app_domain ?? '',
      aud: '',
      datetime: entry.created_at,
      ray_id: entry.ray_id,
      user_email: entry.user_email ?? '',
      user_uuid: entry.user_id ?? '',
    },
  };
}

export function registerUserRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos } = ctx.gateway;

  const existing = async (request: FastifyRequest) => {
    const id = idParam(request, 'user_id', 'user');
    const user = await repos.users.get(ctx.accountId, id);
    if (!user) throw notFound('user', id);
    return user;
  };

  defineRoute(app, 'users.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const { page, per_page, ...filter } = query;
    const { items, total } = await repos.users.list(ctx.accountId, filter, pageWindow(query));
    return { result: items.map(userJson), resultInfo: resultInfo(query, items.length, total) };
  });

  defineRoute(app, 'users.active_sessions', async (request) => {
    await existing(request);
    return { result: [], resultInfo: resultInfo({ page: 1, per_page: 25 }, 0, 0) };
  });

  defineRoute(app, 'users.failed_logins', async (request) => {
    const user = await existing(request);
    const query = parseInput(failedLoginsQuery, request.query, 'query');
    const { items, total } = await repos.accessRequests.list(
      ctx.accountId,
      { action: 'login', allowed: { value: false, op: 'eq' }, email: { value: user.email, op: 'eq' } },
      { direction: 'desc', ...pageWindow(query) },
    );
    return { result: items.map(failedLoginJson), resultInfo: resultInfo(query, items.length, total) };
  });

  // The get-identity shape (spec §4.6) from the newest successful login; 404 before any.
  defineRoute(app, 'users.last_seen_identity', async (request) => {
    const user = await existing(request);
    const login = await repos.accessRequests.lastLogin(ctx.accountId, user.id);
    if (!login) throw notFound('identity of user', user.id);
    return {
      result: {
        email: user.email,
        name: user.name ?? '',
        user_uuid: user.id,
        account_id: ctx.accountId,
        iat: Math.floor(Date.parse(login.created_at) / 1000),
        ip: login.ip_address ?? '',
        geo: { country: login.country ?? '' },
        idp: { id: login.idp_id ?? '', type: login.connection ?? '' },
        auth_status: 'NONE',
        common_name: '',
        service_token_id: '',
        service_token_status: false,
        is_warp: false,
        is_gateway: false,
        device_sessions: {},
        version: 1,
      },
    };
  });
}
