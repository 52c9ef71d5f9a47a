import type { Selectable } from 'kysely';
import type { ApiTokensTable } from '../schema.ts';
import { nowIso, type Store } from '../store.ts';

export interface ApiToken {
  id: string;
  accountId: string;
  name: string;
  permissions: string[];
  status: 'active' | 'disabled';
  expiresOn: string | null;
  lastUsedOn: string | null;
  createdAt: string;
  updatedAt: string;
}

function toApiToken(row: Selectable<ApiTokensTable>): ApiToken {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    permissions: JSON.parse(row.permissions) as string[],
    status: row.status === 'active' ? 'active' : 'disabled',
    expiresOn: row.expires_on,
    lastUsedOn: row.last_used_on,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class ApiTokenRepository {
  constructor(private readonly store: Store) {}

  async create(input: {
    id: string;
    accountId: string;
    name: string;
    secretHash: string;
    permissions: string[];
    expiresOn?: string | null;
  }): Promise<ApiToken> {
    const now = nowIso();
    await this.store.write(async (tx, changed) => {
      await tx
        .insertInto('api_tokens')
        .values({
          id: input.id,
          account_id: input.accountId,
          name: input.name,
          secret_hash: input.secretHash,
          permissions: JSON.stringify(input.permissions),
          status: 'active',
          expires_on: input.expiresOn ?? null,
          last_used_on: null,
          created_at: now,
          updated_at: now,
        })
        .execute();
      changed({ table: 'api_tokens', accountId: input.accountId, id: input.id });
    });
    return (await this.get(input.id))!;
  }

  async get(id: string): Promise<ApiToken | null> {
    const row = await this.store.db
      .selectFrom('api_tokens')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toApiToken(row) : null;
  }

  /** Looks a token up by the hash of its secret (indexed, so no per-token comparison). */
  async findBySecretHash(secretHash: string): Promise<ApiToken | null> {
    const row = await this.store.db
      .selectFrom('api_tokens')
      .selectAll()
      .where('secret_hash', '=', secretHash)
      .executeTakeFirst();
    return row ? toApiToken(row) : null;
  }

  async list(accountId: string): Promise<ApiToken[]> {
    const rows = await this.store.db
      .selectFrom('api_tokens')
      .selectAll()
      .where('account_id', '=', accountId)
      .orderBy('created_at')
      .execute();
    return rows.map(toApiToken);
  }

  /** Records `last_used_on` for many tokens in one transaction (batched, not per request). */
  async recordUse(lastUsed: ReadonlyMap<string, string>): Promise<void> {
    if (lastUsed.size === 0) return;
    await this.store.write(async (tx) => {
      for (const [id, at] of lastUsed) {
        await tx.updateTable('api_tokens').set({ last_used_on: at }).where('id', '=', id).execute();
      }
    });
  }
}
