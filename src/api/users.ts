// /accounts/{account_id}/access/users (spec §1.3): the people who logged in, one per email,
// with their stable UUID (the `sub` of their tokens). Sessions are the organisation sessions the
// login keeps in the store (src/identity/state.ts), read here and never written: active_sessions
// lists the live ones, and last_seen_identity is the identity of the newest one (before any
// session exists, it is rebuilt from the newest successful login in the access log). Failed
// logins come from the access log.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { FIXED_IDENTITY_FIELDS } from '../identity/identity-document.ts';
import { type LoginSession, LoginState } from '../identity/state.ts';
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

  const state = new LoginState(ctx.gateway.store, ctx.accountId);

  /**
   * The user's live sessions, newest first: not ended, not expired, and not older than the
   * user's revoke_user (which the login honours the same way for every session before it).
   */
  const liveSessions = async (user: StoredUser): Promise<LoginSession[]> => {
    const sessions = await state.activeSessions(user.id, new Date());
    return sessions.filter((session) => user.revokedAt === null || session.createdAt > user.revokedAt);
  };

  // Cloudflare's active session [TS: users/active-sessions.ts]; the nonce is the session's
  // identity_nonce, as in its app tokens. Gatehouse does not record which apps a session
  // opened, so `metadata.apps` is left out rather than sent empty.
  defineRoute(app, 'users.active_sessions', async (request) => {
    const user = await existing(request);
    const sessions = await liveSessions(user);
    const result = sessions.map((session) => {
      const iat = epochSeconds(session.createdAt);
      const expires = epochSeconds(session.expiresAt);
      return {
        name: session.identity.name ?? user.name ?? user.email,
        expiration: expires,
        metadata: { nonce: session.identityNonce, iat, expires, ttl: expires - iat },
      };
    });
    return {
      result,
      resultInfo: resultInfo({ page: 1, per_page: Math.max(result.length, 1) }, result.length, result.length),
    };
  });

  defineRoute(app, 'users.active_session', async (request) => {
    const user = await existing(request);
    const nonce = (request.params as { nonce?: string }).nonce ?? '';
    const session = NONCE.test(nonce)
      ? (await liveSessions(user)).find((candidate) => candidate.identityNonce === nonce.toLowerCase())
      : undefined;
    if (!session) throw notFound('active session', JSON.stringify(nonce.slice(0, 64)));
    return { result: { ...sessionIdentityJson(ctx.accountId, user, session), isActive: true } };
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

  // The get-identity shape (spec §4.6) of the newest session; before any, of the newest
  // successful login in the access log; 404 when the user has neither.
  defineRoute(app, 'users.last_seen_identity', async (request) => {
    const user = await existing(request);
    const session = await state.lastSession(user.id);
    if (session) return { result: sessionIdentityJson(ctx.accountId, user, session) };
    const login = await repos.accessRequests.lastLogin(ctx.accountId, user.id);
    if (!login) throw notFound('identity of user', user.id);
    return {
      result: {
        ...identityBase(ctx.accountId, user),
        iat: epochSeconds(login.created_at),
        ip: login.ip_address ?? '',
        geo: { country: login.country ?? '' },
        idp: { id: login.idp_id ?? '', type: login.connection ?? '' },
      },
    };
  });
}

/** An identity_nonce as the login makes them: 16 random bytes in hex. */
const NONCE = /^[0-9a-f]{32}$/i;

const epochSeconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);

/** The fields of Cloudflare's identity document that Gatehouse always sends the same way. */
function identityBase(accountId: string, user: StoredUser) {
  return {
    email: user.email,
    name: user.name ?? '',
    user_uuid: user.id,
    account_id: accountId,
    ...FIXED_IDENTITY_FIELDS,
    device_sessions: {},
    version: 1,
  };
}

/** A session's identity (spec §4.6): what the IdP said at that login. */
function sessionIdentityJson(accountId: string, user: StoredUser, session: LoginSession) {
  const { identity } = session;
  return {
    ...identityBase(accountId, user),
    ...(identity.name !== undefined && { name: identity.name }),
    iat: epochSeconds(session.createdAt),
    ip: session.ip,
    // The login knows no country for a session (spec §4.6 allows an empty one).
    geo: { country: '' },
    idp: { id: identity.idp.id, type: identity.idp.type },
    identity_nonce: session.identityNonce,
    ...(identity.amr !== undefined && { amr: identity.amr }),
    ...(identity.oidcClaims !== undefined && { oidc_fields: identity.oidcClaims }),
  };
}
