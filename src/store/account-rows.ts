// The reads every account-scoped repository shares: one row by account and id, all of an
// account's rows, and one page of them with the total, all oldest first (`created_at`, then `id`
// to break ties), so that a page boundary never moves between two requests that add nothing.
import {
  type Expression,
  type ExpressionBuilder,
  expressionBuilder,
  type Kysely,
  type Selectable,
  type SelectQueryBuilder,
  type SqlBool,
  type Updateable,
  type UpdateObject,
} from 'kysely';
import type { Database } from './schema.ts';
import { type Tx, toCount } from './store.ts';

/** The tables whose rows belong to one account and carry their own id and creation time. */
export type AccountScopedTable = {
  [T in keyof Database]: Database[T] extends { id: string; account_id: string; created_at: string }
    ? T
    : never;
}[keyof Database];

/** The rows one page covers (src/api/pagination.ts `pageWindow`). */
export interface PageWindow {
  offset: number;
  limit: number;
}

export interface Page<Item> {
  items: Item[];
  /** How many rows match in all, across every page. */
  total: number;
}

/** The selection of a query that has selected nothing yet (Kysely writes it `{}`). */
type NothingSelected = Record<never, never>;

/** An account's rows of any account-scoped table: the columns they share can be named. */
type AccountQuery = SelectQueryBuilder<Database, AccountScopedTable, NothingSelected>;

/** A list filter: the conditions a row must also meet; `false` for a filter not asked for. */
export type RowFilter<T extends AccountScopedTable> = (
  eb: ExpressionBuilder<Database, T>,
) => (Expression<SqlBool> | false)[];

/** The shared reads of table `table`, each row turned into an item by `toItem`. */
export class AccountRows<T extends AccountScopedTable, Item> {
  constructor(
    private readonly table: T,
    private readonly toItem: (row: Selectable<Database[T]>) => Item,
  ) {}

  async get(db: Kysely<Database>, accountId: string, id: string): Promise<Item | null> {
    const row = await this.ofAccount(db, accountId).selectAll().where('id', '=', id).executeTakeFirst();
    return row ? this.toItem(row as Selectable<Database[T]>) : null;
  }

  async listAll(db: Kysely<Database>, accountId: string): Promise<Item[]> {
    const rows = await this.ofAccount(db, accountId)
      .selectAll()
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map((row) => this.toItem(row as Selectable<Database[T]>));
  }

  async page(
    db: Kysely<Database>,
    accountId: string,
    window: PageWindow,
    filter: RowFilter<T> = () => [],
  ): Promise<Page<Item>> {
    let query = this.ofAccount(db, accountId);
    for (const condition of filter(expressionBuilder<Database, T>())) {
      if (condition) query = query.where(condition);
    }
    const [rows, count] = await Promise.all([
      query
        .selectAll()
        .orderBy('created_at')
        .orderBy('id')
        .offset(window.offset)
        .limit(window.limit)
        .execute(),
      query.select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow(),
    ]);
    return {
      items: rows.map((row) => this.toItem(row as Selectable<Database[T]>)),
      total: toCount(count.n as string | number),
    };
  }

  private ofAccount(db: Kysely<Database>, accountId: string): AccountQuery {
    return db.selectFrom(this.table as AccountScopedTable).where('account_id', '=', accountId);
  }
}

/**
 * Sets `values` on the account's row `id` of `table`. As an UPDATE it also takes the row's lock
 * for the rest of `tx` (SQLite has no FOR UPDATE), so concurrent writers of one object run one
 * after the other. False when the account has no such row.
 */
export async function updateAccountRow<T extends AccountScopedTable>(
  tx: Tx,
  table: T,
  accountId: string,
  id: string,
  values: Updateable<Database[T]>,
): Promise<boolean> {
  const result = await tx
    .updateTable(table as AccountScopedTable)
    .set(values as UpdateObject<Database, AccountScopedTable>)
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}
