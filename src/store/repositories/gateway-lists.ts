import type { Kysely, Selectable } from 'kysely';
import { updateAccountRow } from '../account-rows.ts';
import type { Database, GatewayListItemsTable, GatewayListsTable } from '../schema.ts';
import { nowIso, type Store, type Tx, toCount } from '../store.ts';

export type ListType = 'EMAIL' | 'IP';

export interface ListItem {
  value: string;
  description: string | null;
}

export interface StoredList {
  id: string;
  accountId: string;
  name: string;
  type: ListType;
  description: string | null;
  count: number;
  createdAt: string;
  updatedAt: string;
}

export interface StoredListItem extends ListItem {
  createdAt: string;
}

function toList(row: Selectable<GatewayListsTable> & { count: string | number | bigint | null }): StoredList {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    type: row.type as ListType,
    description: row.description,
    count: toCount(row.count),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toItem(row: Selectable<GatewayListItemsTable>): StoredListItem {
  return { value: row.value, description: row.description, createdAt: row.created_at };
}

/** Chunk size for multi-row inserts, under SQLite's bound-parameter limit. */
const CHUNK = 200;

/** Zero Trust lists and their items. Writes take the caller's transaction (audit row). */
export class GatewayListRepository {
  constructor(private readonly store: Store) {}

  private selectLists(db: Kysely<Database>, accountId: string) {
    return db
      .selectFrom('gateway_lists')
      .selectAll('gateway_lists')
      .select((eb) =>
        eb
          .selectFrom('gateway_list_items')
          .select((inner) => inner.fn.countAll().as('n'))
          .whereRef('gateway_list_items.list_id', '=', 'gateway_lists.id')
          .as('count'),
      )
      .where('gateway_lists.account_id', '=', accountId);
  }

  async get(accountId: string, id: string, db: Kysely<Database> = this.store.db): Promise<StoredList | null> {
    const row = await this.selectLists(db, accountId).where('gateway_lists.id', '=', id).executeTakeFirst();
    return row ? toList(row) : null;
  }

  async list(
    accountId: string,
    filter: { type?: ListType },
    window: { offset: number; limit: number },
  ): Promise<{ items: StoredList[]; total: number }> {
    let query = this.selectLists(this.store.db, accountId);
    let counted = this.store.db.selectFrom('gateway_lists').where('account_id', '=', accountId);
    if (filter.type !== undefined) {
      query = query.where('gateway_lists.type', '=', filter.type);
      counted = counted.where('type', '=', filter.type);
    }
    const [rows, count] = await Promise.all([
      query
        .orderBy('gateway_lists.created_at')
        .orderBy('gateway_lists.id')
        .offset(window.offset)
        .limit(window.limit)
        .execute(),
      counted.select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { items: rows.map(toList), total: toCount(count.n as string | number) };
  }

  async items(
    listId: string,
    window: { offset: number; limit: number },
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredListItem[]> {
    const rows = await db
      .selectFrom('gateway_list_items')
      .selectAll()
      .where('list_id', '=', listId)
      .orderBy('created_at')
      .orderBy('value')
      .offset(window.offset)
      .limit(window.limit)
      .execute();
    return rows.map(toItem);
  }

  /** Every list of the account with its values (policy checks and the configuration snapshot). */
  async listAllWithValues(
    accountId: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<{ id: string; name: string; type: ListType; items: string[] }[]> {
    const [lists, items] = await Promise.all([
      db
        .selectFrom('gateway_lists')
        .select(['id', 'name', 'type'])
        .where('account_id', '=', accountId)
        .execute(),
      db
        .selectFrom('gateway_list_items')
        .select(['list_id', 'value'])
        .where('account_id', '=', accountId)
        .orderBy('list_id')
        .orderBy('value')
        .execute(),
    ]);
    const values = new Map<string, string[]>(lists.map((list) => [list.id, []]));
    for (const item of items) values.get(item.list_id)?.push(item.value);
    return lists.map((list) => ({
      id: list.id,
      name: list.name,
      type: list.type as ListType,
      items: values.get(list.id)!,
    }));
  }

  async insert(
    tx: Tx,
    list: { id: string; accountId: string; name: string; type: ListType; description: string | null },
  ): Promise<void> {
    const now = nowIso();
    await tx
      .insertInto('gateway_lists')
      .values({
        id: list.id,
        account_id: list.accountId,
        name: list.name,
        type: list.type,
        description: list.description,
        created_at: now,
        updated_at: now,
      })
      .execute();
  }

  /**
   * Changes name/description and takes the list row's lock for the rest of `tx` (an UPDATE),
   * so concurrent edits of one list run one after the other. False when there is no list.
   */
  async update(
    tx: Tx,
    accountId: string,
    id: string,
    change: { name?: string; description?: string | null },
  ): Promise<boolean> {
    return updateAccountRow(tx, 'gateway_lists', accountId, id, {
      ...(change.name !== undefined && { name: change.name }),
      ...(change.description !== undefined && { description: change.description }),
      updated_at: nowIso(),
    });
  }

  /** Adds items; an item already in the list keeps its place and takes the new description. */
  async addItems(tx: Tx, accountId: string, listId: string, items: readonly ListItem[]): Promise<void> {
    const now = nowIso();
    for (let start = 0; start < items.length; start += CHUNK) {
      const rows = items.slice(start, start + CHUNK).map((item) => ({
        list_id: listId,
        account_id: accountId,
        value: item.value,
        description: item.description,
        created_at: now,
      }));
      await tx
        .insertInto('gateway_list_items')
        .values(rows)
        .onConflict((oc) =>
          oc
            .columns(['list_id', 'value'])
            .doUpdateSet((eb) => ({ description: eb.ref('excluded.description') })),
        )
        .execute();
    }
  }

  async removeItems(tx: Tx, listId: string, values: readonly string[]): Promise<void> {
    for (let start = 0; start < values.length; start += CHUNK) {
      await tx
        .deleteFrom('gateway_list_items')
        .where('list_id', '=', listId)
        .where('value', 'in', values.slice(start, start + CHUNK))
        .execute();
    }
  }

  async clearItems(tx: Tx, listId: string): Promise<void> {
    await tx.deleteFrom('gateway_list_items').where('list_id', '=', listId).execute();
  }

  async count(tx: Tx, accountId: string): Promise<number> {
    const row = await tx
      .selectFrom('gateway_lists')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('account_id', '=', accountId)
      .executeTakeFirstOrThrow();
    return toCount(row.n as string | number);
  }

  async countItems(tx: Tx, listId: string): Promise<number> {
    const row = await tx
      .selectFrom('gateway_list_items')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('list_id', '=', listId)
      .executeTakeFirstOrThrow();
    return toCount(row.n as string | number);
  }

  async delete(tx: Tx, id: string): Promise<void> {
    await tx.deleteFrom('gateway_lists').where('id', '=', id).execute();
  }
}
