import type { Kysely, Selectable } from 'kysely';
import type { Rule } from '../../policy/schema.ts';
import type { AccessGroupsTable, Database } from '../schema.ts';
import { nowIso, type Store, type Tx, toCount } from '../store.ts';

export interface GroupContent {
  name: string;
  include: Rule[];
  exclude: Rule[];
  require: Rule[];
  isDefault: boolean;
}

export interface StoredGroup extends GroupContent {
  id: string;
  accountId: string;
  createdAt: string;
  updatedAt: string;
}

function toGroup(row: Selectable<AccessGroupsTable>): StoredGroup {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    include: JSON.parse(row.include) as Rule[],
    exclude: JSON.parse(row.exclude) as Rule[],
    require: JSON.parse(row.require) as Rule[],
    isDefault: row.is_default === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function contentColumns(content: GroupContent) {
  return {
    name: content.name,
    include: JSON.stringify(content.include),
    exclude: JSON.stringify(content.exclude),
    require: JSON.stringify(content.require),
    is_default: content.isDefault ? 1 : 0,
  };
}

/** Access groups. Writes take the caller's transaction so the API can add its audit row. */
export class GroupRepository {
  constructor(private readonly store: Store) {}

  async get(
    accountId: string,
    id: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredGroup | null> {
    const row = await db
      .selectFrom('access_groups')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toGroup(row) : null;
  }

  async listAll(accountId: string, db: Kysely<Database> = this.store.db): Promise<StoredGroup[]> {
    const rows = await db
      .selectFrom('access_groups')
      .selectAll()
      .where('account_id', '=', accountId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toGroup);
  }

  async list(
    accountId: string,
    window: { offset: number; limit: number },
  ): Promise<{ items: StoredGroup[]; total: number }> {
    const base = this.store.db.selectFrom('access_groups').where('account_id', '=', accountId);
    const [rows, count] = await Promise.all([
      base
        .selectAll()
        .orderBy('created_at')
        .orderBy('id')
        .offset(window.offset)
        .limit(window.limit)
        .execute(),
      base.select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { items: rows.map(toGroup), total: toCount(count.n as string | number) };
  }

  async insert(tx: Tx, group: { id: string; accountId: string }, content: GroupContent): Promise<void> {
    const now = nowIso();
    await tx
      .insertInto('access_groups')
      .values({
        id: group.id,
        account_id: group.accountId,
        ...contentColumns(content),
        created_at: now,
        updated_at: now,
      })
      .execute();
  }

  async replace(tx: Tx, id: string, content: GroupContent): Promise<void> {
    await tx
      .updateTable('access_groups')
      .set({ ...contentColumns(content), updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  async delete(tx: Tx, id: string): Promise<void> {
    await tx.deleteFrom('access_groups').where('id', '=', id).execute();
  }
}
