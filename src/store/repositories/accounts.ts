import { randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { AccountsTable } from '../schema.ts';
import { nowIso, type Store } from '../store.ts';

export interface Account {
  accountId: string;
  name: string;
  authDomain: string;
  sessionDuration: string;
  denyUnmatchedRequests: boolean;
  keyRotationIntervalDays: number;
  createdAt: string;
  updatedAt: string;
}

export type AccountUpdate = Partial<
  Pick<
    Account,
    'name' | 'authDomain' | 'sessionDuration' | 'denyUnmatchedRequests' | 'keyRotationIntervalDays'
  >
>;

function toAccount(row: Selectable<AccountsTable>): Account {
  return {
    accountId: row.account_id,
    name: row.name,
    authDomain: row.auth_domain,
    sessionDuration: row.session_duration,
    denyUnmatchedRequests: row.deny_unmatched_requests === 1,
    keyRotationIntervalDays: row.key_rotation_interval_days,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The installation's one account and its organisation settings (ARCHITECTURE.md decision 7). */
export class AccountRepository {
  constructor(private readonly store: Store) {}

  async get(): Promise<Account | null> {
    const row = await this.store.db
      .selectFrom('accounts')
      .selectAll()
      .orderBy('created_at')
      .executeTakeFirst();
    return row ? toAccount(row) : null;
  }

  /**
   * Returns the account, creating it on first start with a fresh 32-hex id. Two processes
   * starting at once on one database both end up with the same (first) account.
   */
  async ensure(defaults: { authDomain: string; keyRotationIntervalDays: number }): Promise<Account> {
    const existing = await this.get();
    if (existing) return existing;
    const now = nowIso();
    const accountId = randomBytes(16).toString('hex');
    await this.store.write(async (tx, changed) => {
      // Re-checked inside the transaction so concurrent first starts create one account.
      const again = await tx.selectFrom('accounts').select('account_id').executeTakeFirst();
      if (again) return;
      await tx
        .insertInto('accounts')
        .values({
          account_id: accountId,
          name: 'Gatehouse',
          auth_domain: defaults.authDomain,
          session_duration: '24h',
          deny_unmatched_requests: 1,
          key_rotation_interval_days: defaults.keyRotationIntervalDays,
          created_at: now,
          updated_at: now,
        })
        .execute();
      changed({ table: 'accounts', accountId, id: accountId });
    });
    return (await this.get())!;
  }

  async update(accountId: string, update: AccountUpdate): Promise<Account> {
    await this.store.write(async (tx, changed) => {
      await tx
        .updateTable('accounts')
        .set({
          ...(update.name !== undefined && { name: update.name }),
          ...(update.authDomain !== undefined && { auth_domain: update.authDomain }),
          ...(update.sessionDuration !== undefined && { session_duration: update.sessionDuration }),
          ...(update.denyUnmatchedRequests !== undefined && {
            deny_unmatched_requests: update.denyUnmatchedRequests ? 1 : 0,
          }),
          ...(update.keyRotationIntervalDays !== undefined && {
            key_rotation_interval_days: update.keyRotationIntervalDays,
          }),
          updated_at: nowIso(),
        })
        .where('account_id', '=', accountId)
        .execute();
      changed({ table: 'accounts', accountId, id: accountId });
    });
    return (await this.get())!;
  }
}
