import type { Kysely, Selectable } from 'kysely';
import { AccountRows, type Page, type PageWindow, updateAccountRow } from '../account-rows.ts';
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

const accountRows = new AccountRows('identity_providers', toProvider);

/** Upstream identity providers. Writes take the caller's transaction (audit row). */
export class IdentityProviderRepository {
  constructor(private readonly store: Store) {}

  async get(
    accountId: string,
    id: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredIdentityProvider | null> {
    return accountRows.get(db, accountId, id);
  }

  /** Every provider of the account, oldest first (the login page lists them). */
  async listAll(accountId: string, db: Kysely<Database> = this.store.db): Promise<StoredIdentityProvider[]> {
    return accountRows.listAll(db, accountId);
  }

  async list(accountId: string, window: PageWindow): Promise<Page<StoredIdentityProvider>> {
    return accountRows.page(this.store.db, accountId, window);
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
    return updateAccountRow(tx, 'identity_providers', accountId, id, {
      ...contentColumns(content),
      updated_at: nowIso(),
    });
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
