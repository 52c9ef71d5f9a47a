import type { Kysely, Selectable } from 'kysely';
import type { Rule } from '../../policy/schema.ts';
import { AccountRows, type Page, type PageWindow } from '../account-rows.ts';
import type { AccessGroupsTable, Database } from '../schema.ts';
import { nowIso, type Store, type Tx } from '../store.ts';

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

const accountRows = new AccountRows('access_groups', toGroup);

/** Access groups. Writes take the caller's transaction so the API can add its audit row. */
export class GroupRepository {
  constructor(private readonly store: Store) {}

  async get(
    accountId: string,
    id: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredGroup | null> {
    return accountRows.get(db, accountId, id);
  }

  async listAll(accountId: string, db: Kysely<Database> = this.store.db): Promise<StoredGroup[]> {
    return accountRows.listAll(db, accountId);
  }

  async list(accountId: string, window: PageWindow): Promise<Page<StoredGroup>> {
    return accountRows.page(this.store.db, accountId, window);
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
