// GET /accounts/{account_id}/access/logs/access_requests (spec §6): the authentication log
// the login and the proxy write. Filters follow Cloudflare's query parameters, each value
// with an optional `<name>Op` of eq or neq (email also `contains`); `fields` picks columns.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { MAX_EMAIL_LENGTH, MAX_VALUE_LENGTH } from '../policy/limits.ts';
import type {
  AccessRequestFilter,
  Compared,
  StoredAccessRequest,
} from '../store/repositories/access-requests.ts';
import { invalidRequest, parseInput } from './errors.ts';
import { type ApiContext, defineRoute } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';
import { MAX_PER_PAGE, pageQueryShape, pageWindow, resultInfo } from './pagination.ts';

const op = z.enum(['eq', 'neq']).default('eq');
const flag = z.enum(['true', 'false']).transform((value) => value === 'true');
const value = z.string().min(1).max(MAX_VALUE_LENGTH);
const time = z.iso.datetime({ offset: true }).transform((text) => new Date(text).toISOString());

const { page } = pageQueryShape(25);

const listQuery = z.strictObject({
  // Cloudflare's own size parameter; per_page, when given, wins.
  limit: z.coerce.number().int().min(1).max(MAX_PER_PAGE).default(25),
  page,
  per_page: z.coerce.number().int().min(1).max(MAX_PER_PAGE).optional(),
  direction: z.enum(['asc', 'desc']).default('desc'),
  since: time.optional(),
  until: time.optional(),
  email: z.string().min(1).max(MAX_EMAIL_LENGTH).optional(),
  email_exact: flag.optional(),
  emailOp: z.enum(['eq', 'neq', 'contains']).optional(),
  user_id: value.optional(),
  user_idOp: op,
  allowed: flag.optional(),
  allowedOp: op,
  app_uid: value.optional(),
  app_uidOp: op,
  app_type: value.optional(),
  app_typeOp: op,
  idp: value.optional(),
  idpOp: op,
  country_code: z
    .string()
    .regex(/^[A-Za-z]{2}$/, 'expected a two-letter country code')
    .optional(),
  country_codeOp: op,
  ray_id: value.optional(),
  ray_idOp: op,
  non_identity: flag.optional(),
  non_identityOp: op,
  fields: z.string().max(1024).optional(),
});

export const logSchemas = { 'logs.access_requests': { query: listQuery } } satisfies RouteSchemas;

function recordJson(entry: StoredAccessRequest) {
  return {
    user_email: entry.user_email,
    user_id: entry.user_id,
    ip_address: entry.ip_address,
    app_uid: entry.app_uid,
    app_domain: entry.app_domain,
    app_type: entry.app_type,
    action: entry.action,
    connection: entry.connection,
    idp_id: entry.idp_id,
    allowed: entry.allowed === 1,
    non_identity: entry.non_identity === 1,
    service_token_id: entry.service_token_id,
    country: entry.country,
    created_at: entry.created_at,
    ray_id: entry.ray_id,
    // Gatehouse's addition: which policy decided and the rule that settled each one evaluated.
    policy_trace: entry.policy_trace ? (JSON.parse(entry.policy_trace) as unknown) : null,
  };
}
type RecordField = keyof ReturnType<typeof recordJson>;

const FIELDS = Object.keys(
  recordJson({ allowed: 0, non_identity: 0 } as StoredAccessRequest),
) as RecordField[];

export function registerLogRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos } = ctx.gateway;

  defineRoute(app, 'logs.access_requests', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const fields = query.fields?.split(',').map((field) => field.trim());
    const unknown = fields?.find((field) => !(FIELDS as string[]).includes(field));
    if (unknown !== undefined) {
      throw invalidRequest(
        `query.fields: unknown field ${JSON.stringify(unknown)}; known fields: ${FIELDS.join(', ')}`,
      );
    }
    const compared = <T>(given: T | undefined, givenOp: 'eq' | 'neq'): Compared<T> | undefined =>
      given === undefined ? undefined : { value: given, op: givenOp };
    const filter: AccessRequestFilter = {
      since: query.since,
      until: query.until,
      email:
        query.email === undefined
          ? undefined
          : { value: query.email, op: query.emailOp ?? (query.email_exact ? 'eq' : 'contains') },
      userId: compared(query.user_id, query.user_idOp),
      allowed: compared(query.allowed, query.allowedOp),
      appUid: compared(query.app_uid, query.app_uidOp),
      appType: compared(query.app_type, query.app_typeOp),
      connection: compared(query.idp, query.idpOp),
      country: compared(query.country_code?.toUpperCase(), query.country_codeOp),
      rayId: compared(query.ray_id, query.ray_idOp),
      nonIdentity: compared(query.non_identity, query.non_identityOp),
    };
    const paging = { page: query.page, per_page: query.per_page ?? query.limit };
    const { items, total } = await repos.accessRequests.list(ctx.accountId, filter, {
      direction: query.direction,
      ...pageWindow(paging),
    });
    const records = items.map(recordJson);
    const result = fields
      ? records.map((record) =>
          Object.fromEntries(fields.map((field) => [field, record[field as RecordField]])),
        )
      : records;
    return { result, resultInfo: resultInfo(paging, result.length, total) };
  });
}
