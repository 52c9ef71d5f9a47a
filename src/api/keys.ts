// /accounts/{account_id}/access/keys (spec §1.3, §4.4): the signing keys' rotation interval,
// and rotation on demand. All three answer `{key_rotation_interval_days,
// last_key_rotation_at, days_until_next_rotation}` [TS: access/keys.ts]. The key ring keeps
// the previous key published for 7 days after a rotation, as Cloudflare does.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseInput } from './errors.ts';
import { type ApiContext, defineRoute } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';

const DAY_MS = 86_400_000;

const updateBody = z.strictObject({ key_rotation_interval_days: z.int().min(1).max(365) });
const rotateBody = z.strictObject({});

export const keySchemas = {
  'keys.update': { body: updateBody },
  'keys.rotate': { body: rotateBody },
} satisfies RouteSchemas;

export function registerKeyRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos, keys } = ctx.gateway;

  const keysJson = async () => {
    const interval = (await repos.accounts.get())!.keyRotationIntervalDays;
    const last = keys.lastRotationAt();
    const due = Date.parse(last) + interval * DAY_MS;
    return {
      key_rotation_interval_days: interval,
      last_key_rotation_at: last,
      days_until_next_rotation: Math.max(0, Math.ceil((due - Date.now()) / DAY_MS)),
    };
  };

  /** Audit row for a key change; the key ring writes the keys themselves. */
  const audit = (request: FastifyRequest, resourceId: string) =>
    ctx.write(request, 'signing_keys', async () => ({ resourceId, value: undefined }));

  defineRoute(app, 'keys.get', async () => ({ result: await keysJson() }));

  defineRoute(app, 'keys.update', async (request) => {
    const body = parseInput(updateBody, request.body);
    await ctx.write(request, 'signing_keys', async (tx, changed) => {
      await repos.accounts.updateIn(tx, ctx.accountId, {
        keyRotationIntervalDays: body.key_rotation_interval_days,
      });
      changed({ table: 'accounts', accountId: ctx.accountId, id: ctx.accountId });
      return { resourceId: ctx.accountId, value: undefined };
    });
    return { result: await keysJson() };
  });

  defineRoute(app, 'keys.rotate', async (request) => {
    parseInput(rotateBody, request.body ?? {});
    // Rotation commits in the key ring's own transaction; the audit row follows it, so a
    // rotation that failed is never recorded as done.
    const kid = await keys.rotate();
    await audit(request, kid);
    return { result: await keysJson() };
  });
}
