// Access policies: app-scoped ("legacy") ones under /access/apps/{app_id}/policies and reusable
// ones under /access/policies (spec §1.3, §3.1). Every write ends with the whole-configuration
// check, so e.g. adding a linked_app_token rule to a reusable policy that a saas app uses is
// refused (spec §5.2: linked policies attach only to self_hosted apps).
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Change } from '../store/changes.ts';
import type { AttachedPolicy } from '../store/repositories/policies.ts';
import type { Tx } from '../store/store.ts';
import { lockApp } from './apps.ts';
import { invalidRequest, notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import { pageOf, pageQueryShape, pageWindow, resultInfo } from './pagination.ts';
import { assertAccessConfigValid, parsePolicyBody, toPolicyContent } from './policy-validation.ts';
import { attachedPolicyJson, policyJson } from './serialize.ts';

// Reusable policies list 100 per page by default [S: x-api-token-group operation pages].
export const reusableListQuery = z.strictObject(pageQueryShape(100));
export const appPolicyListQuery = z.strictObject(pageQueryShape(25));

export function registerPolicyRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos } = ctx.gateway;
  const changedPolicy = (changed: (change: Change) => void, id: string) =>
    changed({ table: 'policies', accountId: ctx.accountId, id });

  /** The app's policy `policyId`, with its precedence, or 404 when the app does not use it. */
  const attached = async (appId: string, policyId: string, tx?: Tx): Promise<AttachedPolicy> => {
    const found = (await repos.policies.listForApp(appId, tx)).find((policy) => policy.id === policyId);
    if (!found) throw notFound('policy', policyId);
    return found;
  };

  const appIdOf = (request: FastifyRequest) => idParam(request, 'app_id', 'application');
  const appPolicyIds = (request: FastifyRequest) => ({
    appId: appIdOf(request),
    policyId: idParam(request, 'policy_id', 'policy'),
  });

  // An app has at most MAX_POLICIES_PER_APP policies, so its list is paged in memory.
  defineRoute(app, 'app_policies.list', async (request) => {
    const appId = appIdOf(request);
    const query = parseInput(appPolicyListQuery, request.query, 'query');
    if (!(await repos.apps.get(ctx.accountId, appId))) throw notFound('application', appId);
    const all = await repos.policies.listForApp(appId);
    return pageOf(query, all.map(attachedPolicyJson));
  });

  defineRoute(app, 'app_policies.create', async (request) => {
    const appId = appIdOf(request);
    const input = parsePolicyBody(request.body);
    const result = await ctx.write(request, 'policy', async (tx, changed) => {
      await lockApp(ctx, tx, appId);
      const current = await repos.policies.listForApp(appId, tx);
      const precedence = input.precedence ?? Math.max(0, ...current.map((p) => p.precedence)) + 1;
      if (current.some((policy) => policy.precedence === precedence)) {
        throw invalidRequest(
          `precedence: ${precedence} is already used on this application; policy precedences must be unique`,
        );
      }
      const id = randomUUID();
      await repos.policies.insert(tx, { id, accountId: ctx.accountId, appId }, toPolicyContent(input));
      await repos.policies.setLinks(tx, ctx.accountId, appId, [
        ...current.map((policy) => ({ policyId: policy.id, precedence: policy.precedence })),
        { policyId: id, precedence },
      ]);
      await assertAccessConfigValid(ctx, tx);
      changedPolicy(changed, id);
      return { resourceId: id, value: attachedPolicyJson(await attached(appId, id, tx)) };
    });
    return { status: 201, result };
  });

  defineRoute(app, 'app_policies.get', async (request) => {
    const { appId, policyId } = appPolicyIds(request);
    if (!(await repos.apps.get(ctx.accountId, appId))) throw notFound('application', appId);
    return { result: attachedPolicyJson(await attached(appId, policyId)) };
  });

  defineRoute(app, 'app_policies.update', async (request) => {
    const { appId, policyId } = appPolicyIds(request);
    const input = parsePolicyBody(request.body);
    const result = await ctx.write(request, 'policy', async (tx, changed) => {
      await lockApp(ctx, tx, appId);
      const policy = await attached(appId, policyId, tx);
      if (policy.appId === null) {
        throw invalidRequest(
          `policy ${policyId} is reusable; change it with PUT /access/policies/${policyId}`,
        );
      }
      await repos.policies.replace(tx, policyId, toPolicyContent(input));
      const precedence = input.precedence ?? policy.precedence;
      if (precedence !== policy.precedence) {
        const current = await repos.policies.listForApp(appId, tx);
        if (current.some((other) => other.id !== policyId && other.precedence === precedence)) {
          throw invalidRequest(
            `precedence: ${precedence} is already used on this application; policy precedences must be unique`,
          );
        }
        await repos.policies.setLinks(
          tx,
          ctx.accountId,
          appId,
          current.map((other) => ({
            policyId: other.id,
            precedence: other.id === policyId ? precedence : other.precedence,
          })),
        );
      }
      await assertAccessConfigValid(ctx, tx);
      changedPolicy(changed, policyId);
      return { resourceId: policyId, value: attachedPolicyJson(await attached(appId, policyId, tx)) };
    });
    return { result };
  });

  defineRoute(app, 'app_policies.delete', async (request) => {
    const { appId, policyId } = appPolicyIds(request);
    await ctx.write(request, 'policy', async (tx, changed) => {
      await lockApp(ctx, tx, appId);
      const policy = await attached(appId, policyId, tx);
      // An app-scoped policy is deleted; a reusable one is only detached from this app.
      await repos.policies.unlink(tx, appId, policyId);
      if (policy.appId !== null) await repos.policies.delete(tx, policyId);
      await assertAccessConfigValid(ctx, tx);
      changedPolicy(changed, policyId);
      return { resourceId: policyId, value: undefined };
    });
    return { status: 202, result: { id: policyId } };
  });

  defineRoute(app, 'app_policies.make_reusable', async (request) => {
    const { appId, policyId } = appPolicyIds(request);
    const result = await ctx.write(request, 'policy', async (tx, changed) => {
      await lockApp(ctx, tx, appId);
      const policy = await attached(appId, policyId, tx);
      if (policy.appId === null) throw invalidRequest(`policy ${policyId} is already reusable`);
      await repos.policies.makeReusable(tx, policyId);
      changedPolicy(changed, policyId);
      return { resourceId: policyId, value: attachedPolicyJson(await attached(appId, policyId, tx)) };
    });
    return { result };
  });

  /** A reusable policy with its app_count, or 404 (app-scoped policies are not listed here). */
  const reusable = async (id: string, tx?: Tx) => {
    const policy = await repos.policies.get(ctx.accountId, id, tx);
    if (!policy || policy.appId !== null) throw notFound('policy', id);
    return policyJson(policy, { appCount: (await repos.policies.appsUsing(id, tx)).length });
  };

  const parseReusable = (body: unknown) => {
    const input = parsePolicyBody(body);
    if (input.precedence !== undefined) {
      throw invalidRequest(
        "precedence: a reusable policy's precedence is set per app, in the app's policies list",
      );
    }
    return toPolicyContent(input);
  };

  defineRoute(app, 'policies.list', async (request) => {
    const query = parseInput(reusableListQuery, request.query, 'query');
    const { items, total } = await repos.policies.listReusable(ctx.accountId, pageWindow(query));
    const result = items.map((policy) => policyJson(policy, { appCount: policy.appCount }));
    return { result, resultInfo: resultInfo(query, result.length, total) };
  });

  defineRoute(app, 'policies.create', async (request) => {
    const content = parseReusable(request.body);
    const result = await ctx.write(request, 'policy', async (tx, changed) => {
      const id = randomUUID();
      await repos.policies.insert(tx, { id, accountId: ctx.accountId, appId: null }, content);
      await assertAccessConfigValid(ctx, tx);
      changedPolicy(changed, id);
      return { resourceId: id, value: await reusable(id, tx) };
    });
    return { status: 201, result };
  });

  defineRoute(app, 'policies.get', async (request) => ({
    result: await reusable(idParam(request, 'policy_id', 'policy')),
  }));

  defineRoute(app, 'policies.update', async (request) => {
    const id = idParam(request, 'policy_id', 'policy');
    const content = parseReusable(request.body);
    const result = await ctx.write(request, 'policy', async (tx, changed) => {
      await reusable(id, tx);
      await repos.policies.replace(tx, id, content);
      // Checks every app using the policy: e.g. a linked_app_token rule while a saas app uses it.
      await assertAccessConfigValid(ctx, tx);
      changedPolicy(changed, id);
      return { resourceId: id, value: await reusable(id, tx) };
    });
    return { result };
  });

  defineRoute(app, 'policies.delete', async (request) => {
    const id = idParam(request, 'policy_id', 'policy');
    await ctx.write(request, 'policy', async (tx, changed) => {
      await reusable(id, tx);
      // Deleting a policy in use would silently change who gets in (a Block policy vanishing
      // widens access), so it must be detached from its apps first.
      const users = await repos.policies.appsUsing(id, tx);
      if (users.length > 0) {
        throw invalidRequest(
          `policy ${id} is used by ${users.length} application(s); remove it from them first`,
        );
      }
      await repos.policies.delete(tx, id);
      changedPolicy(changed, id);
      return { resourceId: id, value: undefined };
    });
    return { status: 202, result: { id } };
  });
}
