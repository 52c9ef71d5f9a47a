// GET /accounts/{account_id}/access/apps/{app_id}/user_policy_checks (spec §1.3): "does this user
// get into this app, and why". Cloudflare answers for the dashboard user making the call;
// Gatehouse API tokens belong to no user, so the user is named in the query (`email` or
// `user_id`), with optional request facts. The result has Cloudflare's `app_state` and
// `user_identity` [TS: applications/user-policy-checks.ts]; `app_state.policies` is the policy
// engine's trace, one entry per policy in evaluation order.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parseIp } from '../policy/ip.ts';
import { MAX_EMAIL_LENGTH, MAX_NAME_LENGTH } from '../policy/limits.ts';
import { invalidRequest, notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';
import { checkPolicies, decidedByJson, PolicyCheckError, traceJson } from './policy-check.ts';

/** A comma-separated query value, e.g. `groups=eng,ops`, as a list of at most 50 entries. */
const commaList = z
  .string()
  .max(4096)
  .transform((value) =>
    value
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== ''),
  )
  .refine((entries) => entries.length <= 50, 'at most 50 comma-separated entries');

export const policyCheckQuery = z
  .strictObject({
    email: z.email({ error: 'expected an email address' }).max(MAX_EMAIL_LENGTH).optional(),
    user_id: z.guid({ error: 'expected a user UUID' }).optional(),
    ip: z
      .string()
      .max(64)
      .refine((value) => parseIp(value) !== null, 'expected an IPv4 or IPv6 address')
      .optional(),
    country: z
      .string()
      .regex(/^[A-Za-z]{2}$/, 'expected an ISO 3166-1 alpha-2 country code such as US')
      .optional(),
    idp_id: z.guid({ error: 'expected an identity provider UUID' }).optional(),
    groups: commaList.optional(),
    amr: commaList.optional(),
    common_name: z.string().min(1).max(MAX_NAME_LENGTH).optional(),
    service_token: z.string().min(1).max(64).optional(),
    linked_app_uid: z.guid({ error: 'expected an app UUID' }).optional(),
  })
  .refine((query) => query.email !== undefined || query.user_id !== undefined, {
    error:
      'name the user to check with the email or user_id query parameter (Gatehouse API tokens belong to no user)',
  });

export const userPolicyCheckSchemas = {
  'apps.user_policy_checks': { query: policyCheckQuery },
} satisfies RouteSchemas;

export function registerUserPolicyCheckRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos, store } = ctx.gateway;

  defineRoute(app, 'apps.user_policy_checks', async (request) => {
    const id = idParam(request, 'app_id', 'application');
    const query = parseInput(policyCheckQuery, request.query, 'query');
    const stored = await repos.apps.get(ctx.accountId, id);
    if (!stored) throw notFound('application', id);
    const now = new Date();
    let checked: Awaited<ReturnType<typeof checkPolicies>>;
    try {
      checked = await checkPolicies({ store, repos, accountId: ctx.accountId }, stored, {
        now,
        ...(query.email !== undefined && { email: query.email }),
        ...(query.user_id !== undefined && { userId: query.user_id }),
        ...(query.ip !== undefined && { ip: query.ip }),
        ...(query.country !== undefined && { country: query.country }),
        ...(query.idp_id !== undefined && { idpId: query.idp_id }),
        ...(query.groups !== undefined && { groups: query.groups }),
        ...(query.amr !== undefined && { amr: query.amr }),
        ...(query.common_name !== undefined && { commonName: query.common_name }),
        ...(query.service_token !== undefined && { serviceToken: query.service_token }),
        ...(query.linked_app_uid !== undefined && { linkedAppUid: query.linked_app_uid }),
      });
    } catch (error) {
      if (error instanceof PolicyCheckError) throw invalidRequest(`query: ${error.message}`);
      throw error;
    }
    const { decision, user, session, context } = checked;
    const identity = context.identity;
    return {
      result: {
        app_state: {
          app_uid: stored.id,
          aud: stored.aud,
          hostname: stored.type === 'self_hosted' ? stored.domain : '',
          name: stored.name,
          policies: traceJson(decision.trace ?? []),
          status: decision.decision,
          // Gatehouse additions: the deciding policy (null for the default deny) and why a
          // stored configuration could not be evaluated.
          decided_by: decidedByJson(decision),
          ...(checked.compileError !== null && { error: checked.compileError }),
        },
        user_identity: {
          id: user?.id ?? '',
          user_uuid: user?.id ?? '',
          account_id: ctx.accountId,
          email: identity?.email ?? '',
          name: (session?.identity.name ?? user?.name) || '',
          geo: { country: context.country?.toUpperCase() ?? '' },
          iat: session ? Math.floor(Date.parse(session.createdAt) / 1000) : 0,
          ...(identity?.idp !== undefined && { idp: identity.idp }),
          ...(identity?.amr !== undefined && { amr: identity.amr }),
          ...(identity?.oidcClaims !== undefined && { oidc_fields: identity.oidcClaims }),
          is_gateway: false,
          is_warp: false,
          device_sessions: {},
          version: 1,
        },
      },
    };
  });
}
