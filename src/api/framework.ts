// The management API's framework: route registration through the permission table, bearer
// token authentication, the account check, the envelope, and audited writes. Resource modules
// (apps.ts, policies.ts, groups.ts, …) only call `defineRoute` and `ctx.write`.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Gateway } from '../gateway.ts';
import type { Change } from '../store/changes.ts';
import type { ApiToken } from '../store/repositories/api-tokens.ts';
import { isDatabaseUnavailable, type Tx } from '../store/store.ts';
import { hashApiTokenSecret } from './api-tokens.ts';
import {
  ApiError,
  ERROR_CODES,
  errorEnvelope,
  notFound,
  type ResultInfo,
  successEnvelope,
} from './errors.ts';
import { API_ROUTES, mayCall, type RouteId } from './routes.ts';
import type { TokenUsageRecorder } from './token-usage.ts';

/** Largest request body the API reads; larger ones get 413 before any handler runs. */
export const API_BODY_LIMIT = 1024 * 1024;

declare module 'fastify' {
  interface FastifyContextConfig {
    routeId?: RouteId;
  }
  interface FastifyRequest {
    /** The token that authenticated the request; set for every management route. */
    apiToken: ApiToken | null;
  }
}

export interface RouteResult {
  /** 200 unless given: 201 for creates, 202 for deletes and revocations (spec §1.1). */
  status?: number;
  result: unknown;
  resultInfo?: ResultInfo;
}

export type RouteHandler = (request: FastifyRequest) => Promise<RouteResult>;

export interface ApiContext {
  gateway: Gateway;
  accountId: string;
  /**
   * Runs `fn` as one store transaction and adds the audit record (token, route id, resource)
   * to the same transaction: the change and its audit row commit together or not at all.
   */
  write<T>(
    request: FastifyRequest,
    resourceType: string,
    fn: (tx: Tx, changed: (change: Change) => void) => Promise<{ resourceId: string; value: T }>,
  ): Promise<T>;
}

export function createApiContext(gateway: Gateway): ApiContext {
  const accountId = gateway.account.accountId;
  return {
    gateway,
    accountId,
    write: (request, resourceType, fn) =>
      gateway.store.write(async (tx, changed) => {
        const { resourceId, value } = await fn(tx, changed);
        await gateway.repos.auditLog.record(tx, {
          accountId,
          tokenId: request.apiToken!.id,
          action: request.routeOptions.config.routeId!,
          resourceType,
          resourceId,
        });
        return value;
      }),
  };
}

/** Registers the handler for route `id` with the method, path and body limit from the table. */
export function defineRoute(app: FastifyInstance, id: RouteId, handler: RouteHandler): void {
  const spec = API_ROUTES[id];
  app.route({
    method: spec.method,
    url: spec.path,
    bodyLimit: API_BODY_LIMIT,
    config: { routeId: id },
    handler: async (request, reply) => {
      const { status = 200, result, resultInfo } = await handler(request);
      return reply.code(status).send(successEnvelope(result, resultInfo));
    },
  });
}

const uuid = z.uuid();

/** A UUID path parameter; anything else cannot name an object, so it is a 404 like an unknown id. */
export function idParam(request: FastifyRequest, name: string, what: string): string {
  const value = (request.params as Record<string, string | undefined>)[name] ?? '';
  if (!uuid.safeParse(value).success) throw notFound(what, JSON.stringify(value.slice(0, 64)));
  return value.toLowerCase();
}

const BEARER = /^Bearer[ ]+(\S{1,512})[ ]*$/i;

/**
 * onRequest hook: authenticates the bearer token (401), checks the route's permission groups
 * (403) and the account in the path (404), before the body is even read. Cloudflare answers
 * authentication failures with code 10000 "Authentication error" (spec §1.1).
 */
