// /accounts/{account_id}/gateway/lists: Zero Trust lists of email addresses or IP ranges that
// Access rules name (`{email_list:{id}}`, `{ip_list:{id}}`). Only the EMAIL and IP types feed
// Access, so only they exist here. Items are checked by the policy engine's own list schema,
// and every write ends with the whole-configuration check, so a list a rule uses cannot be
// deleted. Permission: the Access groups permission (docs/api.md explains the choice).
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { listDefinitionSchema } from '../policy/index.ts';
import { MAX_EMAIL_LENGTH, MAX_LIST_ITEMS, MAX_NAME_LENGTH } from '../policy/limits.ts';
import type { ListItem, ListType, StoredList, StoredListItem } from '../store/repositories/gateway-lists.ts';
import type { Tx } from '../store/store.ts';
import { invalidRequest, notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';
import { MAX_PER_PAGE, pageQueryShape, pageWindow, resultInfo } from './pagination.ts';
import { assertAccessConfigValid } from './policy-validation.ts';

/** Lists per account: bounded so the unpaged list (the SDK reads it as a single page) stays small. */
const MAX_LISTS = 1000;

const name = z.string().trim().min(1).max(MAX_NAME_LENGTH);
const description = z.string().max(1024);
const item = z.strictObject({
  value: z.string().trim().min(1).max(MAX_EMAIL_LENGTH),
  description: description.optional(),
  // Echoed back by clients that send what they read.
  created_at: z.string().optional(),
});
const items = z.array(item).max(MAX_LIST_ITEMS, `at most ${MAX_LIST_ITEMS} items per list`);

const createBody = z.strictObject({
  name,
  type: z.string(),
  description: description.optional(),
  items: items.default([]),
});
// Cloudflare's update names the list and, when `items` is sent, replaces them. Leaving `items`
// out keeps them: emptying an email list used in an exclude would widen access.
const updateBody = z.strictObject({
  name,
  description: description.optional(),
  items: items.optional(),
});
const patchBody = z.strictObject({
  append: items.default([]),
  remove: z.array(z.string().max(MAX_EMAIL_LENGTH)).max(MAX_LIST_ITEMS).default([]),
});
const listQuery = z.strictObject({
  ...pageQueryShape(MAX_PER_PAGE),
  type: z.enum(['EMAIL', 'IP']).optional(),
});
const itemsQuery = z.strictObject(pageQueryShape(50));

export const listSchemas = {
  'lists.list': { query: listQuery },
  'lists.create': { body: createBody },
  'lists.update': { body: updateBody },
  'lists.patch': { body: patchBody },
  'lists.items': { query: itemsQuery },
} satisfies RouteSchemas;

const SUPPORTED_TYPES = ['EMAIL', 'IP'] as const;

function listJson(list: StoredList, listItems?: readonly StoredListItem[]) {
  return {
    id: list.id,
    name: list.name,
    type: list.type,
    ...(list.description !== null && { description: list.description }),
    count: list.count,
    ...(listItems && { items: listItems.map(itemJson) }),
    created_at: list.createdAt,
    updated_at: list.updatedAt,
  };
}

function itemJson(entry: StoredListItem) {
  return {
    value: entry.value,
    ...(entry.description !== null && { description: entry.description }),
    created_at: entry.createdAt,
  };
}

/** Items checked with the policy engine's list schema; the last description of a repeated value wins. */
function checkedItems(type: ListType, sent: z.output<typeof items>, field: string): ListItem[] {
  const unique = new Map(sent.map((entry) => [entry.value, entry.description ?? null]));
  const values = [...unique.keys()];
  const parsed = listDefinitionSchema.safeParse({ id: 'list', type, items: values });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const index = issue.path[1];
    const value = typeof index === 'number' ? values[index]! : '';
    throw invalidRequest(
      `${field}: ${JSON.stringify(value.slice(0, 64))} is not ${issue.message.replace(/^expected /, '')}`,
    );
  }
  return values.map((value) => ({ value, description: unique.get(value)! }));
}

