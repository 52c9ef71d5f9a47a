import type { Kysely, Selectable } from 'kysely';
import { AccountRows, type Page, type PageWindow, updateAccountRow } from '../account-rows.ts';
import type { Database, ServiceTokensTable } from '../schema.ts';
import { nowIso, type Store, type Tx } from '../store.ts';
import { likeMatch } from './apps.ts';

export interface StoredServiceToken {
  id: string;
  accountId: string;
  name: string;
  clientId: string;
  /** Hex SHA-256 of the current secret. */
  secretHash: string;
  /** During a rotation's grace period: the previous secret's hash and when it stops working. */
  previousSecretHash: string | null;
  previousSecretExpiresAt: string | null;
  duration: string;
  /** null for `duration: "forever"`. */
  expiresAt: string | null;
  enabled: boolean;
  clientSecretVersion: number;
  createdAt: string;
  updatedAt: string;
  lastSeenAt: string | null;
}

export interface ServiceTokenFilter {
  name?: string;
  search?: string;
}

function toServiceToken(row: Selectable<ServiceTokensTable>): StoredServiceToken {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    clientId: row.client_id,
    secretHash: row.secret_hash,
    previousSecretHash: row.previous_secret_hash,
    previousSecretExpiresAt: row.previous_secret_expires_at,
    duration: row.duration,
    expiresAt: row.expires_at,
    enabled: row.enabled === 1,
    clientSecretVersion: row.client_secret_version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastSeenAt: row.last_seen_at,
  };
}

const accountRows = new AccountRows('service_tokens', toServiceToken);

/** Access service tokens. Writes take the caller's transaction so the API can add its audit row. */
export class ServiceTokenRepository {
  constructor(private readonly store: Store) {}

  async get(
    accountId: string,
    id: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredServiceToken | null> {
    return accountRows.get(db, accountId, id);
  }

  /** The token a `CF-Access-Client-Id` names (client ids are unique across accounts). */
  async findByClientId(clientId: string): Promise<StoredServiceToken | null> {
    const row = await this.store.db
      .selectFrom('service_tokens')
      .selectAll()
      .where('client_id', '=', clientId)
      .executeTakeFirst();
    return row ? toServiceToken(row) : null;
  }

  /** Every token of the account (configuration snapshot). */
  async listAll(accountId: string, db: Kysely<Database> = this.store.db): Promise<StoredServiceToken[]> {
    return accountRows.listAll(db, accountId);
  }

  async list(
    accountId: string,
    filter: ServiceTokenFilter,
    window: PageWindow,
  ): Promise<Page<StoredServiceToken>> {
    const { name, search } = filter;
    // Cloudflare's `name` is an exact match, `search` a substring of name or client id.
    return accountRows.page(this.store.db, accountId, window, (eb) => [
      name !== undefined && likeMatch('name', name, true),
      search !== undefined &&
        eb.or([likeMatch('name', search, false), likeMatch('client_id', search, false)]),
    ]);
  }

  async insert(
    tx: Tx,
    token: Pick<
      StoredServiceToken,
      'id' | 'accountId' | 'name' | 'clientId' | 'secretHash' | 'duration' | 'expiresAt'
    >,
  ): Promise<void> {
    const now = nowIso();
    await tx
      .insertInto('service_tokens')
      .values({
        id: token.id,
        account_id: token.accountId,
        name: token.name,
        client_id: token.clientId,
        secret_hash: token.secretHash,
        duration: token.duration,
        expires_at: token.expiresAt,
        enabled: 1,
        client_secret_version: 1,
        created_at: now,
        updated_at: now,
      })
      .execute();
  }

  /**
   * Changes name, duration/expiry or enabled. As an UPDATE it also takes the row's lock for the
   * rest of `tx`, so concurrent rotations run one after the other. False when there is no token.
   */
  async update(
    tx: Tx,
    accountId: string,
    id: string,
    change: Partial<Pick<StoredServiceToken, 'name' | 'duration' | 'expiresAt' | 'enabled'>>,
  ): Promise<boolean> {
    return updateAccountRow(tx, 'service_tokens', accountId, id, {
      ...(change.name !== undefined && { name: change.name }),
      ...(change.duration !== undefined && { duration: change.duration }),
      ...(change.expiresAt !== undefined && { expires_at: change.expiresAt }),
      ...(change.enabled !== undefined && { enabled: change.enabled ? 1 : 0 }),
      updated_at: nowIso(),
    });
  }

  /**
   * Installs a new secret: the current one becomes the previous one until `previousExpiresAt`,
   * or is dropped at once when that is null; the secret version goes up by one.
   */
  async rotateSecret(
    tx: Tx,
    id: string,
    newSecretHash: string,
    previousExpiresAt: string | null,
  ): Promise<void> {
    await tx
      .updateTable('service_tokens')
      .set((eb) => ({
        previous_secret_hash: previousExpiresAt === null ? null : eb.ref('secret_hash'),
        previous_secret_expires_at: previousExpiresAt,
        secret_hash: newSecretHash,
        client_secret_version: eb('client_secret_version', '+', 1),
        updated_at: nowIso(),
      }))
      .where('id', '=', id)
      .execute();
  }

  /** Moves the previous secret's end; null drops the previous secret now. */
  async setPreviousSecretExpiry(tx: Tx, id: string, expiresAt: string | null): Promise<void> {
    await tx
      .updateTable('service_tokens')
      .set({
        previous_secret_expires_at: expiresAt && new Date(expiresAt).toISOString(),
        ...(expiresAt === null && { previous_secret_hash: null }),
        updated_at: nowIso(),
      })
      .where('id', '=', id)
      .execute();
  }

  async delete(tx: Tx, id: string): Promise<void> {
    await tx.deleteFrom('service_tokens').where('id', '=', id).execute();
  }

  /** `last_seen_at`, batched by the caller like API token use (no write per proxied request). */
  async recordUse(lastSeen: ReadonlyMap<string, string>): Promise<void> {
    if (lastSeen.size === 0) return;
    await this.store.write(async (tx) => {
      for (const [id, at] of lastSeen) {
        await tx.updateTable('service_tokens').set({ last_seen_at: at }).where('id', '=', id).execute();
      }
    });
  }
}
