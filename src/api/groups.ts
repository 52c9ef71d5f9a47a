// /accounts/{account_id}/access/groups (spec §1.3): reusable rule bodies that policies name with
// `{group: {id}}`. Writes end with the whole-configuration check, so a group cannot be deleted
// while a policy or group names it, nor changed into a cycle or into something a policy using
// it may not contain (e.g. identity rules inside a Bypass policy).
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Tx } from '../store/store.ts';
import { notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import { pageQueryShape, pageWindow, resultInfo } from './pagination.ts';
import { assertAccessConfigValid, parseGroupBody } from './policy-validation.ts';
import { groupJson } from './serialize.ts';

export const listQuery = z.strictObject(pageQueryShape(25));

export function registerGroupRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos } = ctx.gateway;

  const existing = async (id: string, tx?: Tx) => {
    const group = await repos.groups.get(ctx.accountId, id, tx);
    if (!group) throw notFound('group', id);
    return group;
  };

  defineRoute(app, 'groups.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const { items, total } = await repos.groups.list(ctx.accountId, pageWindow(query));
    return { result: items.map(groupJson), resultInfo: resultInfo(query, items.length, total) };
  });

  defineRoute(app, 'groups.create', async (request) => {
    const content = parseGroupBody(request.body);
    const result = await ctx.write(request, 'group', async (tx, changed) => {
      const id = randomUUID();
      await repos.groups.insert(tx, { id, accountId: ctx.accountId }, content);
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'access_groups', accountId: ctx.accountId, id });
      return { resourceId: id, value: groupJson(await existing(id, tx)) };
    });
    return { status: 201, result };
  });

  defineRoute(app, 'groups.get', async (request) => ({
    result: groupJson(await existing(idParam(request, 'group_id', 'group'))),
  }));

  defineRoute(app, 'groups.update', async (request) => {
    const id = idParam(request, 'group_id', 'group');
    const content = parseGroupBody(request.body);
    const result = await ctx.write(request, 'group', async (tx, changed) => {
      await existing(id, tx);
      await repos.groups.replace(tx, id, content);
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'access_groups', accountId: ctx.accountId, id });
      return { resourceId: id, value: groupJson(await existing(id, tx)) };
    });
    return { result };
  });

  defineRoute(app, 'groups.delete', async (request) => {
    const id = idParam(request, 'group_id', 'group');
    await ctx.write(request, 'group', async (tx, changed) => {
      await existing(id, tx);
      await repos.groups.delete(tx, id);
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'access_groups', accountId: ctx.accountId, id });
      return { resourceId: id, value: undefined };
    });
    return { status: 202, result: { id } };
  });
}
