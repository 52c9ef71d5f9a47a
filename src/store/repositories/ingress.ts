import type { IngressRule } from '../../config/settings.ts';
import { nowIso, type Store } from '../store.ts';

/** The built-in tunnel's ingress rules, in cloudflared's format, kept in order. */
export class IngressRepository {
  constructor(private readonly store: Store) {}

  async get(accountId: string): Promise<IngressRule[]> {
    const rows = await this.store.db
      .selectFrom('ingress_rules')
      .select('rule')
      .where('account_id', '=', accountId)
      .orderBy('position')
      .execute();
    return rows.map((row) => JSON.parse(row.rule) as IngressRule);
  }

  /** Replaces the whole rule list in one transaction: readers see the old list or the new one. */
  async replace(accountId: string, rules: readonly IngressRule[]): Promise<void> {
    const now = nowIso();
    await this.store.write(async (tx, changed) => {
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
      changed({ table: 'ingress_rules', accountId });
    });
  }
}