export function registerListRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos } = ctx.gateway;
  const listId = (request: FastifyRequest) => idParam(request, 'list_id', 'list');

  /** Updates and locks the list for the rest of `tx`, or throws 404. */
  const lockList = async (
    tx: Tx,
    id: string,
    change: { name?: string; description?: string | null } = {},
  ) => {
    if (!(await repos.lists.update(tx, ctx.accountId, id, change))) throw notFound('list', id);
    return (await repos.lists.get(ctx.accountId, id, tx))!;
  };

  /** An audited write of one list, ending with the item bound and the whole-configuration check. */
  const writeList = (request: FastifyRequest, id: string, fn: (tx: Tx) => Promise<void>, withItems = false) =>
    ctx.write(request, 'list', async (tx, changed) => {
      await fn(tx);
      if ((await repos.lists.countItems(tx, id)) > MAX_LIST_ITEMS) {
        throw invalidRequest(`append: the list would hold more than ${MAX_LIST_ITEMS} items`);
      }
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'gateway_lists', accountId: ctx.accountId, id });
      const list = (await repos.lists.get(ctx.accountId, id, tx))!;
      const listItems = withItems
        ? await repos.lists.items(id, { offset: 0, limit: MAX_LIST_ITEMS }, tx)
        : undefined;
      return { resourceId: id, value: listJson(list, listItems) };
    });

  defineRoute(app, 'lists.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const { items: lists, total } = await repos.lists.list(
      ctx.accountId,
      { type: query.type },
      pageWindow(query),
    );
    return {
      result: lists.map((list) => listJson(list)),
      resultInfo: resultInfo(query, lists.length, total),
    };
  });

  defineRoute(app, 'lists.create', async (request) => {
    const body = parseInput(createBody, request.body);
    if (!(SUPPORTED_TYPES as readonly string[]).includes(body.type)) {
      throw invalidRequest(
        `type: "${body.type.slice(0, 64)}" is not supported by Gatehouse; supported types: ${SUPPORTED_TYPES.join(', ')} (the types Access rules use)`,
      );
    }
    const type = body.type as ListType;
    const entries = checkedItems(type, body.items, 'items');
    const id = randomUUID();
    const result = await writeList(
      request,
      id,
      async (tx) => {
        if ((await repos.lists.count(tx, ctx.accountId)) >= MAX_LISTS) {
          throw invalidRequest(`the account already has ${MAX_LISTS} lists, the most Gatehouse keeps`);
        }
        await repos.lists.insert(tx, {
          id,
          accountId: ctx.accountId,
          name: body.name,
          type,
          description: body.description ?? null,
        });
        await repos.lists.addItems(tx, ctx.accountId, id, entries);
      },
      true,
    );
    return { status: 201, result };
  });

  defineRoute(app, 'lists.get', async (request) => {
    const id = listId(request);
    const list = await repos.lists.get(ctx.accountId, id);
    if (!list) throw notFound('list', id);
    return { result: listJson(list) };
  });

  defineRoute(app, 'lists.update', async (request) => {
    const id = listId(request);
    const body = parseInput(updateBody, request.body);
    const result = await writeList(request, id, async (tx) => {
      const list = await lockList(tx, id, { name: body.name, description: body.description ?? null });
      if (body.items !== undefined) {
        const entries = checkedItems(list.type, body.items, 'items');
        await repos.lists.clearItems(tx, id);
        await repos.lists.addItems(tx, ctx.accountId, id, entries);
      }
    });
    return { result };
  });

  defineRoute(app, 'lists.patch', async (request) => {
    const id = listId(request);
    const body = parseInput(patchBody, request.body);
    const result = await writeList(request, id, async (tx) => {
      const list = await lockList(tx, id);
      await repos.lists.removeItems(tx, id, body.remove);
      await repos.lists.addItems(tx, ctx.accountId, id, checkedItems(list.type, body.append, 'append'));
    });
    return { result };
  });

  defineRoute(app, 'lists.delete', async (request) => {
    const id = listId(request);
    await ctx.write(request, 'list', async (tx, changed) => {
      await lockList(tx, id);
      await repos.lists.delete(tx, id);
      // Refused while a rule names the list: the rule would otherwise stop matching anyone.
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'gateway_lists', accountId: ctx.accountId, id });
      return { resourceId: id, value: undefined };
    });
    return { result: { id } };
  });

  defineRoute(app, 'lists.items', async (request) => {
    const id = listId(request);
    const query = parseInput(itemsQuery, request.query, 'query');
    const list = await repos.lists.get(ctx.accountId, id);
    if (!list) throw notFound('list', id);
    const page = await repos.lists.items(id, pageWindow(query));
    return { result: page.map(itemJson), resultInfo: resultInfo(query, page.length, list.count) };
  });
}