export function authenticate(gateway: Gateway, usage: TokenUsageRecorder) {
  return async (request: FastifyRequest): Promise<void> => {
    const routeId = request.routeOptions.config.routeId;
    if (routeId === undefined) return; // unknown route: the not-found handler answers
    const header = request.headers.authorization;
    if (header === undefined) {
      throw authError('missing Authorization header; send "Authorization: Bearer <API token>"');
    }
    const match = BEARER.exec(header);
    if (!match) throw authError('the Authorization header must be "Bearer <API token>"');
    const token = await gateway.repos.apiTokens.findBySecretHash(hashApiTokenSecret(match[1]!));
    if (!token) throw authError('invalid API token');
    if (token.status !== 'active') throw authError('the API token is disabled');
    if (token.expiresOn !== null && Date.parse(token.expiresOn) <= Date.now()) {
      throw authError('the API token has expired');
    }
    request.apiToken = token;
    usage.touch(token.id);
    if (!mayCall(routeId, token.permissions)) {
      throw new ApiError(
        403,
        ERROR_CODES.forbidden,
        `Unauthorized to access requested resource: the token's permission groups do not include ${describePermissions(routeId)}`,
      );
    }
    const accountId = (request.params as { account_id?: string }).account_id;
    if (
      accountId !== undefined &&
      (accountId !== gateway.account.accountId || accountId !== token.accountId)
    ) {
      throw new ApiError(
        404,
        ERROR_CODES.unknownAccount,
        `Could not route to /accounts/${accountId.slice(0, 64)}, perhaps your object identifier is invalid?`,
      );
    }
  };
}

function describePermissions(id: RouteId): string {
  const groups = API_ROUTES[id].permissions;
  return typeof groups === 'string' ? groups : groups.map((g) => JSON.stringify(g)).join(' or ');
}

function authError(detail: string): ApiError {
  return new ApiError(401, ERROR_CODES.authentication, `Authentication error: ${detail}`);
}

/** Every error leaves in the envelope, Fastify's own (body parsing, limits) included. */
export function handleError(error: FastifyError | ApiError, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof ApiError) {
    return reply.code(error.status).send(errorEnvelope(error.code, error.message));
  }
  const mapped = mapFastifyError(error);
  if (mapped) return reply.code(mapped.status).send(errorEnvelope(mapped.code, mapped.message));
  if (isDatabaseUnavailable(error)) {
    request.log.warn({ err: error }, 'management API request refused: database unreachable');
    return reply
      .code(503)
      .header('retry-after', '5')
      .send(
        errorEnvelope(
          ERROR_CODES.databaseUnavailable,
          'service unavailable: the database cannot be reached; retry later',
        ),
      );
  }
  request.log.error({ err: error }, 'management API request failed');
  return reply.code(500).send(errorEnvelope(ERROR_CODES.internal, 'internal error; see the gateway log'));
}

function mapFastifyError(error: FastifyError): ApiError | null {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(
        413,
        ERROR_CODES.bodyTooLarge,
        `request body is larger than the ${API_BODY_LIMIT} bytes the API accepts`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(
        415,
        ERROR_CODES.unsupportedMediaType,
        `unsupported content type ${JSON.stringify(error.message.replace(/^Unsupported Media Type: /, ''))}; send application/json`,
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError(400, ERROR_CODES.malformedJson, `Malformed JSON in request body: ${error.message}`);
  }
  // JSON.parse errors from the default parser may come through without a Fastify code.
  if (error instanceof SyntaxError) {
    return new ApiError(400, ERROR_CODES.malformedJson, `Malformed JSON in request body: ${error.message}`);
  }
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return new ApiError(error.statusCode, ERROR_CODES.invalidRequest, error.message);
  }
  return null;
}

export function handleNotFound(request: FastifyRequest, reply: FastifyReply) {
  return reply
    .code(404)
    .send(
      errorEnvelope(
        ERROR_CODES.noRoute,
        `No route for that URI: ${request.method} ${request.url.split('?')[0]}`,
      ),
    );
}
