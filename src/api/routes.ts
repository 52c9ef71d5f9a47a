// The one table of management-API endpoints: route id → method, path (under /client/v4) and
// the API token permission groups that may call it (spec §1.2, Cloudflare's
// `x-api-token-group`). The framework registers routes only through this table and the
// permission check reads it, and test/api/permission-matrix.test.ts is generated from it.
// Part B adds its endpoints here first (service tokens, identity providers, organizations,
// keys, users, logs, tunnel configuration).
import type { PermissionGroup } from './permissions.ts';

/** Any valid, active token may call the route (account discovery and token verification). */
export const ANY_TOKEN = 'any token' as const;

export interface RouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Fastify path under /client/v4; `:account_id` makes the route account-scoped. */
  path: string;
  permissions: readonly PermissionGroup[] | typeof ANY_TOKEN;
}

const APPS_READ: readonly PermissionGroup[] = [
  'Access: Apps and Policies Read',
  'Access: Apps and Policies Write',
];
const APPS_WRITE: readonly PermissionGroup[] = ['Access: Apps and Policies Write'];
/** Revoke "implies read of the list endpoints, but not edit" [D: fundamentals permissions]. */
const APPS_READ_OR_REVOKE: readonly PermissionGroup[] = [...APPS_READ, 'Access: Apps and Policies Revoke'];
const GROUPS_READ: readonly PermissionGroup[] = [
  'Access: Organizations, Identity Providers, and Groups Read',
  'Access: Organizations, Identity Providers, and Groups Write',
];
const GROUPS_WRITE: readonly PermissionGroup[] = [
  'Access: Organizations, Identity Providers, and Groups Write',
];

/**
 * `Access: Organizations Revoke` "covers revoking user sessions" (spec §1.2, 2026 changelog):
 * revoke_user, and, as the Apps Revoke group reads the lists it revokes from, the users list
 * and their sessions. Nothing else.
 */
const USERS_READ_OR_REVOKE: readonly PermissionGroup[] = [...GROUPS_READ, 'Access: Organizations Revoke'];

const ACCESS = '/accounts/:account_id/access';

const SERVICE_TOKENS_READ: readonly PermissionGroup[] = [
  'Access: Service Tokens Read',
  'Access: Service Tokens Write',
];
const SERVICE_TOKENS_WRITE: readonly PermissionGroup[] = ['Access: Service Tokens Write'];
const TUNNEL_READ: readonly PermissionGroup[] = ['Cloudflare Tunnel Read', 'Cloudflare Tunnel Write'];
const TUNNEL_WRITE: readonly PermissionGroup[] = ['Cloudflare Tunnel Write'];
const TOKENS = `${ACCESS}/service_tokens`;
const IDPS = `${ACCESS}/identity_providers`;
const TUNNEL = '/accounts/:account_id/cfd_tunnel';
/** Zero Trust lists feed Access rules (`email_list`, `ip_list`), so the Access groups permission covers them. */
const LISTS = '/accounts/:account_id/gateway/lists';

