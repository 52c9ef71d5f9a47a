import type { Kysely, Selectable } from 'kysely';
import type { Database, IdentityProvidersTable } from '../schema.ts';
import { nowIso, type Store, type Tx, toCount } from '../store.ts';

export interface IdentityProviderContent {
  name: string;
  type: string;
  /** The type's configuration without the client secret. */
  config: Record<string, unknown>;
  /** The client secret sealed with the master key (src/keys/sealed.ts); null for onetimepin. */
  clientSecretSealed: string | null;
}

export interface StoredIdentityProvider extends IdentityProviderContent {
  id: string;
  accountId: string;
  createdAt: string;
  updatedAt: string;
}

function toProvider(row: Selectable<IdentityProvidersTable>): StoredIdentityProvider {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    type: row.type,
    config: JSON.parse(row.config) as Record<string, unknown>,
    clientSecretSealed: row.client_secret_encrypted,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function contentColumns(content: IdentityProviderContent) {
  return {
    name: content.name,
    type: content.type,
    config: JSON.stringify(content.config),
    client_secret_encrypted: content.clientSecretSealed,
  };
}

/** Upstream identity providers. Writes take the caller's transaction (audit row). */
export class IdentityProviderRepository {
  constructor(private readonly store: Store) {}

  async get(
    accountId: string,
    id: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredIdentityProvider | null> {
    const row = await db
      .selectFrom('identity_providers')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toProvider(row) : null;
  }

  /** Every provider of the account, oldest first (the login page lists them). */
  async listAll(accountId: string, db: Kysely<Database> = this.store.db): Promise<StoredIdentityProvider[]> {
    const rows = await db
      .selectFrom('identity_providers')
      .selectAll()
      .where('account_id', '=', accountId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toProvider);
  }

  async list(
    accountId: string,
    window: { offset: number; limit: number },
  ): Promise<{ items: StoredIdentityProvider[]; total: number }> {
    const base = this.store.db.selectFrom('identity_providers').where('account_id', '=', accountId);
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
    return { items: rows.map(toProvider), total: toCount(count.n as string | number) };
  }

  async countOfType(tx: Tx, accountId: string, type: string): Promise<number> {
    const row = await tx
      .selectFrom('identity_providers')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('account_id', '=', accountId)
      .where('type', '=', type)
      .executeTakeFirstOrThrow();
    return toCount(row.n as string | number);
  }

  async insert(
    tx: Tx,
    provider: { id: string; accountId: string },
    content: IdentityProviderContent,
  ): Promise<void> {
    const now = nowIso();
    await tx
      .insertInto('identity_providers')
      .values({
        id: provider.id,
        account_id: provider.accountId,
        ...contentColumns(content),
        created_at: now,
        updated_at: now,
      })
      .execute();
  }

  /**
   * Full replace. As an UPDATE it also takes the row's lock for the rest of `tx`. False when
   * there is no such provider.
   */
  async replace(tx: Tx, accountId: string, id: string, content: IdentityProviderContent): Promise<boolean> {
    const result = await tx
      .updateTable('identity_providers')
      .set({ ...contentColumns(content), updated_at: nowIso() })
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async delete(tx: Tx, accountId: string, id: string): Promise<boolean> {
    const result = await tx
      .deleteFrom('identity_providers')
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}
