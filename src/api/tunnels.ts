// The installation's one built-in tunnel, through Cloudflare's tunnel API (ARCHITECTURE.md §2):
// GET /accounts/{account_id}/cfd_tunnel lists it, and GET|PUT
// .../cfd_tunnel/{tunnel_id}/configurations read and replace its ingress rules, in
// cloudflared's format, as the SDK's `zeroTrust.tunnels.cloudflared` calls expect. When the
// config file has `ingress`, the file is the source of truth, like a locally managed
// cloudflared tunnel whose dashboard configuration is read-only (docs/configuration.md).
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ingressRuleSchema } from '../config/settings.ts';
import { invalidRequest, notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';
import { pageOf, pageQueryShape } from './pagination.ts';

const TUNNEL_NAME = 'gatehouse';
/** The same bound as the config file's `ingress`. */
const MAX_INGRESS_RULES = 1000;

const listQuery = z.strictObject({
  ...pageQueryShape(20),
  name: z.string().max(255).optional(),
  uuid: z.string().max(64).optional(),
  is_deleted: z.enum(['true', 'false']).optional(),
  status: z.enum(['inactive', 'degraded', 'healthy', 'down']).optional(),
});

const configurationBody = z.strictObject({
  config: z.strictObject({
    ingress: z
      .array(ingressRuleSchema)
      .min(1)
      .max(MAX_INGRESS_RULES)
      // cloudflared refuses a rule list whose last rule can fail to match: every request must
      // end somewhere [cloudflared ingress: "The last rule must match all URLs"].
      .refine(
        (rules) => rules.at(-1)!.hostname === undefined && rules.at(-1)!.path === undefined,
        'the last rule must be a catch-all without hostname or path, e.g. {"service": "http_status:404"}',
      ),
  }),
});

export const tunnelSchemas = {
  'tunnels.list': { query: listQuery },
  'tunnels.configurations.update': { body: configurationBody },
} satisfies RouteSchemas;

/** The tunnel's UUID, derived from the account so it is stable across restarts and nodes. */
export function builtInTunnelId(accountId: string): string {
  const bytes = createHash('sha256')
    .update(`gatehouse built-in tunnel ${accountId}`)
    .digest()
    .subarray(0, 16);
  // Version 8 (custom) and the RFC 9562 variant bits.
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function registerTunnelRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos, settings } = ctx.gateway;
  const tunnelId = builtInTunnelId(ctx.accountId);
  const locallyManaged = settings.ingress !== undefined;

  const tunnelJson = () => ({
    id: tunnelId,
    account_tag: ctx.accountId,
    name: TUNNEL_NAME,
    // Gatehouse is its own connector: the tunnel is up exactly when this API answers.
    status: 'healthy',
    tun_type: 'cfd_tunnel',
    remote_config: !locallyManaged,
    created_at: ctx.gateway.account.createdAt,
    deleted_at: null,
    conns_active_at: ctx.gateway.account.createdAt,
    conns_inactive_at: null,
    connections: [],
    metadata: {},
  });

  const requireTunnel = (request: FastifyRequest) => {
    const id = (request.params as { tunnel_id: string }).tunnel_id.toLowerCase();
    if (id !== tunnelId) throw notFound('tunnel', JSON.stringify(id.slice(0, 64)));
  };

  const configurationJson = async () => {
    const account = (await repos.accounts.get())!;
    return {
      tunnel_id: tunnelId,
      account_id: ctx.accountId,
      version: account.tunnelConfigVersion,
      config: { ingress: await repos.ingress.get(ctx.accountId) },
      source: locallyManaged ? 'local' : 'cloudflare',
      created_at: (await repos.ingress.updatedAt(ctx.accountId)) ?? account.createdAt,
    };
  };

  defineRoute(app, 'tunnels.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const tunnel = tunnelJson();
    const matches =
      (query.name === undefined || query.name === tunnel.name) &&
      (query.uuid === undefined || query.uuid.toLowerCase() === tunnel.id) &&
      query.is_deleted !== 'true' &&
      (query.status === undefined || query.status === tunnel.status);
    return pageOf(query, matches ? [tunnel] : []);
  });

  defineRoute(app, 'tunnels.configurations.get', async (request) => {
    requireTunnel(request);
    return { result: await configurationJson() };
  });

  defineRoute(app, 'tunnels.configurations.update', async (request) => {
    requireTunnel(request);
    if (locallyManaged) {
      throw invalidRequest(
        'this tunnel is locally managed: its ingress rules come from the config file (the "ingress" key), which is applied at every start; edit the file, or remove its "ingress" key to manage the rules through the API',
      );
    }
    const body = parseInput(configurationBody, request.body);
    await ctx.write(request, 'tunnel_configuration', async (tx, changed) => {
      await repos.accounts.bumpTunnelConfigVersion(tx, ctx.accountId);
      await repos.ingress.replaceIn(tx, ctx.accountId, body.config.ingress);
      changed({ table: 'ingress_rules', accountId: ctx.accountId });
      return { resourceId: tunnelId, value: undefined };
    });
    return { result: await configurationJson() };
  });
}
