import { randomUUID } from 'node:crypto';
import { type Kysely, type Selectable, sql } from 'kysely';
import { AccountRows, type Page, type PageWindow } from '../account-rows.ts';
import type { Database, UsersTable } from '../schema.ts';
import { nowIso, type Store, type Tx } from '../store.ts';
import { likeMatch } from './apps.ts';

export interface StoredUser {
  /** UUID: the `sub` of the user's tokens, stable per email per account (spec §4.3). */
  id: string;
  accountId: string;
  email: string;
  name: string | null;
  lastSuccessfulLogin: string | null;
  /** `revoke_user`: tokens and sessions issued before this instant are refused. */
  revokedAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface UserFilter {
  email?: string;
  name?: string;
  search?: string;
}

function toUser(row: Selectable<UsersTable>): StoredUser {
  return {
    id: row.id,
    accountId: row.account_id,
    email: row.email,
    name: row.name,
    lastSuccessfulLogin: row.last_successful_login,
    revokedAt: row.revoked_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const accountRows = new AccountRows('users', toUser);

/** People who logged in, one row per email per account. Emails are stored lower-cased. */
export class UserRepository {
  constructor(private readonly store: Store) {}

  /**
   * The login calls this on every successful login: creates the user on first login (a new
   * UUID that then never changes for this email), or records the login and the newest name.
   */
  async upsertOnLogin(
    accountId: string,
    email: string,
    name?: string | null,
    at: Date = new Date(),
  ): Promise<StoredUser> {
    const now = nowIso(at);
    const row = await this.store.db
      .insertInto('users')
      .values({
        id: randomUUID(),
        account_id: accountId,
        email: email.toLowerCase(),
        name: name ?? null,
        last_successful_login: now,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) =>
        oc.columns(['account_id', 'email']).doUpdateSet({
          name: sql`coalesce(excluded.name, users.name)`,
          last_successful_login: now,
          updated_at: now,
        }),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
    return toUser(row);
  }

  async get(accountId: string, id: string, db: Kysely<Database> = this.store.db): Promise<StoredUser | null> {
    return accountRows.get(db, accountId, id);
  }

  async findByEmail(
    accountId: string,
    email: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredUser | null> {
    const row = await db
      .selectFrom('users')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('email', '=', email.toLowerCase())
      .executeTakeFirst();
    return row ? toUser(row) : null;
  }

  async list(accountId: string, filter: UserFilter, window: PageWindow): Promise<Page<StoredUser>> {
    const { email, name, search } = filter;
    return accountRows.page(this.store.db, accountId, window, (eb) => [
      email !== undefined && likeMatch('email', email, true),
      name !== undefined && likeMatch('name', name, true),
      search !== undefined && eb.or([likeMatch('email', search, false), likeMatch('name', search, false)]),
    ]);
  }

  /** `revoke_user` and logout: the user's tokens and sessions issued before `at` stop working. */
  async revoke(tx: Tx, id: string, at: string): Promise<void> {
    await tx.updateTable('users').set({ revoked_at: at, updated_at: at }).where('id', '=', id).execute();
  }

  /** User id → revocation time, for every revoked user of the account (configuration snapshot). */
  async listRevocations(
    accountId: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<Map<string, string>> {
    const rows = await db
      .selectFrom('users')
      .select(['id', 'revoked_at'])
      .where('account_id', '=', accountId)
      .where('revoked_at', 'is not', null)
      .execute();
    return new Map(rows.map((row) => [row.id, row.revoked_at!]));
  }
}
