// /accounts/{account_id}/access/service_tokens (spec §1.3, §4.5): machine credentials sent as
// `CF-Access-Client-Id` + `CF-Access-Client-Secret`. The secret is returned only by create and
// rotate and stored as its SHA-256; rotation may keep the previous secret valid for a grace
// period; refresh extends the expiry by a year; DELETE returns the token object.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { sha256Hex } from '../keys/secrets.ts';
import { generateClientId, generateClientSecret } from '../keys/service-token-secrets.ts';
import { parseGoDuration } from '../policy/index.ts';
import { MAX_NAME_LENGTH } from '../policy/limits.ts';
import type { StoredServiceToken } from '../store/repositories/service-tokens.ts';
import type { Tx } from '../store/store.ts';
import { invalidRequest, notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';
import { pageQueryShape, pageWindow, resultInfo } from './pagination.ts';

/** Cloudflare's default: one year in hours [TS: ServiceTokenCreateParams.duration]. */
const DEFAULT_DURATION = '8760h';
const YEAR_MS = 8760 * 3_600_000;
/** Longest finite duration accepted: a century keeps expiry dates well inside ISO-8601. */
const MAX_DURATION_MS = 100 * YEAR_MS;

const duration = z
  .string()
  .max(64)
  .refine((value) => {
    if (value === 'forever') return true;
    const ms = parseGoDuration(value);
    return ms !== null && ms > 0 && ms <= MAX_DURATION_MS;
  }, 'expected a Go duration such as 8760h or 2h45m (at most 876000h), or "forever"');

const name = z.string().trim().min(1).max(MAX_NAME_LENGTH);
const isoTime = z.iso.datetime({ offset: true });

const listQuery = z.strictObject({
  ...pageQueryShape(25),
  name: z.string().max(MAX_NAME_LENGTH).optional(),
  search: z.string().max(MAX_NAME_LENGTH).optional(),
});

// `client_secret_version` is echoed back by clients that PUT what they read; a different value
// would mean "rotate", which needs the rotate endpoint to hand out the new secret.
const createBody = z.strictObject({
  name,
  duration: duration.default(DEFAULT_DURATION),
  enabled: z.boolean().default(true),
  client_secret_version: z.literal(1).optional(),
  previous_client_secret_expires_at: z.null().optional(),
});

const updateBody = z.strictObject({
  name: name.optional(),
  duration: duration.optional(),
  enabled: z.boolean().optional(),
  client_secret_version: z.int().min(1).optional(),
  previous_client_secret_expires_at: isoTime.nullable().optional(),
});

const rotateBody = z.strictObject({
  previous_client_secret_expires_at: isoTime.optional(),
});

const refreshBody = z.strictObject({});

export const serviceTokenSchemas = {
  'service_tokens.list': { query: listQuery },
  'service_tokens.create': { body: createBody },
  'service_tokens.update': { body: updateBody },
  'service_tokens.rotate': { body: rotateBody },
  'service_tokens.refresh': { body: refreshBody },
} satisfies RouteSchemas;

/** `expires_at` for a token whose duration starts at `from`; null for `forever`. */
function expiryOf(value: string, from: Date): string | null {
  return value === 'forever' ? null : new Date(from.getTime() + parseGoDuration(value)!).toISOString();
}

/** The token object (spec §4.5); `clientSecret` only in the create and rotate responses. */
export function serviceTokenJson(token: StoredServiceToken, clientSecret?: string) {
  return {
    id: token.id,
    name: token.name,
    client_id: token.clientId,
    ...(clientSecret !== undefined && { client_secret: clientSecret }),
    duration: token.duration,
    expires_at: token.expiresAt,
    enabled: token.enabled,
    client_secret_version: token.clientSecretVersion,
    previous_client_secret_expires_at: token.previousSecretExpiresAt,
    created_at: token.createdAt,
    updated_at: token.updatedAt,
    last_seen_at: token.lastSeenAt,
  };
}

export function registerServiceTokenRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos } = ctx.gateway;
  const tokenId = (request: FastifyRequest) => idParam(request, 'service_token_id', 'service token');

  /** Locks the token row for the rest of `tx` (with `change`, if any) and returns it, or 404. */
  const lockToken = async (
    tx: Tx,
    id: string,
    change: Parameters<typeof repos.serviceTokens.update>[3] = {},
  ) => {
    if (!(await repos.serviceTokens.update(tx, ctx.accountId, id, change)))
      throw notFound('service token', id);
    return (await repos.serviceTokens.get(ctx.accountId, id, tx))!;
  };

  /** Runs an audited write on one token and answers with the token object. */
  const writeToken = (
    request: FastifyRequest,
    id: string,
    fn: (tx: Tx) => Promise<string | undefined>,
    status = 200,
  ) =>
    ctx
      .write(request, 'service_token', async (tx, changed) => {
        const secret = await fn(tx);
        changed({ table: 'service_tokens', accountId: ctx.accountId, id });
        const token = (await repos.serviceTokens.get(ctx.accountId, id, tx))!;
        return { resourceId: id, value: serviceTokenJson(token, secret) };
      })
      .then((result) => ({ status, result }));

  defineRoute(app, 'service_tokens.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const { page, per_page, ...filter } = query;
    const { items, total } = await repos.serviceTokens.list(ctx.accountId, filter, pageWindow(query));
    return {
      result: items.map((token) => serviceTokenJson(token)),
      resultInfo: resultInfo(query, items.length, total),
    };
  });

  defineRoute(app, 'service_tokens.create', async (request) => {
    const body = parseInput(createBody, request.body);
    const id = randomUUID();
    const secret = generateClientSecret();
    return writeToken(
      request,
      id,
      async (tx) => {
        await repos.serviceTokens.insert(tx, {
          id,
          accountId: ctx.accountId,
          name: body.name,
          clientId: generateClientId(),
          secretHash: sha256Hex(secret),
          duration: body.duration,
          expiresAt: expiryOf(body.duration, new Date()),
        });
        if (!body.enabled) await repos.serviceTokens.update(tx, ctx.accountId, id, { enabled: false });
        return secret;
      },
      201,
    );
  });

  defineRoute(app, 'service_tokens.get', async (request) => {
    const id = tokenId(request);
    const token = await repos.serviceTokens.get(ctx.accountId, id);
    if (!token) throw notFound('service token', id);
    return { result: serviceTokenJson(token) };
  });

  // Cloudflare's update is partial: every field is optional [TS: ServiceTokenUpdateParams].
  defineRoute(app, 'service_tokens.update', async (request) => {
    const id = tokenId(request);
    const body = parseInput(updateBody, request.body);
    return writeToken(request, id, async (tx) => {
      const token = await lockToken(tx, id, {
        ...(body.name !== undefined && { name: body.name }),
        ...(body.enabled !== undefined && { enabled: body.enabled }),
        // A new duration counts from now, as it does for a new token.
        ...(body.duration !== undefined && {
          duration: body.duration,
          expiresAt: expiryOf(body.duration, new Date()),
        }),
      });
      if (
        body.client_secret_version !== undefined &&
        body.client_secret_version !== token.clientSecretVersion
      ) {
        throw invalidRequest(
          `client_secret_version: is ${token.clientSecretVersion}; to get a new secret use POST /access/service_tokens/${id}/rotate`,
        );
      }
      if (body.previous_client_secret_expires_at !== undefined) {
        // Moving the previous secret's end later or earlier (e.g. into the past after a leak).
        if (token.previousSecretHash === null && body.previous_client_secret_expires_at !== null) {
          throw invalidRequest('previous_client_secret_expires_at: this token has no previous secret');
        }
        await repos.serviceTokens.setPreviousSecretExpiry(tx, id, body.previous_client_secret_expires_at);
      }
      return undefined;
    });
  });

  defineRoute(app, 'service_tokens.delete', async (request) => {
    const id = tokenId(request);
    const result = await ctx.write(request, 'service_token', async (tx, changed) => {
      const token = await lockToken(tx, id);
      await repos.serviceTokens.delete(tx, id);
      changed({ table: 'service_tokens', accountId: ctx.accountId, id });
      return { resourceId: id, value: serviceTokenJson(token) };
    });
    return { result };
  });

  defineRoute(app, 'service_tokens.rotate', async (request) => {
    const id = tokenId(request);
    const body = parseInput(rotateBody, request.body ?? {});
    const until = body.previous_client_secret_expires_at;
    if (until !== undefined && Date.parse(until) <= Date.now()) {
      throw invalidRequest(
        'previous_client_secret_expires_at: must be in the future; omit it to end the old secret now',
      );
    }
    const secret = generateClientSecret();
    return writeToken(request, id, async (tx) => {
      await lockToken(tx, id);
      await repos.serviceTokens.rotateSecret(
        tx,
        id,
        sha256Hex(secret),
        until ? new Date(until).toISOString() : null,
      );
      return secret;
    });
  });

  defineRoute(app, 'service_tokens.refresh', async (request) => {
    const id = tokenId(request);
    parseInput(refreshBody, request.body ?? {});
    return writeToken(request, id, async (tx) => {
      const token = await lockToken(tx, id);
      if (token.expiresAt !== null) {
        // One more year from the current expiry, or from now if it already passed.
        const from = Math.max(Date.parse(token.expiresAt), Date.now());
        await repos.serviceTokens.update(tx, ctx.accountId, id, {
          expiresAt: new Date(from + YEAR_MS).toISOString(),
        });
      }
      return undefined;
    });
  });
}
