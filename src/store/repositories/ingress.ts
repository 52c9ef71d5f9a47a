import type { Kysely } from 'kysely';
import type { IngressRule } from '../../config/settings.ts';
import type { Database } from '../schema.ts';
import { nowIso, type Store, type Tx } from '../store.ts';

/** The built-in tunnel's ingress rules, in cloudflared's format, kept in order. */
export class IngressRepository {
  constructor(private readonly store: Store) {}

  async get(accountId: string, db: Kysely<Database> = this.store.db): Promise<IngressRule[]> {
    const rows = await db
      .selectFrom('ingress_rules')
      .select('rule')
      .where('account_id', '=', accountId)
      .orderBy('position')
      .execute();
    return rows.map((row) => JSON.parse(row.rule) as IngressRule);
  }

  /** Replaces the whole rule list in one transaction: readers see the old list or the new one. */
  async replace(accountId: string, rules: readonly IngressRule[]): Promise<void> {
    await this.store.write(async (tx, changed) => {
      await this.replaceIn(tx, accountId, rules);
      changed({ table: 'ingress_rules', accountId });
    });
  }

  /** The same inside the caller's transaction (the API adds its audit row); the caller announces the change. */
  async replaceIn(tx: Tx, accountId: string, rules: readonly IngressRule[]): Promise<void> {
    const now = nowIso();
    await tx.deleteFrom('ingress_rules').where('account_id', '=', accountId).execute();
    // Chunked so one statement stays under SQLite's bound-parameter limit.
    for (let start = 0; start < rules.length; start += 200) {
      const chunk = rules.slice(start, start + 200).map((rule, offset) => ({
        account_id: accountId,
        position: start + offset,
        rule: JSON.stringify(rule),
        updated_at: now,
      }));
      await tx.insertInto('ingress_rules').values(chunk).execute();
    }
  }

  /** When the rules were last replaced; null when there are none. */
  async updatedAt(accountId: string, db: Kysely<Database> = this.store.db): Promise<string | null> {
    const row = await db
      .selectFrom('ingress_rules')
      .select((eb) => eb.fn.max('updated_at').as('at'))
      .where('account_id', '=', accountId)
      .executeTakeFirst();
    return row?.at ?? null;
  }
}
