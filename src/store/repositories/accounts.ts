import { randomBytes } from 'node:crypto';
import { type Kysely, type Selectable, sql } from 'kysely';
import type { AccountsTable, Database } from '../schema.ts';
import { nowIso, type Store, type Tx } from '../store.ts';

export interface Account {
  accountId: string;
  name: string;
  authDomain: string;
  sessionDuration: string;
  denyUnmatchedRequests: boolean;
  keyRotationIntervalDays: number;
  autoRedirectToIdentity: boolean;
  isUiReadOnly: boolean;
  uiReadOnlyToggleReason: string | null;
  userSeatExpirationInactiveTime: string | null;
  strictServiceTokenAuth: boolean;
  /** Cosmetic login page settings, stored as sent (Cloudflare's `login_design`). */
  loginDesign: Record<string, string>;
  /** Cosmetic custom page ids (Cloudflare's `custom_pages`). */
  customPages: Record<string, string>;
  /** Version of the built-in tunnel's configuration, raised by every API replace. */
  tunnelConfigVersion: number;
  createdAt: string;
  updatedAt: string;
}

export type AccountUpdate = Partial<
  Omit<Account, 'accountId' | 'tunnelConfigVersion' | 'createdAt' | 'updatedAt'>
>;

function toAccount(row: Selectable<AccountsTable>): Account {
  return {
    accountId: row.account_id,
    name: row.name,
    authDomain: row.auth_domain,
    sessionDuration: row.session_duration,
    denyUnmatchedRequests: row.deny_unmatched_requests === 1,
    keyRotationIntervalDays: row.key_rotation_interval_days,
    autoRedirectToIdentity: row.auto_redirect_to_identity === 1,
    isUiReadOnly: row.is_ui_read_only === 1,
    uiReadOnlyToggleReason: row.ui_read_only_toggle_reason,
    userSeatExpirationInactiveTime: row.user_seat_expiration_inactive_time,
    strictServiceTokenAuth: row.strict_service_token_auth === 1,
    loginDesign: JSON.parse(row.login_design) as Record<string, string>,
    customPages: JSON.parse(row.custom_pages) as Record<string, string>,
    tunnelConfigVersion: row.tunnel_config_version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The installation's one account and its organisation settings (ARCHITECTURE.md decision 7). */
export class AccountRepository {
  constructor(private readonly store: Store) {}

  async get(db: Kysely<Database> = this.store.db): Promise<Account | null> {
    const row = await db.selectFrom('accounts').selectAll().orderBy('created_at').executeTakeFirst();
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
    for (let attempt = 1; ; attempt++) {
      try {
        await this.insertFirstAccount(accountId, now, defaults);
        break;
      } catch (error) {
        // SQLite refuses a transaction that read before another connection's write committed
        // (SQLITE_BUSY): the other start created the account, or will have in a moment.
        const busy = String((error as { code?: unknown }).code ?? '').startsWith('SQLITE_BUSY');
        if (!busy || attempt >= 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
        const created = await this.get();
        if (created) return created;
      }
    }
    return (await this.get())!;
  }

  private async insertFirstAccount(
    accountId: string,
    now: string,
    defaults: { authDomain: string; keyRotationIntervalDays: number },
  ): Promise<void> {
    await this.store.write(async (tx, changed) => {
      // PostgreSQL (read committed) would let two transactions both see no account and both
      // insert one: the table lock makes the second wait, then its re-check sees the first's row.
      if (this.store.dialect === 'postgres') {
        await sql`lock table accounts in share row exclusive mode`.execute(tx);
      }
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
  }

  async update(accountId: string, update: AccountUpdate): Promise<Account> {
    await this.store.write(async (tx, changed) => {
      await this.updateIn(tx, accountId, update);
      changed({ table: 'accounts', accountId, id: accountId });
    });
    return (await this.get())!;
  }

  /** Changes the given settings inside the caller's transaction (the API adds its audit row). */
  async updateIn(tx: Tx, accountId: string, update: AccountUpdate): Promise<void> {
    const flag = (value: boolean | undefined) => (value === undefined ? undefined : value ? 1 : 0);
    const columns = {
      name: update.name,
      auth_domain: update.authDomain,
      session_duration: update.sessionDuration,
      deny_unmatched_requests: flag(update.denyUnmatchedRequests),
      key_rotation_interval_days: update.keyRotationIntervalDays,
      auto_redirect_to_identity: flag(update.autoRedirectToIdentity),
      is_ui_read_only: flag(update.isUiReadOnly),
      ui_read_only_toggle_reason: update.uiReadOnlyToggleReason,
      user_seat_expiration_inactive_time: update.userSeatExpirationInactiveTime,
      strict_service_token_auth: flag(update.strictServiceTokenAuth),
      login_design: update.loginDesign && JSON.stringify(update.loginDesign),
      custom_pages: update.customPages && JSON.stringify(update.customPages),
    };
    const set = Object.fromEntries(Object.entries(columns).filter(([, value]) => value !== undefined));
    await tx
      .updateTable('accounts')
      .set({ ...set, updated_at: nowIso() })
      .where('account_id', '=', accountId)
      .execute();
  }

  /** Raises the tunnel configuration version, taking the account row's lock for the rest of `tx`. */
  async bumpTunnelConfigVersion(tx: Tx, accountId: string): Promise<void> {
    await tx
      .updateTable('accounts')
      .set((eb) => ({ tunnel_config_version: eb('tunnel_config_version', '+', 1) }))
      .where('account_id', '=', accountId)
      .execute();
  }
}
