import { randomUUID } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { ApiAuditLogTable } from '../schema.ts';
import { nowIso, type Store, type Tx } from '../store.ts';

export interface AuditEntry {
  accountId: string;
  tokenId: string;
  /** The API route id, e.g. `apps.update`. */
  action: string;
  resourceType: string;
  resourceId: string;
}

export type AuditRecord = Selectable<ApiAuditLogTable>;

/** The management API's audit trail: one row per write, inserted in the write's own transaction. */
export class AuditLogRepository {
  constructor(private readonly store: Store) {}

  /** Adds the entry inside `tx`, so the record exists exactly when the change committed. */
  async record(tx: Tx, entry: AuditEntry): Promise<void> {
    await tx
      .insertInto('api_audit_log')
      .values({
        id: randomUUID(),
        account_id: entry.accountId,
        token_id: entry.tokenId,
        action: entry.action,
        resource_type: entry.resourceType,
        resource_id: entry.resourceId,
        created_at: nowIso(),
      })
      .execute();
  }

  /** Newest first. */
  async list(accountId: string, limit = 100): Promise<AuditRecord[]> {
    return this.store.db
      .selectFrom('api_audit_log')
      .selectAll()
      .where('account_id', '=', accountId)
      .orderBy('created_at', 'desc')
      .limit(limit)
      .execute();
  }
}
