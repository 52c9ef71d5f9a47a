import type { Selectable } from 'kysely';
import type { SigningKeysTable } from '../schema.ts';
import type { Store } from '../store.ts';

export type StoredSigningKey = Selectable<SigningKeysTable>;

export class SigningKeyRepository {
  constructor(private readonly store: Store) {}

  /** Every key of the account, newest first. */
  async list(accountId: string): Promise<StoredSigningKey[]> {
    return this.store.db
      .selectFrom('signing_keys')
      .selectAll()
      .where('account_id', '=', accountId)
      .orderBy('created_at', 'desc')
      .orderBy('kid')
      .execute();
  }

  async count(accountId: string): Promise<number> {
    const row = await this.store.db
      .selectFrom('signing_keys')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('account_id', '=', accountId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Makes `key` the current key: in one transaction the current key is retired at `now` and
   * the new one inserted, so there is never a moment with two current keys or none.
   */
  async rotate(key: StoredSigningKey, now: string): Promise<void> {
    await this.store.write(async (tx, changed) => {
      await tx
        .updateTable('signing_keys')
        .set({ retired_at: now })
        .where('account_id', '=', key.account_id)
        .where('retired_at', 'is', null)
        .execute();
      await tx.insertInto('signing_keys').values(key).execute();
      changed({ table: 'signing_keys', accountId: key.account_id, id: key.kid });
    });
  }

  /** Removes keys retired before `cutoff`: past the grace period nothing they signed is honoured. */
  async deleteRetiredBefore(accountId: string, cutoff: string): Promise<number> {
    return this.store.write(async (tx, changed) => {
      const result = await tx
        .deleteFrom('signing_keys')
        .where('account_id', '=', accountId)
        .where('retired_at', 'is not', null)
        .where('retired_at', '<', cutoff)
        .executeTakeFirst();
      const removed = Number(result.numDeletedRows);
      if (removed > 0) changed({ table: 'signing_keys', accountId });
      return removed;
    });
  }
}