export const API_ROUTES = {
  'accounts.list': { method: 'GET', path: '/accounts', permissions: ANY_TOKEN },
  'tokens.verify': { method: 'GET', path: '/user/tokens/verify', permissions: ANY_TOKEN },

  'apps.list': { method: 'GET', path: `${ACCESS}/apps`, permissions: APPS_READ_OR_REVOKE },
  'apps.create': { method: 'POST', path: `${ACCESS}/apps`, permissions: APPS_WRITE },
  'apps.get': { method: 'GET', path: `${ACCESS}/apps/:app_id`, permissions: APPS_READ_OR_REVOKE },
  'apps.update': { method: 'PUT', path: `${ACCESS}/apps/:app_id`, permissions: APPS_WRITE },
  'apps.delete': { method: 'DELETE', path: `${ACCESS}/apps/:app_id`, permissions: APPS_WRITE },
  'apps.revoke_tokens': {
    method: 'POST',
    path: `${ACCESS}/apps/:app_id/revoke_tokens`,
    permissions: ['Access: Apps and Policies Revoke', 'Access: Apps and Policies Write'],
  },
  'apps.user_policy_checks': {
    method: 'GET',
    path: `${ACCESS}/apps/:app_id/user_policy_checks`,
    permissions: APPS_READ,
  },

  'app_policies.list': { method: 'GET', path: `${ACCESS}/apps/:app_id/policies`, permissions: APPS_READ },
  'app_policies.create': { method: 'POST', path: `${ACCESS}/apps/:app_id/policies`, permissions: APPS_WRITE },
  'app_policies.get': {
    method: 'GET',
    path: `${ACCESS}/apps/:app_id/policies/:policy_id`,
    permissions: APPS_READ,
  },
  'app_policies.update': {
    method: 'PUT',
    path: `${ACCESS}/apps/:app_id/policies/:policy_id`,
    permissions: APPS_WRITE,
  },
  'app_policies.delete': {
    method: 'DELETE',
    path: `${ACCESS}/apps/:app_id/policies/:policy_id`,
    permissions: APPS_WRITE,
  },
  'app_policies.make_reusable': {
    method: 'PUT',
    path: `${ACCESS}/apps/:app_id/policies/:policy_id/make_reusable`,
    permissions: APPS_WRITE,
  },

  'policies.list': { method: 'GET', path: `${ACCESS}/policies`, permissions: APPS_READ },
  'policies.create': { method: 'POST', path: `${ACCESS}/policies`, permissions: APPS_WRITE },
  'policies.get': { method: 'GET', path: `${ACCESS}/policies/:policy_id`, permissions: APPS_READ },
  'policies.update': { method: 'PUT', path: `${ACCESS}/policies/:policy_id`, permissions: APPS_WRITE },
  'policies.delete': { method: 'DELETE', path: `${ACCESS}/policies/:policy_id`, permissions: APPS_WRITE },

  'groups.list': { method: 'GET', path: `${ACCESS}/groups`, permissions: GROUPS_READ },
  'groups.create': { method: 'POST', path: `${ACCESS}/groups`, permissions: GROUPS_WRITE },
  'groups.get': { method: 'GET', path: `${ACCESS}/groups/:group_id`, permissions: GROUPS_READ },
  'groups.update': { method: 'PUT', path: `${ACCESS}/groups/:group_id`, permissions: GROUPS_WRITE },
  'groups.delete': { method: 'DELETE', path: `${ACCESS}/groups/:group_id`, permissions: GROUPS_WRITE },

  'service_tokens.list': { method: 'GET', path: TOKENS, permissions: SERVICE_TOKENS_READ },
  'service_tokens.create': { method: 'POST', path: TOKENS, permissions: SERVICE_TOKENS_WRITE },
  'service_tokens.get': {
    method: 'GET',
    path: `${TOKENS}/:service_token_id`,
    permissions: SERVICE_TOKENS_READ,
  },
  'service_tokens.update': {
    method: 'PUT',
    path: `${TOKENS}/:service_token_id`,
    permissions: SERVICE_TOKENS_WRITE,
  },
  'service_tokens.delete': {
    method: 'DELETE',
    path: `${TOKENS}/:service_token_id`,
    permissions: SERVICE_TOKENS_WRITE,
  },
  'service_tokens.rotate': {
    method: 'POST',
    path: `${TOKENS}/:service_token_id/rotate`,
    permissions: SERVICE_TOKENS_WRITE,
  },
  'service_tokens.refresh': {
    method: 'POST',
    path: `${TOKENS}/:service_token_id/refresh`,
    permissions: SERVICE_TOKENS_WRITE,
  },

  'identity_providers.list': { method: 'GET', path: IDPS, permissions: GROUPS_READ },
  'identity_providers.create': { method: 'POST', path: IDPS, permissions: GROUPS_WRITE },
  'identity_providers.get': {
    method: 'GET',
    path: `${IDPS}/:identity_provider_id`,
    permissions: GROUPS_READ,
  },
  'identity_providers.update': {
    method: 'PUT',
    path: `${IDPS}/:identity_provider_id`,
    permissions: GROUPS_WRITE,
  },
  'identity_providers.delete': {
    method: 'DELETE',
    path: `${IDPS}/:identity_provider_id`,
    permissions: GROUPS_WRITE,
  },

  'organizations.get': { method: 'GET', path: `${ACCESS}/organizations`, permissions: GROUPS_READ },
  'organizations.update': { method: 'PUT', path: `${ACCESS}/organizations`, permissions: GROUPS_WRITE },
  'organizations.patch': { method: 'PATCH', path: `${ACCESS}/organizations`, permissions: GROUPS_WRITE },
  'organizations.revoke_user': {
    method: 'POST',
    path: `${ACCESS}/organizations/revoke_user`,
    permissions: [...GROUPS_WRITE, 'Access: Organizations Revoke'],
  },

  'keys.get': { method: 'GET', path: `${ACCESS}/keys`, permissions: GROUPS_READ },
  'keys.update': { method: 'PUT', path: `${ACCESS}/keys`, permissions: GROUPS_WRITE },
  'keys.rotate': { method: 'POST', path: `${ACCESS}/keys/rotate`, permissions: GROUPS_WRITE },

  'users.list': { method: 'GET', path: `${ACCESS}/users`, permissions: USERS_READ_OR_REVOKE },
  'users.active_sessions': {
    method: 'GET',
    path: `${ACCESS}/users/:user_id/active_sessions`,
    permissions: USERS_READ_OR_REVOKE,
  },
  'users.active_session': {
    method: 'GET',
    path: `${ACCESS}/users/:user_id/active_sessions/:nonce`,
    permissions: USERS_READ_OR_REVOKE,
  },
  'users.last_seen_identity': {
    method: 'GET',
    path: `${ACCESS}/users/:user_id/last_seen_identity`,
    permissions: GROUPS_READ,
  },
  'users.failed_logins': {
    method: 'GET',
    path: `${ACCESS}/users/:user_id/failed_logins`,
    permissions: GROUPS_READ,
  },

  'logs.access_requests': {
    method: 'GET',
    path: `${ACCESS}/logs/access_requests`,
    permissions: ['Access: Audit Logs Read'],
  },

  'tunnels.list': { method: 'GET', path: TUNNEL, permissions: TUNNEL_READ },
  'tunnels.configurations.get': {
    method: 'GET',
    path: `${TUNNEL}/:tunnel_id/configurations`,
    permissions: TUNNEL_READ,
  },
  'tunnels.configurations.update': {
    method: 'PUT',
    path: `${TUNNEL}/:tunnel_id/configurations`,
    permissions: TUNNEL_WRITE,
  },

  'lists.list': { method: 'GET', path: LISTS, permissions: GROUPS_READ },
  'lists.create': { method: 'POST', path: LISTS, permissions: GROUPS_WRITE },
  'lists.get': { method: 'GET', path: `${LISTS}/:list_id`, permissions: GROUPS_READ },
  'lists.update': { method: 'PUT', path: `${LISTS}/:list_id`, permissions: GROUPS_WRITE },
  'lists.patch': { method: 'PATCH', path: `${LISTS}/:list_id`, permissions: GROUPS_WRITE },
  'lists.delete': { method: 'DELETE', path: `${LISTS}/:list_id`, permissions: GROUPS_WRITE },
  'lists.items': { method: 'GET', path: `${LISTS}/:list_id/items`, permissions: GROUPS_READ },
} as const satisfies Record<string, RouteSpec>;

export type RouteId = keyof typeof API_ROUTES;

/** Whether a token holding `permissions` may call route `id`. */
export function mayCall(id: RouteId, permissions: readonly string[]): boolean {
  const allowed: RouteSpec['permissions'] = API_ROUTES[id].permissions;
  return allowed === ANY_TOKEN || allowed.some((group) => permissions.includes(group));
}
